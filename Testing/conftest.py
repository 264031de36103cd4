"""Shared pytest configuration: make the repository importable and locate the real data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "MPUNetSegmentation"  # Slicer puts a module's folder on sys.path
for _path in (MODULE_DIR, REPO_ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from Testing.slicer_fixtures import slicer_env, slicer_scene  # noqa: E402,F401  (fixtures for every test)

REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "real" / "dcmqi-liver-ct-3slice"


@pytest.fixture(scope="session")
def real_ct_dir() -> Path:
    """The real 3-slice DICOM series with its expert liver label (../shared, outside the repo)."""
    if not (REAL_DATA / "liver_seg.nrrd").exists():
        pytest.skip(f"real CT data not found at {REAL_DATA} (a plain clone has no ../shared)")
    return REAL_DATA
