"""Anatomy-realistic, domain-randomised CT phantoms of the upper abdomen with LiTS-style labels.

``build_phantom``/``make_phantom`` generate one case; ``write_lits_folder`` writes a LiTS-style folder.
The older geometric generator stays in :mod:`MPUNetCore.phantom` (the shipped demo model 0.2.0 was
trained on it and the demo uses it).
"""

from __future__ import annotations

from .appearance import PHASES, TISSUES
from .folder import write_lits_folder
from .generate import PhantomCase, build_phantom, make_phantom

__all__ = ["PHASES", "TISSUES", "PhantomCase", "build_phantom", "make_phantom", "write_lits_folder"]
