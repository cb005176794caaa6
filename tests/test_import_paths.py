"""Import paths: one per name, and imports that run one way between the package's parts.

A name listed in ``regression_tracking.services.__all__`` is imported from
``regression_tracking.services`` by everything outside the product folders; the product folders
never import the facade (it would be an import cycle). Each part imports only the parts below it,
so the orphan rule is the ground floor the lookup mirror, the detector mirror and the cleanup
share, and the two mirrors never depend on the operator's cleanup.
"""

from __future__ import annotations

import ast
from pathlib import Path

import regression_tracking.services as services

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "regression_tracking"
SOURCES = [
    path
    for folder in ("regression_tracking", "tests", "benchmarks", "config", "scripts")
    for path in (ROOT / folder).rglob("*.py")
]

GROUND = {"models", "fingerprints", "durations", "orphans"}
# Each part of the package, and the parts it may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "models": {"models"},
    "durations": {"durations"},
    "fingerprints": {"models"},
    "orphans": {"models"},
    "ops": {"ops", "environment"},
    "issues": GROUND | {"ops", "issues"},
    "statistical_detectors": GROUND | {"ops", "issues", "statistical_detectors"},
    "tasks": GROUND | {"ops", "issues", "statistical_detectors", "tasks"},
    "cleanup": GROUND | {"ops", "cleanup"},
}
PRODUCTS = set(ALLOWED)


def _part(module: str) -> str:
    """``regression_tracking.cleanup.backup.rows`` -> ``cleanup``."""
    return module.split(".")[1]


def _from_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, module, name) of every ``from regression_tracking… import name``.

    ``from regression_tracking import ops`` counts as an import of ``regression_tracking.ops``.
    """
    return [
        (
            node.lineno,
            f"{node.module}.{alias.name}" if node.module == "regression_tracking" else node.module,
            alias.name,
        )
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module is not None
        and (node.module == "regression_tracking" or node.module.startswith("regression_tracking."))
        for alias in node.names
    ]


def _package_part(path: Path) -> str | None:
    if PACKAGE not in path.parents:
        return None
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def test_facade_names_come_from_the_facade_outside_the_product_folders() -> None:
    facade = set(services.__all__)
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name} from {module}"
        for path in SOURCES
        if _package_part(path) not in PRODUCTS | {"services"}
        for line, module, name in _from_imports(path)
        if module != "regression_tracking.services" and name in facade
    ]
    assert wrong == []


def test_product_folders_never_import_the_facade() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in SOURCES
        if _package_part(path) in PRODUCTS
        for line, module, name in _from_imports(path)
        if module == "regression_tracking.services"
    ]
    assert wrong == []


def test_imports_run_one_way_between_the_parts() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in SOURCES
        if (part := _package_part(path)) in ALLOWED
        for line, module, _name in _from_imports(path)
        if _part(module) not in ALLOWED[part]
    ]
    assert wrong == []


def test_the_checks_see_the_sources() -> None:
    # Guards the tests above against passing on an empty file list or a renamed folder.
    assert len(SOURCES) > 50
    parts = {_package_part(path) for path in SOURCES}
    assert parts >= PRODUCTS
    assert any(_from_imports(path) for path in (PACKAGE / "cleanup").glob("*.py"))
