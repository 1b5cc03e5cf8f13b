"""Imports only point down (COMMON layering, DESIGN.md):

    schemas ← rules ← config ← workflows / activities ← reports / audit ← documents ← workers

read with `ast` from every module of each package (imports inside functions and under
TYPE_CHECKING count too: a layer may not even name a layer above it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "rules", "config", "workflows", "activities", "reports", "audit", "documents", "workers")
# The project packages each layer must not import.
FORBIDDEN: dict[str, set[str]] = {
    "schemas": set(PACKAGES) - {"schemas"},
    "rules": set(PACKAGES) - {"schemas", "rules"},
    "config": set(PACKAGES) - {"schemas", "rules", "config"},
    "workflows": {"workers", "documents", "reports", "audit"},
    "activities": {"workers", "documents", "reports", "audit"},
    "reports": {"workers", "documents"},
    "audit": {"workers", "documents"},
    "documents": {"workers"},  # the 公文 and workbooks, built from reports' records
    "workers": set(),
}


def imported_packages(source: str, package: str) -> dict[str, int]:
    """Top-level project packages a module imports → the first line that does."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package if node.level else (node.module or "")]  # relative: its own package
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.setdefault(top, node.lineno)
    return found


def violations(source: str, package: str) -> list[str]:
    return [f"line {line}: {package} imports {top}"
            for top, line in sorted(imported_packages(source, package).items()) if top in FORBIDDEN[package]]


def test_the_check_catches_an_upward_import():
    source = ("from __future__ import annotations\nfrom typing import TYPE_CHECKING\n"
              "from schemas.codes import AgencyCode\n"
              "if TYPE_CHECKING:\n    from config.settings import Settings\n"
              "def f():\n    import workers.cli\n")
    assert violations(source, "rules") == ["line 5: rules imports config", "line 7: rules imports workers"]
    assert violations(source, "workers") == []
    assert violations("from . import x\n", "schemas") == []


MODULES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_every_package_has_modules():
    assert {p.relative_to(ROOT).parts[0] for p in MODULES} == set(PACKAGES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_point_down(path: Path):
    package = path.relative_to(ROOT).parts[0]
    assert violations(path.read_text(encoding="utf-8"), package) == []
