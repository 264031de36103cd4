"""Small real model bundles and phantom CT files for the Slicer logic tests (no mocks: real networks).

A reduced-width U-Net with fixed random weights runs in a second or two per volume on 2 CPU cores, so the
tests exercise the whole background run (model loading, sliding windows, writing the label map) quickly.
Its class colours deliberately differ from the module's defaults, so a test can tell that segment colours
come from the model card.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Tuple

import numpy as np

#: A reduced-width 3-class U-Net: the one small architecture every test bundle uses.
TINY_ARCHITECTURE = {
    "network": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 3,
    "overrides": {"channels": [4, 8, 8, 8]},
}

TINY_CLASSES = (
    (0, "Background", [0.0, 0.0, 0.0]),
    (1, "Liver", [0.25, 0.5, 0.75]),
    (2, "Liver tumor", [0.9, 0.1, 0.6]),
)


def write_tiny_bundle(folder: Path, seed: int = 0) -> Path:
    """Save a small U-Net bundle (card + weights) and return the card's path."""
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle

    architecture = dict(TINY_ARCHITECTURE)
    card = ModelCard(
        name="tiny-test",
        architecture=architecture,
        classes=[SegmentClass(value, name, color) for value, name, color in TINY_CLASSES],
        preprocessing={"hu_window": [-200, 200], "scale": 200.0},
        inference={"window": [16, 32, 32], "overlap": 0.25},
    )
    torch.manual_seed(seed)
    return save_bundle(build_network(architecture), card, Path(folder) / "tiny-test.json", overwrite=True)


def left_handed_oblique_direction(angle_degrees: float = 30.0) -> Tuple[float, ...]:
    """A rotation about z followed by a flip of z: a left-handed, oblique direction matrix (row-major)."""
    c, s = math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, -1.0)


def write_phantom(
    folder: Path, seed: int, shape: Tuple[int, int, int], oblique: bool = False, anatomical: bool = False
) -> Tuple[Path, Path]:
    """Write a synthetic CT phantom and its label map as NRRD files; return their paths.

    ``anatomical``: the demo's anatomical phantom (``MPUNetCore.phantoms.demo_phantom``: its
    portal-venous protocol and field of view, at ``shape``) instead of the small geometric one.
    """
    import SimpleITK as sitk

    if anatomical:
        from MPUNetCore.phantoms import demo_phantom

        case = demo_phantom(seed, shape)
        image, label = case.image, case.label
    else:
        from MPUNetCore.phantom import make_phantom

        image, label = make_phantom(seed, shape=shape)
    if oblique:
        for item in (image, label):
            item.SetDirection(left_handed_oblique_direction())
            item.SetOrigin((12.5, -30.0, 40.0))
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / f"phantom-{seed}.nrrd", folder / f"phantom-{seed}-label.nrrd"
    sitk.WriteImage(image, str(paths[0]))
    sitk.WriteImage(label, str(paths[1]))
    return paths


def phantom_ct(seed: int = 4, shape: Tuple[int, int, int] = (12, 40, 40)) -> Any:
    """The CT of a synthetic phantom as a SimpleITK image in memory, for tests that damage a copy of it."""
    from MPUNetCore.phantom import make_phantom

    return make_phantom(seed, shape=shape)[0]


def save_like(array: np.ndarray, like: Any, path: Path) -> Path:
    """Write ``array`` (z, y, x) with the geometry of the SimpleITK image ``like``; returns ``path``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    sitk.WriteImage(image, str(path))
    return path


def predict_in_process(volume_array: np.ndarray, spacing_xyz, card_path) -> np.ndarray:
    """The label map MPUNetCore computes in this process (the independent reference of a background run)."""
    import torch

    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.pipeline import segment_volume
    from MPUNetCore.volume_io import Volume

    torch.set_num_threads(1)
    array = np.asarray(volume_array, np.float32)
    volume = Volume(array, tuple(spacing_xyz), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    return segment_volume(volume, load_bundle(card_path), device="cpu")
