"""Shared pytest configuration: make the repository importable and hand out the real data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "MPUNetSegmentation"  # Slicer puts a module's folder on sys.path
for _path in (MODULE_DIR, REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from Testing.real_data import REAL_CT_DIR  # noqa: E402
from Testing.slicer_fixtures import slicer_env, slicer_scene  # noqa: E402,F401  (fixtures for every test)


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """The real 3-slice DICOM series with its expert liver label (committed under Testing/data/)."""
    assert (REAL_CT_DIR / "liver_seg.nrrd").is_file(), f"the committed real CT is missing from {REAL_CT_DIR}"
    return REAL_CT_DIR
