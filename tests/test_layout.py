"""The package layout keeps its promises: drip.core stays pure, and no module hides a standard one."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import drip
import drip.core

#: what drip.core must never load, directly or through anything it imports
OUTSIDE_CORE = ("sqlalchemy", "flask", "werkzeug", "waitress", "smtplib", "aiosmtpd", "alembic", "psycopg")


def _modules(package: object) -> list[str]:
    path = package.__path__  # type: ignore[attr-defined]
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return sorted(info.name for info in pkgutil.walk_packages(path, prefix))


def test_every_core_module_imports_without_the_database_web_or_smtp() -> None:
    modules = _modules(drip.core)
    assert "drip.core.reading" in modules and "drip.core.plan" in modules  # the walk found them
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(n for n in {OUTSIDE_CORE!r} if n in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", f"drip.core loaded {done.stdout.strip()}"


def test_the_check_sees_a_forbidden_import() -> None:
    # the same probe on a module that does talk to the database must report it
    script = "import sys, drip.storage.store\nprint('sqlalchemy' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "True"


def test_no_module_is_named_after_a_standard_library_module() -> None:
    clashes = [
        name
        for name in _modules(drip)
        if name.rpartition(".")[2] in sys.stdlib_module_names and "migrations.versions" not in name
    ]
    assert clashes == []


def test_the_walk_sees_every_file() -> None:
    files = {
        ".".join(path.relative_to(Path(drip.__file__).parent.parent).with_suffix("").parts)
        for path in Path(drip.__file__).parent.rglob("*.py")
        if path.name != "__init__.py" and "versions" not in path.parts and "migrations" not in path.parts
    }
    assert files <= set(_modules(drip))
