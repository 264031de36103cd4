"""Checks every segmentation runs on its voxels before the network: finite values, CT-like values.

Called by :func:`MPUNetCore.pipeline.segment_volume` (hence by ``mpunet segment``, the Slicer module's
background run and the batch script), so every entry point refuses and warns in the same words. The
memory budget is planned just before, by :func:`MPUNetCore.memory_plan.fit_settings`.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .ct_checks import ct_warnings, replace_nonfinite
from .volume_io import Volume

WarnFn = Callable[[str], None]


def checked_array(
    volume: Volume, fill_nonfinite: Optional[float] = None, warn: Optional[WarnFn] = None
) -> np.ndarray:
    """The volume's voxels, checked: finite (or filled) and CT-like (or warned about).

    Args:
        volume: the CT.
        fill_nonfinite: HU replacing NaN/Inf voxels; None refuses them.
        warn: called with each warning sentence (default: ignored).

    Returns:
        The array to segment (the volume's own array, or a copy with non-finite voxels replaced).

    Raises:
        VolumeError: non-finite voxels without ``fill_nonfinite``.
    """
    name = str(volume.path) if volume.path is not None else (volume.name or "the volume")
    array, notes = replace_nonfinite(volume.array, name, fill_nonfinite)
    for line in notes + ct_warnings(array, name):
        if warn is not None:
            warn(line)
    return array
