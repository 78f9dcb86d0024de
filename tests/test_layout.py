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


def _drip_errors() -> dict[str, tuple[str, str]]:
    """Every DripError subclass in the package: name -> (its parent's name, its module)."""
    import importlib

    from drip.core.errors import DripError

    for name in _modules(drip):
        if "migrations" not in name and not name.endswith("__main__"):
            importlib.import_module(name)
    found: dict[str, tuple[str, str]] = {}
    stack = [DripError]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("drip."):
                found[sub.__name__] = (cls.__name__, sub.__module__)
            stack.append(sub)
    return found


def test_the_error_tree_in_errors_py_is_the_real_one() -> None:
    import re

    from drip.core import errors

    drawn: dict[str, tuple[str, str]] = {}
    parents: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?(\w+)\s.*?\s(drip\.[\w.]+)$", line)
        if match is None or match[2] == "DripError":
            if match is None and line.strip() == "DripError":
                parents = [(-1, "DripError")]
            continue
        depth = len(match[1])
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[match[2]] = (parents[-1][1], match[3])
        parents.append((depth, match[2]))
    assert drawn == _drip_errors()


#: drip's parts from the bottom up: each may import only the ones before it (and itself)
LAYERS = (
    "core", "config", "storage", "launch", "changes", "sending", "replies", "owners", "web", "service", "demo", "cli",
)  # fmt: skip


def _part(module: str) -> str:
    """The layer a ``drip.x.y`` module belongs to: its package, or the top-level module itself."""
    return module.split(".")[1]


def _imports_by_part() -> dict[str, set[str]]:
    import ast

    root = Path(drip.__file__).parent
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        if "migrations" in path.parts or path.name in ("__init__.py", "__main__.py"):
            continue
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # imports inside functions too
            if isinstance(node, ast.ImportFrom) and node.module == "drip":
                names.update(f"drip.{alias.name}" for alias in node.names if not alias.name.startswith("__"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drip."):
                names.add(node.module or "")
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names if alias.name.startswith("drip."))
        found.setdefault(_part(module), set()).update(_part(name) for name in names)
    return found


def test_each_part_imports_only_the_parts_below_it() -> None:
    imports = _imports_by_part()
    assert set(imports) == set(LAYERS)  # every part has its place in the order
    upward = {
        part: sorted(other for other in used if LAYERS.index(other) > LAYERS.index(part))
        for part, used in imports.items()
    }
    assert {part: up for part, up in upward.items() if up} == {}


def test_the_layer_check_sees_an_upward_import() -> None:
    # the core reads nothing of drip's other parts, and the command line reads nearly all of them
    imports = _imports_by_part()
    assert imports["core"] <= {"core"}
    assert {"storage", "sending", "web"} <= imports["cli"]
