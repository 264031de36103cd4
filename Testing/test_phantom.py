"""Synthetic CT phantoms: determinism, LiTS labels, anatomy on the right side, plausible HU, LiTS folders."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.phantom import TISSUES, build_phantom, make_phantom, write_lits_folder
from MPUNetCore.volume_io import VolumeError, read_label_map, read_volume

SMALL = (32, 128, 128)


@pytest.fixture(scope="module")
def case():
    return build_phantom(11, shape=(48, 192, 192), n_tumors=4)


def _arrays(image, label):
    return sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(label)


def test_same_seed_gives_identical_volumes():
    first, second = make_phantom(3, SMALL), make_phantom(3, SMALL)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
        assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()


def test_different_seeds_differ():
    (a, la), (b, lb) = make_phantom(3, SMALL), make_phantom(4, SMALL)
    assert a.GetSpacing() != b.GetSpacing() or not np.array_equal(*_arrays(a, b))
    assert not np.array_equal(sitk.GetArrayFromImage(la), sitk.GetArrayFromImage(lb))


def test_types_labels_and_geometry(case):
    image, label = case.image, case.label
    assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == label.GetSize() == (192, 192, 48)
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(image, get)() == getattr(label, get)()
    assert image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)  # LPS, identity
    hu, lab = _arrays(image, label)
    assert set(np.unique(lab)) == {0, 1, 2}
    assert -1024 <= hu.min() and hu.max() <= 3071
    # labels follow the tissue map: liver (incl. its vessels) is 1, tumour is 2, nothing else is labelled
    liver = np.isin(case.tissues, [TISSUES["liver"], TISSUES["liver_vessel"]])
    np.testing.assert_array_equal(lab == 1, liver)
    np.testing.assert_array_equal(lab == 2, case.tissues == TISSUES["tumor"])


def test_tumours_lie_inside_the_liver(case):
    lab = sitk.GetArrayFromImage(case.label)
    components = sitk.GetArrayFromImage(sitk.ConnectedComponent(case.label > 0, True))
    tumour_components = np.unique(components[lab == 2])
    liver_components = np.unique(components[lab == 1])
    assert tumour_components.size and set(tumour_components) <= set(liver_components)
    assert (lab == 2).sum() < (lab == 1).sum()


@pytest.mark.parametrize("n_tumors", [0, 1, 5])
def test_requested_number_of_tumours(n_tumors):
    _, label = make_phantom(2, SMALL, n_tumors=n_tumors)
    tumours = sitk.GetArrayFromImage(label) == 2
    assert tumours.any() == (n_tumors > 0)
    if n_tumors:
        count = sitk.ConnectedComponentImageFilter()
        count.Execute(sitk.GetImageFromArray(tumours.astype(np.uint8)))
        assert 1 <= count.GetObjectCount() <= n_tumors


def _body_midline_x(hu: np.ndarray, z: int) -> tuple:
    """Body midline x and half width (index units) from the leftmost/rightmost non-air voxel of each row."""
    rows = [np.nonzero(row > -500)[0] for row in hu[z]]
    rows = [r for r in rows if r.size > 10]
    return float(np.mean([(r[0] + r[-1]) / 2 for r in rows])), max((r[-1] - r[0]) / 2 for r in rows)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_liver_on_patient_right_spleen_on_left(seed):
    case = build_phantom(seed, SMALL)
    hu, lab = _arrays(case.image, case.label)
    zz, yy, xx = np.nonzero(lab > 0)
    z = int(np.median(zz))
    midline, half_width = _body_midline_x(hu, z)
    margin = 0.1 * half_width * case.image.GetSpacing()[0]  # mm
    to_lps = case.image.TransformContinuousIndexToPhysicalPoint
    liver_x = to_lps((float(xx.mean()), float(yy.mean()), float(zz.mean())))[0]
    body_x = to_lps((midline, 0.0, float(z)))[0]
    # LPS: +x is the patient's LEFT, so the liver (patient's right) has the smaller x.
    assert liver_x < body_x - margin
    assert xx.mean() < hu.shape[2] / 2  # identity direction: low x indices
    sz, sy, sx = np.nonzero(case.tissues == TISSUES["spleen"])
    if sx.size:
        assert to_lps((float(sx.mean()), float(sy.mean()), float(sz.mean())))[0] > body_x + margin
    # spine posterior: larger y (LPS +y = posterior) than the liver centroid
    bz, by, bx = np.nonzero(case.tissues == TISSUES["disc"])
    if by.size:
        assert by.mean() > yy.mean()


def _interior(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` whose 6 neighbours are in ``mask`` too (away from partial-volume edges)."""
    inner = mask.copy()
    for axis in range(3):
        for shift in (1, -1):
            inner &= np.roll(mask, shift, axis=axis)
    return inner


@pytest.mark.parametrize("seed", [0, 2, 5, 11])
def test_hu_ranges_per_tissue(seed):
    case = build_phantom(seed, SMALL, n_tumors=3)
    hu = sitk.GetArrayFromImage(case.image).astype(np.float32)
    expected = {
        "air": (-1010, -990), "fat": (-125, -80), "visceral_fat": (-110, -65), "muscle": (30, 70),
        "liver": (50, 70), "spleen": (45, 75), "kidney": (45, 75), "lung": (-900, -780),
    }  # fmt: skip
    for name, (lo, hi) in expected.items():
        inside = _interior(case.tissues == TISSUES[name])
        if name in ("air", "fat", "muscle", "liver") or inside.sum() > 50:
            assert lo <= np.median(hu[inside]) <= hi, (name, np.median(hu[inside]))
    bone = hu[case.tissues == TISSUES["bone"]]
    assert np.median(bone) >= 250 and 400 <= np.percentile(bone, 95) <= 1100
    # tumours stand out from the liver: hypodense (20-40 HU) or hyperdense; judged on a 3x3x3 mean
    # (noise / 5) inside the tumours, away from their edges; merged hypo+hyper lesions are allowed
    smooth = sitk.GetArrayFromImage(sitk.Mean(sitk.Cast(case.image, sitk.sitkFloat32), [1, 1, 1]))
    liver = np.median(smooth[_interior(_interior(case.tissues == TISSUES["liver"]))])
    core = _interior(_interior(sitk.GetArrayFromImage(case.label) == 2))
    if core.sum() >= 20:
        assert np.mean(np.abs(smooth[core] - liver) >= 10) >= 0.8
    air_noise = hu[:, :8, :8].std()  # a corner of air: CT noise, neither zero nor absurd
    assert 3 <= air_noise <= 30


def test_spacing_ranges_and_tumour_count_variety():
    spacings, counts = [], []
    for seed in range(20):
        case = build_phantom(seed, (16, 64, 64))
        spacings.append(case.image.GetSpacing())
        counts.append(case.n_tumors)
    sx, sy, sz = np.array(spacings).T
    assert np.all((0.6 <= sx) & (sx <= 0.9)) and np.array_equal(sx, sy)
    assert np.all((1.0 <= sz) & (sz <= 5.0)) and len(set(sz)) > 3
    assert 0 in counts and max(counts) >= 3
    image, _ = make_phantom(0, (16, 64, 64), spacing=(0.7, 0.7, 2.5))
    assert image.GetSpacing() == (0.7, 0.7, 2.5)


def test_lits_folder(tmp_path):
    pairs = write_lits_folder(tmp_path / "lits", 2, seed=5, shape=(16, 96, 96))
    assert [(v.name, s.name) for v, s in pairs] == [
        ("volume-0.nii.gz", "segmentation-0.nii.gz"),
        ("volume-1.nii.gz", "segmentation-1.nii.gz"),
    ]
    for volume_path, seg_path in pairs:
        volume, seg = read_volume(volume_path), read_label_map(seg_path)
        assert volume.shape == seg.shape == (16, 96, 96)
        assert volume.spacing == seg.spacing and volume.origin == seg.origin
        assert volume.direction == seg.direction
        assert set(np.unique(seg.array)) <= {0, 1, 2} and (seg.array == 1).any()
        assert volume.array.min() >= -1024 and volume.name == volume_path.name[: -len(".nii.gz")]
    # case N does not depend on which other cases are written
    (single,) = write_lits_folder(tmp_path / "one", [1], seed=5, shape=(16, 96, 96))
    np.testing.assert_array_equal(read_volume(single[0]).array, read_volume(pairs[1][0]).array)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lits").iterdir()}
    with pytest.raises(VolumeError, match=r"volume-1\.nii\.gz already exists; .*pass --overwrite"):
        write_lits_folder(tmp_path / "lits", [2, 1], seed=5, shape=(16, 96, 96))
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "lits").iterdir()} == before  # nothing written


@pytest.mark.parametrize(
    "kwargs",
    [{"shape": (4, 64, 64)}, {"shape": (16, 64)}, {"spacing": (0.7, 0.7, 0)}, {"n_tumors": -1}],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_phantom(0, **kwargs)
