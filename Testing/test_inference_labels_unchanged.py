"""The overhead cuts of the engine change no label (issue 14, item 3).

Two shortcuts are checked here against references written independently of them:

* resampling back + argmax takes the label of output voxels whose class leads by a margin on every
  network voxel around them, and interpolates only bands of rows (``MPUNetCore.inference.decided``);
  the reference interpolates every slice whole (the previous procedure, spelled out below with torch
  ops) and takes ``torch.argmax``; a second reference is torch's own trilinear ``F.interpolate``;
* post-processing runs inside the box of the labelled voxels; the reference is SciPy's ``ndimage``
  on the whole volume.

Cases: random probability fields with plateaus and exact ties, a phantom CT and the real 3-slice CT
segmented with the bundled demo model (on its own grid and on the released x0.5 in-plane grid).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from scipy import ndimage

from MPUNetCore.bundle import load_bundle
from MPUNetCore.inference import Preprocessing, postprocess_labels, probabilities_to_labels
from MPUNetCore.inference.decided import UNDECIDED, decided_labels
from MPUNetCore.inference.engine import predict_network_probabilities
from MPUNetCore.inference.postprocessing import foreground_box

CUBE = np.ones((3, 3, 3), bool)  # 26-connectivity
BALL = ndimage.generate_binary_structure(3, 2)  # "touches the liver": ITK's ball of radius 1, 19 voxels
DEMO = Path(__file__).resolve().parents[1] / "MPUNetCore" / "models" / "demo-phantom.json"


def _previous_labels(probs: torch.Tensor, out_shape) -> np.ndarray:
    """The procedure before the shortcut: z by linear interpolation (index/lerp rule of
    ``F.interpolate``), then every whole slice bilinearly, then ``torch.argmax`` (first maximum)."""
    c, nz, ny, nx = probs.shape
    oz, oy, ox = out_shape
    src = ((torch.arange(oz, dtype=torch.float64) + 0.5) * (nz / oz) - 0.5).clamp(min=0)
    i0 = src.floor().long().clamp(max=nz - 1)
    i1 = torch.where(i0 < nz - 1, i0 + 1, i0)
    w1 = (src - i0.double()).clamp(0, 1).float()
    out = np.empty(out_shape, np.uint8)
    for z in range(oz):
        if nz == oz:
            plane = probs[:, z].float()
        elif float(w1[z]) == 0.0 and bool((w1 == 0).all()):
            plane = probs[:, int(i0[z])].float()
        else:
            plane = torch.lerp(probs[:, int(i0[z])], probs[:, int(i1[z])], w1[z]).float()
        if (oy, ox) != (ny, nx):
            plane = F.interpolate(plane[None], size=(oy, ox), mode="bilinear", align_corners=False)[0]
        out[z] = plane.argmax(0).numpy()
    return out


def _field(shape, classes=3, seed=0, ties=True) -> torch.Tensor:
    """Smooth random class probabilities with saturated plateaus (decided) and exact two-way ties."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn((1, classes, *(max(2, s // 4) for s in shape)), generator=g) * 6
    logits = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)[0]
    probs = torch.softmax(logits, 0)
    if ties:
        z = shape[0] // 2
        probs[:, z] = 0.0
        probs[1, z], probs[2, z] = 0.5, 0.5  # an exact tie: the first class wins everywhere
    return probs.contiguous()


@pytest.mark.parametrize(
    "net_shape, out_shape",
    [
        ((12, 32, 40), (12, 64, 80)),  # released grid: x2 in-plane, same slices (row bands)
        ((10, 32, 40), (23, 64, 80)),  # and slices interpolated along z
        ((12, 64, 80), (5, 32, 40)),  # downsampling by 2 (bands aligned to pairs of rows)
        ((9, 20, 30), (14, 33, 47)),  # no power of two: whole slices where anything is undecided
        ((8, 32, 32), (8, 32, 64)),  # only x resampled
        ((8, 16, 16), (8, 16, 16)),  # nothing resampled
    ],
)
def test_labels_equal_interpolating_every_slice(net_shape, out_shape):
    probs = _field(net_shape)
    ours = probabilities_to_labels(probs, out_shape, chunk_slices=3)
    np.testing.assert_array_equal(ours, _previous_labels(probs, out_shape))
    # and torch's own trilinear resampling, up to near-ties decided by rounding order
    ref = F.interpolate(probs[None], size=out_shape, mode="trilinear", align_corners=False)[0]
    top2 = ref.topk(2, dim=0).values
    clear = (top2[0] - top2[1] > 1e-5).numpy()
    np.testing.assert_array_equal(ours[clear], ref.argmax(0).numpy()[clear])


def test_decided_labels_hand_built():
    probs = torch.zeros(3, 1, 1, 6)
    probs[:, 0, 0, :] = torch.tensor(
        [
            [0.9, 0.9, 0.9, 0.2, 0.40000, 0.1],  # class 0
            [0.1, 0.1, 0.1, 0.7, 0.40000, 0.1],  # class 1
            [0.0, 0.0, 0.0, 0.1, 0.39999, 0.8],  # class 2 (within the margin at x=4)
        ]
    )
    codes, decided = decided_labels(probs, (False, False, True))
    assert codes.ravel().tolist() == [0, 0, 0, 1, UNDECIDED, 2]
    # decided where the voxel and its right neighbour agree; the last voxel is its own neighbour
    assert decided.ravel().tolist() == [True, True, False, False, False, True]
    probs[0, 0, 0, 1] = float("nan")
    assert decided_labels(probs, (False, False, True))[0].ravel()[1] == UNDECIDED


def _demo_bundle():
    return load_bundle(DEMO)


def _reference_postprocess(labels: np.ndarray) -> np.ndarray:
    """Tumour-in-liver then largest liver component, on the whole volume with SciPy.

    Components are 26-connected; a tumour touches the liver when a liver voxel lies in its ball of
    radius 1 (face and edge neighbours: what the post-processing documents and ITK's ball gives).
    """
    out = labels.astype(np.uint8).copy()
    comps, n = ndimage.label(out == 2, structure=CUBE)
    if n:
        near = ndimage.binary_dilation(out == 1, structure=BALL)
        touching = np.unique(comps[near & (comps > 0)])
        out[(comps > 0) & ~np.isin(comps, touching)] = 0
    comps, n = ndimage.label(out >= 1, structure=CUBE)
    if n:
        sizes = np.bincount(comps.ravel())
        sizes[0] = 0
        out[comps != int(np.argmax(sizes))] = 0
    return out


def _check_case(image: sitk.Image, bundle, prep: Preprocessing, settings) -> np.ndarray:
    array = sitk.GetArrayFromImage(image)
    probs, tr = predict_network_probabilities(array, image.GetSpacing(), bundle.model, prep, settings)
    labels = probabilities_to_labels(probs, tr.input_shape)
    np.testing.assert_array_equal(labels, _previous_labels(probs, tr.input_shape))
    np.testing.assert_array_equal(postprocess_labels(labels), _reference_postprocess(labels))
    return labels


def test_real_ct_with_the_demo_model(real_ct_dir):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(real_ct_dir)))
    image = reader.Execute()[128:384, 128:384, :]  # the liver's side, 256 x 256: small windows
    bundle = _demo_bundle()
    own = Preprocessing.from_dict(bundle.card.preprocessing)
    _check_case(image, bundle, own, bundle.card.inference)
    released = Preprocessing(inplane_factor=0.5, slice_spacing=None)  # 256 x 256: row bands
    labels = _check_case(image, bundle, released, bundle.card.inference.replace(window=(8, 128, 128)))
    assert labels.shape == (3, 256, 256)


def test_phantom_with_the_demo_model_on_the_released_grid():
    from MPUNetCore.phantoms import make_phantom as anatomical_phantom  # what the demo model knows

    image, _ = anatomical_phantom(3, (12, 256, 256), spacing=(1.5, 1.5, 3.0), phase="portal_venous")
    bundle = _demo_bundle()
    prep = Preprocessing(inplane_factor=0.5, slice_spacing=1.0)  # z interpolated back 24 -> 12
    labels = _check_case(image, bundle, prep, bundle.card.inference.replace(window=(24, 64, 64)))
    assert {1}.issubset(set(np.unique(labels).tolist()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_postprocessing_in_the_box_equals_whole_volume_scipy(seed):
    rng = np.random.default_rng(seed)
    shape = (20, 40, 36)
    blobs = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    labels = np.zeros(shape, np.uint8)
    labels[blobs > 0.05] = 1
    labels[blobs > 0.12] = 2
    labels[rng.random(shape) < 0.002] = 2  # isolated tumour voxels, most far from any liver
    labels[:, :3] = 0  # an empty margin, so the box is smaller than the volume
    np.testing.assert_array_equal(postprocess_labels(labels), _reference_postprocess(labels))


def test_postprocessing_of_the_real_liver_label(real_ct_dir):
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))).astype(np.uint8)
    labels = liver.copy()
    zz, yy, xx = np.nonzero(liver)
    labels[1, yy.min() + 20 : yy.min() + 26, xx.min() + 30 : xx.min() + 36] = 2  # inside: kept
    labels[1, 5:8, 5:8] = 2  # far away: removed
    labels[0, 500:503, 500:503] = 1  # a second, small liver island: removed
    np.testing.assert_array_equal(postprocess_labels(labels), _reference_postprocess(labels))


def test_foreground_box_hand_built():
    labels = np.zeros((5, 6, 7), np.uint8)
    assert foreground_box(labels) is None
    labels[1, 2, 3] = 1
    labels[3, 4, 1] = 2
    assert foreground_box(labels) == (slice(1, 4), slice(2, 5), slice(1, 4))
