"""Checks that every package follows the workspace layout and that packages stay independent."""

import ast
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())
METHOD_PACKAGES = [p for p in PACKAGES if p.name != "qcore"]


def _project(package: Path) -> dict:
    return tomllib.loads((package / "pyproject.toml").read_text())["project"]


def _import_name(package: Path) -> str:
    return package.name.replace("-", "_")


IMPORT_NAMES = {_import_name(p) for p in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_layout(package):
    for part in ("README.md", "tests", f"src/{_import_name(package)}/__init__.py"):
        assert (package / part).exists(), f"{package.name} lacks {part}"
    assert _project(package)["requires-python"] == ">=3.11"


@pytest.mark.parametrize("package", METHOD_PACKAGES, ids=lambda p: p.name)
def test_method_package_entry_points(package):
    project = _project(package)
    assert (package / "benchmarks").is_dir()
    assert package.name in project.get("scripts", {}), f"{package.name} declares no console script"
    reproductions = project.get("entry-points", {}).get("qcore.reproductions", {})
    assert package.name in reproductions, f"{package.name} declares no qcore.reproductions entry point"


def test_installed_reproductions_match_declared():
    installed = {entry.name for entry in entry_points(group="qcore.reproductions")}
    declared = {
        name
        for package in METHOD_PACKAGES
        for name in _project(package).get("entry-points", {}).get("qcore.reproductions", {})
    }
    assert declared <= installed, f"declared but not installed (run uv sync): {declared - installed}"


def _imported_top_level_names(source_dir: Path) -> set[str]:
    names = set()
    for path in source_dir.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_packages_import_no_other_method_package(package):
    own = _import_name(package)
    allowed = {own} if own == "qcore" else {own, "qcore"}
    imported = _imported_top_level_names(package / "src")
    foreign = (imported & IMPORT_NAMES) - allowed
    assert not foreign, f"{package.name} imports {sorted(foreign)}"
