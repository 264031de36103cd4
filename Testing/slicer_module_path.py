"""Import this before ``MPUNetSegmentationLib``: puts ``MPUNetSegmentation/`` on sys.path, as Slicer does."""

from __future__ import annotations

import sys
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[1] / "MPUNetSegmentation"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))
