"""Anatomy-realistic, domain-randomised CT phantoms of the upper abdomen with LiTS-style labels.

``build_phantom``/``make_phantom`` generate one case; ``write_lits_folder`` writes a LiTS-style folder.
``demo_phantom`` is the case `mpunet demo`, the screenshots and the Slicer self-test segment. The older
geometric generator stays in :mod:`MPUNetCore.phantom`: small, fast fixtures for the tests, and the
training data of the demo model 0.2.0 (``Training/configs/phantom_demo_v02.toml``).
"""

from __future__ import annotations

from .appearance import PHASES, TISSUES
from .demo import DEMO_SHAPE, demo_phantom
from .folder import write_lits_folder
from .generate import PhantomCase, build_phantom, make_phantom

__all__ = [
    "DEMO_SHAPE",
    "PHASES",
    "TISSUES",
    "PhantomCase",
    "build_phantom",
    "demo_phantom",
    "make_phantom",
    "write_lits_folder",
]
