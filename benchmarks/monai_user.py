"""The whole-CT pipeline a MONAI user would write (bench_inference's ``monai-user`` variant, issue 14 item 6).

SimpleITK resamples the CT to the network grid (linear interpolation, same physical extent and voxel
centres as ours: the grid of ``plan_transform``), the HU window is applied
(``ScaleIntensityRange``-style clip and scale), MONAI's ``sliding_window_inference`` runs the model with
the same window, overlap and blending as ours, and each class's probability volume is resampled back
onto the CT's grid with SimpleITK (linear), followed by the argmax. No post-processing (a MONAI user
adds none by default; run ours without ``--postprocess`` to compare like with like).

Where it differs from ours by design, as a MONAI user's pipeline would (``Spacing`` before
``ScaleIntensityRange``): the HU window is applied after resampling (ours clips first, so bone next to
soft tissue cannot bleed into the window), and SimpleITK gives the outermost half voxel outside the
network grid's voxel centres the default value (ours repeats the edge). On a 64×256×256 phantom with
the demo weights this gave liver Dice 0.979 against ours, while ``monai-same`` gave 1.000.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _grid(image: Any, shape_zyx: Sequence[int], spacing_xyz: Sequence[float]) -> Any:
    """A reference image of the network grid covering the same extent as ``image``."""
    import SimpleITK as sitk

    ref = sitk.Image([int(v) for v in shape_zyx[::-1]], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(s) for s in spacing_xyz))
    ref.SetDirection(image.GetDirection())
    in_sp = image.GetSpacing()
    # same extent: the first voxel centre moves by half the difference of the spacings (identity direction)
    ref.SetOrigin(tuple(o + (n - s) / 2.0 for o, n, s in zip(image.GetOrigin(), spacing_xyz, in_sp)))
    return ref


def run_monai_user(ct: np.ndarray, spacing: Sequence[float], model: Any, args: Any) -> np.ndarray:
    """Labels (uint8, the CT's shape) from the MONAI user's pipeline described in the module docstring."""
    import SimpleITK as sitk
    import torch
    from monai.inferers import sliding_window_inference

    from MPUNetCore.inference import Preprocessing
    from MPUNetCore.inference.preprocessing import plan_transform

    prep = Preprocessing()
    image = sitk.GetImageFromArray(ct)
    image.SetSpacing(tuple(float(s) for s in spacing))
    tr = plan_transform(ct.shape, spacing, prep)
    ref = _grid(image, tr.network_shape, tr.network_spacing)
    net = sitk.Resample(image, ref, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32)
    lo, hi = prep.hu_window
    x = torch.from_numpy(sitk.GetArrayFromImage(net)).clamp_(lo, hi).div_(prep.scale)
    with torch.inference_mode():
        probs = sliding_window_inference(
            x[None, None], tuple(args.window), args.batch_size, model, args.overlap, args.blending
        )[0]
    best = None
    labels = np.zeros(ct.shape, np.uint8)
    for c in range(probs.shape[0]):
        plane = sitk.GetImageFromArray(probs[c].float().numpy())
        plane.CopyInformation(ref)
        back = sitk.GetArrayFromImage(sitk.Resample(plane, image, sitk.Transform(), sitk.sitkLinear, 0.0))
        if best is None:
            best = back
        else:
            labels[back > best] = c
            np.maximum(best, back, out=best)
    return labels
