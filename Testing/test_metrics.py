"""Tests of MPUNetCore.metrics against MONAI, SimpleITK and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    get_confusion_matrix,
)
from monai.metrics.utils import get_edge_surface_distance

from MPUNetCore.metrics import (
    METRIC_KEYS,
    DiceAccumulator,
    label_metrics,
    mean_metrics,
    segmentation_metrics,
    surface_distances,
)

# MONAI's own get_mask_edges call passes an argument it deprecated; that warning is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")

RTOL, ATOL = 1e-5, 1e-4  # our float32 SimpleITK distance maps vs MONAI's float64 KD-tree


def blobs(shape, seed, n=4, shift=0):
    """Two masks made of seeded random ellipsoids; the second one moves and resizes each blob."""
    rng = np.random.default_rng(seed)
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    pred = np.zeros(shape, bool)
    ref = np.zeros(shape, bool)
    for _ in range(n):
        centre = rng.uniform(0, shape)  # blobs may be cut by the array border
        radii = rng.uniform(2, max(3, min(shape) / 4), size=len(shape))
        moved = centre + rng.integers(-2 - shift, 3 + shift, size=len(shape))
        scale = rng.uniform(0.7, 1.3, size=len(shape))
        pred |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
        ref |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, moved, radii * scale)) <= 1
    assert pred.any() and ref.any()
    return pred, ref


def as_monai(mask):
    return torch.as_tensor(np.ascontiguousarray(mask), dtype=torch.float32)[None, None]


def monai_reference(pred, ref, spacing):
    p, r = as_monai(pred), as_monai(ref)
    cm = get_confusion_matrix(p, r, include_background=True)
    out = {
        name: float(compute_confusion_matrix_metric(monai_name, cm).item())
        for name, monai_name in [
            ("precision", "precision"),
            ("recall", "sensitivity"),
            ("specificity", "specificity"),
            ("accuracy", "accuracy"),
            ("mcc", "mcc"),
            ("iou", "threat score"),
        ]
    }
    out["tp"], out["fp"], out["tn"], out["fn"] = (float(v) for v in cm[0, 0])
    out["dice"] = float(compute_dice(p, r, include_background=True).item())
    sp = list(spacing)
    out["hd95"] = float(compute_hausdorff_distance(p, r, include_background=True, percentile=95, spacing=sp))
    out["msd"] = float(compute_hausdorff_distance(p, r, include_background=True, spacing=sp))
    out["assd"] = float(
        compute_average_surface_distance(p, r, include_background=True, symmetric=True, spacing=sp)
    )
    _, dists, _ = get_edge_surface_distance(p[0, 0], r[0, 0], spacing=sp, symmetric=True, warn_empty=False)
    pooled = torch.cat(dists).double()
    out["rmsd"] = float(torch.sqrt((pooled**2).mean()))
    return out, [np.sort(d.double().numpy()) for d in dists]


def assert_matches_monai(pred, ref, spacing):
    ours = segmentation_metrics(pred, ref, spacing)
    theirs, directed = monai_reference(pred, ref, spacing)
    for key, value in theirs.items():
        tol = ATOL if key in ("assd", "msd", "rmsd", "hd95") else 1e-6
        assert ours[key] == pytest.approx(value, rel=RTOL, abs=tol), key
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(d_pr), directed[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(np.sort(d_rp), directed[1], rtol=RTOL, atol=ATOL)
    return ours


@pytest.mark.parametrize(
    "seed, shape, spacing",
    [
        (0, (24, 40, 36), (1.0, 1.0, 1.0)),
        (1, (20, 36, 44), (3.0, 0.7, 1.3)),
        (2, (30, 30, 30), (0.5, 2.0, 0.8)),
        (3, (48, 56), (1.0, 1.0)),
        (4, (40, 64), (2.5, 0.6)),
    ],
)
def test_random_blobs_match_monai(seed, shape, spacing):
    pred, ref = blobs(shape, seed)
    ours = assert_matches_monai(pred, ref, spacing)
    assert set(ours) == set(METRIC_KEYS)
    assert ours["voe"] == pytest.approx(1 - ours["iou"])
    n_pred, n_ref = pred.sum(), ref.sum()
    assert ours["rvd"] == pytest.approx((n_pred - n_ref) / n_ref)


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    """One far outlier blob in the prediction: the directed P95 differs from the pooled P95."""
    ref = np.zeros((20, 60, 60), bool)
    ref[5:15, 10:40, 10:40] = True
    pred = ref.copy()
    pred[8:12, 50:58, 50:58] = True
    ours = assert_matches_monai(pred, ref, (2.0, 1.0, 1.0))
    d_pr, d_rp = surface_distances(pred, ref, (2.0, 1.0, 1.0))
    pooled95 = np.percentile(np.concatenate([d_pr, d_rp]), 95)
    assert ours["hd95"] > pooled95 + 1.0


def test_against_simpleitk_filters_anisotropic():
    pred, ref = blobs((22, 34, 30), seed=7, shift=2)
    spacing_zyx = (2.5, 0.9, 0.6)
    ours = segmentation_metrics(pred.astype(np.uint8), ref.astype(np.int32), spacing_zyx)
    check_against_simpleitk(ours, pred, ref, spacing_xyz=spacing_zyx[::-1])


def check_against_simpleitk(ours, pred, ref, spacing_xyz):
    def image(mask):
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing(tuple(float(s) for s in spacing_xyz))
        return img

    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(image(pred), image(ref))
    n_pred, n_ref = ours["tp"] + ours["fp"], ours["tp"] + ours["fn"]
    assert ours["dice"] == pytest.approx(overlap.GetDiceCoefficient())
    assert ours["iou"] == pytest.approx(overlap.GetJaccardCoefficient())
    assert 2 * ours["rvd"] * n_ref / (n_pred + n_ref) == pytest.approx(overlap.GetVolumeSimilarity())
    assert 1 - ours["recall"] == pytest.approx(overlap.GetFalseNegativeError())
    assert 1 - ours["specificity"] == pytest.approx(overlap.GetFalsePositiveError())
    assert 1 - ours["precision"] == pytest.approx(overlap.GetFalseDiscoveryRate())

    # Surfaces: face-connected contour of the mask padded with background (border voxels are surface).
    def contour(mask):
        padded = sitk.ConstantPad(image(mask), [1] * mask.ndim, [1] * mask.ndim, 0)
        return sitk.BinaryContour(padded, fullyConnected=False, backgroundValue=0, foregroundValue=1)

    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(contour(pred), contour(ref))
    assert ours["msd"] == pytest.approx(hausdorff.GetHausdorffDistance(), rel=RTOL, abs=ATOL)
    d_pr, d_rp = surface_distances(pred, ref, spacing_xyz[::-1])
    assert (d_pr.mean() + d_rp.mean()) / 2 == pytest.approx(
        hausdorff.GetAverageHausdorffDistance(), rel=RTOL, abs=ATOL
    )


def test_real_liver_label_against_eroded_copy(real_ct_dir):
    label = sitk.ReadImage(str(real_ct_dir / "liver_seg.nrrd"))
    eroded = sitk.BinaryErode(label, kernelRadius=(4, 4, 1), foregroundValue=1)
    ref = sitk.GetArrayFromImage(label)  # (z, y, x) int16 0/1
    pred = sitk.GetArrayFromImage(eroded)
    spacing_zyx = label.GetSpacing()[::-1]
    ours = assert_matches_monai(pred.astype(bool), ref.astype(bool), spacing_zyx)
    assert 0.8 < ours["dice"] < 1.0 and ours["precision"] == 1.0 and ours["fp"] == 0
    check_against_simpleitk(ours, pred, ref, spacing_xyz=label.GetSpacing())


def test_hand_computed_2d_case():
    pred = np.zeros((4, 4), np.int64)
    pred[0:2, 0:2] = 1
    ref = np.zeros((4, 4), np.int64)
    ref[0:2, 1:3] = 1
    m = segmentation_metrics(pred, ref, spacing=(2.0, 3.0))  # rows 2 mm apart, columns 3 mm
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 2, 10)
    expected = {
        "dice": 0.5, "iou": 1 / 3, "precision": 0.5, "recall": 0.5, "specificity": 10 / 12,
        "accuracy": 0.75, "mcc": (2 * 10 - 2 * 2) / math.sqrt(4 * 4 * 12 * 12), "voe": 2 / 3, "rvd": 0.0,
        # every voxel is a surface voxel; each directed set is {0, 0, 3, 3} mm (a one-column shift)
        "assd": 1.5, "msd": 3.0, "rmsd": 3 * math.sqrt(0.5), "hd95": 3.0,
    }  # fmt: skip
    for key, value in expected.items():
        assert m[key] == pytest.approx(value), key


def test_single_voxels():
    a = np.zeros((5, 6, 7), bool)
    b = np.zeros_like(a)
    a[2, 3, 4] = True
    b[2, 3, 6] = True
    m = segmentation_metrics(a, b, spacing=(4.0, 3.0, 0.5))
    assert m["dice"] == 0 and m["tp"] == 0
    for key in ("assd", "msd", "rmsd", "hd95"):
        assert m[key] == pytest.approx(1.0), key
    same = segmentation_metrics(a, a, spacing=(4.0, 3.0, 0.5))
    assert same["dice"] == 1 and same["mcc"] == 1 and same["hd95"] == 0 and same["assd"] == 0
    assert_matches_monai(a, b, (4.0, 3.0, 0.5))


def test_empty_masks_are_defined_without_warnings():
    empty = np.zeros((6, 7, 8), bool)
    full = empty.copy()
    full[1:4, 2:5, 3:6] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        both = segmentation_metrics(empty, empty)
        missed = segmentation_metrics(empty, full)  # prediction empty
        spurious = segmentation_metrics(full, empty)  # reference empty
        all_fg = segmentation_metrics(np.ones_like(empty), np.ones_like(empty))
    for key in ("dice", "iou", "precision", "recall", "specificity", "accuracy", "mcc"):
        assert both[key] == 1.0, key
        assert all_fg[key] == 1.0, key
    assert both["rvd"] == 0 and both["voe"] == 0
    assert all(both[k] == 0 for k in ("assd", "msd", "rmsd", "hd95"))
    for m in (missed, spurious):
        assert m["dice"] == m["iou"] == m["precision"] == m["recall"] == 0.0
        assert m["voe"] == 1.0
        assert all(math.isnan(m[k]) for k in ("assd", "msd", "rmsd", "hd95"))
        assert m["accuracy"] == pytest.approx((m["tp"] + m["tn"]) / empty.size)
    assert missed["rvd"] == -1.0 and math.isnan(spurious["rvd"])
    assert missed["specificity"] == 1.0 and spurious["specificity"] == pytest.approx(1 - 27 / 336)
    nan_keys = {k for m in (both, missed, spurious, all_fg) for k, v in m.items() if math.isnan(v)}
    assert nan_keys == {"assd", "msd", "rmsd", "hd95", "rvd"}


def test_mcc_large_counts_no_overflow():
    from MPUNetCore.metrics import Confusion, matthews_correlation

    tp, fp, fn, tn = 3 * 10**9, 2 * 10**7, 5 * 10**7, 9 * 10**10
    expected = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert matthews_correlation(Confusion(tp, fp, fn, tn)) == pytest.approx(expected, rel=1e-12)


def test_inputs_torch_and_dtypes_agree():
    pred, ref = blobs((16, 20, 24), seed=11)
    spacing = (1.5, 1.0, 0.5)
    base = segmentation_metrics(pred, ref, spacing)
    for p, r in [
        (torch.from_numpy(pred), torch.from_numpy(ref)),
        (pred.astype(np.uint8), ref.astype(np.int16)),
        (torch.from_numpy(pred.astype(np.float32)), ref.astype(np.float64)),
    ]:
        assert segmentation_metrics(p, r, spacing) == base


@pytest.mark.parametrize(
    "pred, ref, spacing, match",
    [
        (np.zeros((4, 5, 6)), np.zeros((4, 5, 7)), None, "shape"),
        (np.full((4, 5, 6), 2), np.zeros((4, 5, 6)), None, "prediction is not a binary"),
        (np.zeros((4, 5, 6)), np.full((4, 5, 6), 0.5), None, "reference is not a binary"),
        (np.zeros((4, 5, 6)), np.zeros((4, 5, 6)), (1.0, 1.0), "spacing has 2 values"),
        (np.zeros((4, 5)), np.zeros((4, 5)), (1.0, 1.0, 1.0), "spacing has 3 values"),
        (np.zeros((4, 5)), np.zeros((4, 5)), (1.0, -1.0), "positive"),
        (np.zeros(5), np.zeros(5), None, "2D or 3D"),
    ],
)
def test_invalid_inputs_raise(pred, ref, spacing, match):
    with pytest.raises(ValueError, match=match):
        segmentation_metrics(pred, ref, spacing)


def test_label_metrics_uses_lits_classes():
    pred_l, ref_l = np.zeros((10, 12, 14), np.uint8), np.zeros((10, 12, 14), np.uint8)
    pred_b, ref_b = blobs((10, 12, 14), seed=5)
    pred_l[pred_b], ref_l[ref_b] = 1, 1
    pred_l[2:5, 3:6, 3:7], ref_l[3:6, 3:6, 4:8] = 2, 2
    spacing = (2.0, 1.0, 1.0)
    m = label_metrics(pred_l, ref_l, spacing)
    assert set(m) == {"liver", "tumor"}
    assert m["liver"] == segmentation_metrics(pred_l >= 1, ref_l >= 1, spacing)
    assert m["tumor"] == segmentation_metrics(pred_l == 2, ref_l == 2, spacing)
    with pytest.raises(ValueError, match="shape"):
        label_metrics(pred_l, ref_l[:-1], spacing)
    with pytest.raises(ValueError, match="no labels"):
        label_metrics(pred_l, ref_l, spacing, classes={"liver": []})


def test_dice_per_case_vs_global_hand_computed():
    # case A: liver 10 voxels, predicted perfectly; no tumour anywhere.
    ref_a = np.zeros((1, 20), np.uint8)
    ref_a[0, :10] = 1
    # case B: liver 4 voxels (tumour 2 of them); prediction: liver 4 voxels shifted by 2, tumour 2 voxels.
    ref_b = np.zeros((1, 20), np.uint8)
    ref_b[0, 10:14] = [1, 1, 2, 2]
    pred_b = np.zeros((1, 20), np.uint8)
    pred_b[0, 12:16] = [2, 2, 1, 1]
    acc = DiceAccumulator()
    acc.add("A", ref_a, ref_a)
    acc.add("B", pred_b, ref_b, spacing=(1.0, 1.0))
    # liver: A dice 1 (tp 10); B tp 2, fp 2, fn 2 -> dice 0.5. per case 0.75; global 2*12/(24+4) = 6/7.
    # tumour: A both empty -> 1; B tp 2 -> dice 1. per case 1; global 1.
    assert acc.dice_per_case() == pytest.approx({"liver": 0.75, "tumor": 1.0})
    assert acc.dice_global() == pytest.approx({"liver": 6 / 7, "tumor": 1.0})
    rows = acc.rows()
    assert [(r["case_id"], r["class"]) for r in rows] == [
        ("A", "liver"),
        ("A", "tumor"),
        ("B", "liver"),
        ("B", "tumor"),
    ]
    assert all(list(r) == acc.fieldnames() for r in rows)
    summary = acc.summary()
    assert summary["liver"]["dice_global"] == pytest.approx(6 / 7) and summary["liver"]["n_cases"] == 2
    assert summary["tumor"]["mean_assd"] == 0.0  # A: both empty -> 0; B: identical tumours -> 0
    with pytest.raises(ValueError, match="already added"):
        acc.add("A", ref_a, ref_a)
    # Cases scored apart (e.g. by two DDP processes) and merged give the same summary.
    part_a, part_b, merged = DiceAccumulator(), DiceAccumulator(), DiceAccumulator()
    part_a.add("A", ref_a, ref_a)
    part_b.add("B", pred_b, ref_b, spacing=(1.0, 1.0))
    merged.extend(part_a.cases)
    merged.extend(part_b.cases)
    assert merged.summary() == summary and merged.rows() == rows
    with pytest.raises(ValueError, match="already added"):
        merged.extend(part_a.cases)


def test_mean_metrics_skips_and_counts_nan():
    result = mean_metrics(
        [
            {"case_id": "a", "dice": 1.0, "hd95": 2.0},
            {"case_id": "b", "dice": 0.0, "hd95": float("nan")},
            {"case_id": "c", "dice": 0.5, "hd95": 4.0, "rvd": float("nan")},
        ]
    )
    assert result.n_cases == 3
    assert result.mean["dice"] == pytest.approx(0.5) and result.mean["hd95"] == pytest.approx(3.0)
    assert result.n_missing == {"dice": 0, "hd95": 1, "rvd": 3}
    assert math.isnan(result.mean["rvd"]) and "case_id" not in result.mean
