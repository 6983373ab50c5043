"""The project's copy of the reference fixtures must equal the shared originals."""
import filecmp
import pathlib

import pytest

from tests.reference import FIXTURES

SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"


def test_fixture_copy_is_complete():
    for name in ("README.md", "models.json", "losses.json"):
        assert (FIXTURES / name).is_file(), name


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/reference is not present (user checkout); the copy is used as is")
def test_fixture_copy_matches_shared_reference():
    shared = sorted(p.name for p in SHARED.iterdir())
    ours = sorted(p.name for p in FIXTURES.iterdir())
    assert shared == ours
    for name in shared:
        assert filecmp.cmp(SHARED / name, FIXTURES / name, shallow=False), f"{name} differs from ../shared/reference"
