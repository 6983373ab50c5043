"""Imports point one way: entry points -> helper -> distiller_zoo -> dataset / models / crd / packd -> util.

Read from the source (ast), so a module-level or a function-level import that points
upwards fails here, whichever code path would have run it.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Lower number = lower layer; a package may import its own layer's modules only where listed.
LAYER = {"util": 0, "dataset": 1, "models": 1, "crd": 1, "packd": 1, "distiller_zoo": 2, "helper": 3}
# Packages of one layer that may use each other: none (they share util instead).
PACKAGES = sorted(LAYER)


def imported_packages(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno


def modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield package, path


@pytest.mark.parametrize("package,path", list(modules()), ids=lambda v: str(v.relative_to(ROOT))
                         if isinstance(v, pathlib.Path) else v)
def test_imports_point_down(package, path):
    bad = []
    for target, line in imported_packages(path):
        if target in ("train_student", "train_teacher", "scripts", "tests"):
            bad.append(f"line {line}: {target} (an entry point or test)")
        elif target in LAYER and target != package and LAYER[target] >= LAYER[package]:
            bad.append(f"line {line}: {target} (layer {LAYER[target]} >= {package}'s {LAYER[package]})")
    assert not bad, f"{path.relative_to(ROOT)} imports upwards or sideways: {bad}"


def test_every_package_is_layered():
    """A new top-level package must be placed in LAYER (and so in the README's layout)."""
    found = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file() and p.name != "tests"}
    assert found == set(LAYER), f"unlayered packages: {found ^ set(LAYER)}"
