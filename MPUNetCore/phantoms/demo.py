"""The demo's phantom: one fixed scan protocol, so the demo, the screenshots and the Slicer self-test agree.

An upper-abdomen scan as a portal-venous liver protocol gives it: 410 x 410 mm field of view and 240 mm
along z (a 256 x 256 x 80 scan has 1.6 mm pixels and 3 mm slices). Smaller shapes keep the field of view
and get coarser voxels, so a quick check still sees the whole liver and its neighbours.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .generate import PhantomCase, build_phantom

DEMO_SHAPE = (80, 256, 256)
DEMO_FIELD_OF_VIEW_MM = (410.0, 410.0, 240.0)  # x, y, z
DEMO_PHASE = "portal_venous"


def demo_phantom(seed: int, shape: Sequence[int] = DEMO_SHAPE, n_tumors: Optional[int] = None) -> PhantomCase:
    """The anatomical phantom of ``seed`` under the demo protocol, with ``shape`` (z, y, x) voxels."""
    nz, ny, nx = (int(n) for n in shape)
    fov_x, fov_y, fov_z = DEMO_FIELD_OF_VIEW_MM
    spacing = (fov_x / nx, fov_y / ny, fov_z / nz)
    return build_phantom(seed, (nz, ny, nx), spacing, n_tumors=n_tumors, phase=DEMO_PHASE)
