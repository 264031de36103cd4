"""Where the real CT of the tests lies: committed under Testing/data/ (see its README.md and NOTICE.txt)."""

from __future__ import annotations

from pathlib import Path

#: Three real CT slices (a DICOM series) and their expert liver label, `liver_seg.nrrd`.
REAL_CT_DIR = Path(__file__).resolve().parent / "data" / "dcmqi-liver-ct-3slice"
