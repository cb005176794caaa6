"""One import path per name: a name of the services facade is imported from the facade.

Outside ``regression_tracking/services/``, a name listed in ``regression_tracking.services.__all__``
comes from ``regression_tracking.services``; anything else from its submodule. Inside the package,
modules import from sibling submodules, never from the facade (it would be an import cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import regression_tracking.services as services

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    path
    for folder in ("regression_tracking", "tests", "benchmarks", "config", "scripts")
    for path in (ROOT / folder).rglob("*.py")
]
SERVICES = ROOT / "regression_tracking" / "services"


def _imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from regression_tracking.services… import name``."""
    return [
        (node.lineno, node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module is not None
        and node.module.startswith("regression_tracking.services")
        for alias in node.names
    ]


def test_facade_names_come_from_the_facade_outside_services() -> None:
    facade = set(services.__all__)
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name} from {module}"
        for path in SOURCES
        if SERVICES not in path.parents
        for line, module, name in _imports(path)
        if module != "regression_tracking.services" and name in facade
    ]
    assert wrong == []


def test_services_modules_never_import_the_facade() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in SERVICES.rglob("*.py")
        for line, module, name in _imports(path)
        if module == "regression_tracking.services"
    ]
    assert wrong == []


def test_the_check_sees_the_sources() -> None:
    # Guards the two tests above against passing on an empty file list.
    assert len(SOURCES) > 50
    assert any(_imports(path) for path in SOURCES)
