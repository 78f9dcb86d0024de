"""What `drip init` writes into a new project: the Crawl > Walk > Run program and an example cohort.

The files are the repository's own ``emails/crawl-walk-run`` and ``cohorts/example``, shipped in
the package, so a ``pip install`` user starts from exactly what the project runs and tests.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from drip.core.errors import DripError

#: where each shipped folder goes in the project, and where it lies in the package
FOLDERS = {Path("emails") / "crawl-walk-run": "crawl-walk-run", Path("cohorts") / "example": "example"}


class StarterError(DripError):
    """The starter folders cannot be written where asked."""


def write_starter(project: Path) -> list[Path]:
    """Write the program and the example cohort into ``project``; refuse to overwrite anything."""
    targets = {project / relative: files(__name__) / name for relative, name in FOLDERS.items()}
    for target in targets:
        if target.exists():
            raise StarterError(
                f"{target} already exists; drip init writes only new folders, so move it away or give "
                "another folder"
            )
    for target, source in targets.items():
        _copy(source, target)
    return list(targets)


def _copy(source: Traversable, target: Path) -> None:
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.name.startswith((".", "__")):
            continue
        if item.is_dir():
            _copy(item, target / item.name)
        else:
            (target / item.name).write_bytes(item.read_bytes())
