"""Anatomical phantoms (MPUNetCore.phantoms): determinism, LPS anatomy, HU per contrast phase, sizes.

The HU references below are typed from the literature (Lamba et al., AJR 2014 for unenhanced tissue;
Bae, Radiology 2010 for enhancement per phase), independently of the generator's own table, and widened
by a few HU for partial-volume blur. Timing lives in benchmarks/bench_phantom.py, not here.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MPUNetCore.phantoms import PHASES, TISSUES, build_phantom, make_phantom, write_lits_folder
from MPUNetCore.phantoms.folder import case_seed
from MPUNetCore.phantoms.geometry import draw_scanner
from MPUNetCore.phantoms.lesions import draw_count
from MPUNetCore.volume_io import VolumeError
from Testing.real_data import REAL_CT_DIR

REAL = REAL_CT_DIR
WIDE = dict(shape=(48, 128, 128), spacing=(3.2, 3.2, 12.0))  # 410 x 410 x 576 mm: chest to pelvis
# median HU inside the organ per phase (published adult ranges, +-8 HU for blur)
FAT = (-125, -75)
LITERATURE = {
    "non_contrast": {
        "liver": (45, 75),
        "spleen": (35, 60),
        "aorta": (30, 60),
        "muscle": (30, 65),
        "fat": FAT,
    },
    "arterial": {
        "liver": (60, 100),
        "spleen": (90, 180),
        "aorta": (200, 460),
        "muscle": (35, 75),
        "fat": FAT,
    },
    "portal_venous": {
        "liver": (90, 145),
        "spleen": (100, 160),
        "aorta": (130, 230),
        "muscle": (40, 80),
        "fat": FAT,
    },
    "delayed": {"liver": (75, 115), "spleen": (80, 130), "aorta": (90, 160), "muscle": (35, 75), "fat": FAT},
}


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def _interior(mask: np.ndarray, inplane: int = 2) -> np.ndarray:
    """Voxels of ``mask`` at least ``inplane`` voxels (and one slice) inside its edge."""
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    return _array(sitk.BinaryErode(image, [inplane, inplane, 1])) > 0


def test_same_seed_same_phantom_and_different_seeds_differ():
    first = build_phantom(7, (24, 96, 96), tissues=True)
    second = build_phantom(7, (24, 96, 96), tissues=True)
    for a, b in ((first.image, second.image), (first.label, second.label)):
        np.testing.assert_array_equal(_array(a), _array(b))
        assert a.GetSpacing() == b.GetSpacing() and a.GetOrigin() == b.GetOrigin()
    np.testing.assert_array_equal(first.tissues, second.tissues)
    other = make_phantom(8, (24, 96, 96))
    assert not np.array_equal(_array(first.image), _array(other[0]))


def test_types_labels_and_geometry():
    case = build_phantom(3, (32, 160, 160), n_tumors=4, tissues=True)
    image, label = case.image, case.label
    assert image.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert image.GetSize() == label.GetSize() == (160, 160, 32)
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        assert getattr(image, get)() == getattr(label, get)()
    assert image.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    lab = _array(label)
    assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 1).any()
    # every tumour component touches the liver (tumours grow from liver voxels; some bulge out)
    components = _array(sitk.ConnectedComponent(sitk.GetImageFromArray((lab == 2).astype(np.uint8)), True))
    liver_next = _array(sitk.BinaryDilate(sitk.GetImageFromArray((lab == 1).astype(np.uint8)), [1, 1, 1])) > 0
    for k in range(1, components.max() + 1):
        assert (liver_next & (components == k)).any()


def test_drawn_protocols_in_range():
    rng = np.random.default_rng(0)
    scanners = [draw_scanner(rng, None, None, 512, width) for width in rng.uniform(290, 530, 300)]
    inplane = np.array([s.spacing[0] for s in scanners])
    assert inplane.min() >= 0.6 and inplane.max() <= 1.0
    thickness = np.array([s.thickness for s in scanners])
    assert thickness.min() >= 0.7 and thickness.max() <= 5.0
    assert {s.phase for s in scanners} == set(PHASES)
    counts = np.array([draw_count(rng) for _ in range(2000)])
    assert counts.min() == 0 and counts.max() == 15 and 0.1 < (counts == 0).mean() < 0.25


def _centroid(case, mask: np.ndarray) -> np.ndarray:
    z, y, x = np.nonzero(mask)
    return np.array(case.image.TransformContinuousIndexToPhysicalPoint((x.mean(), y.mean(), z.mean())))


def _real_liver_side() -> float:
    """Physical x of the real CT's liver centroid minus the body's midline x (negative: patient's right)."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(REAL)))
    image = reader.Execute()
    hu, seg = _array(image), _array(sitk.ReadImage(str(REAL / "liver_seg.nrrd")))
    body = np.nonzero((hu[1] > -500).any(0))[0]
    liver = np.nonzero(seg[1])[1]
    to_x = lambda i: image.TransformContinuousIndexToPhysicalPoint((float(i), 0.0, 1.0))[0]  # noqa: E731
    return to_x(liver.mean()) - to_x((body[0] + body[-1]) / 2)


def test_anatomy_in_lps():
    hearts = 0
    for seed in range(5):
        case = build_phantom(seed, tissues=True, **WIDE)
        t = case.tissues
        body = (t != TISSUES["air"]) & (t != TISSUES["table"]) & (t != TISSUES["table_foam"])
        liver = _centroid(case, _array(case.label) >= 1)
        midline = _centroid(case, body)[0]
        # LPS: +x is the patient's left, +y posterior, +z superior
        assert liver[0] < midline - 20, seed
        if (t == TISSUES["spleen"]).any():
            assert _centroid(case, t == TISSUES["spleen"])[0] > midline + 20, seed
        if (t == TISSUES["heart"]).sum() > 100:  # the field of view may start below the heart
            hearts += 1
            assert _centroid(case, t == TISSUES["heart"])[2] > liver[2] + 30, seed
        assert _centroid(case, t == TISSUES["csf"])[1] > liver[1], seed
        # the real CT has its liver on the same side of the midline
        assert np.sign(_real_liver_side()) == np.sign(liver[0] - midline)
    assert hearts >= 2


def test_recesses_put_lung_between_the_liver_and_the_wall():
    """With ``recess``, liver and visceral fat near the lateral and posterior wall below the dome become
    lung: a crescent around the liver, as in the real CT. The patient, protocol and tumour count stay
    those of the seed (the tumours' places may move, and organs drawn later into the cavity stop at the
    lung); without it, or with a depth of 0, nothing changes."""
    spacing = (1.6, 1.6, 3.0)
    wall = [TISSUES[n] for n in ("fat", "skin", "muscle", "cortical_bone", "cancellous_bone", "air")]
    for seed in (1, 4):
        plain = build_phantom(seed, (64, 128, 128), spacing, tissues=True)
        deep = build_phantom(seed, (64, 128, 128), spacing, tissues=True, recess=(100.0, 100.0))
        new_lung = (deep.tissues == TISSUES["lung"]) & (plain.tissues != TISSUES["lung"])
        assert new_lung.sum() > 100, seed
        # inside the cavity (liver, fat and the organs drawn into it later), never the body wall
        assert not np.isin(plain.tissues[new_lung], wall).any()
        assert (plain.tissues[new_lung] == TISSUES["liver"]).sum() > 100
        assert (_array(deep.label)[new_lung] == 0).all()  # carved voxels left the liver's label
        liver = _array(plain.label) >= 1
        lost = (liver & new_lung).sum() / liver.sum()
        assert 0.001 < lost < 0.15, (seed, lost)  # a rim, not the organ
        # towards the wall: farther from the liver's axis than the liver's voxels are on average
        _, ly, lx = np.nonzero(liver)
        _, cy, cx = np.nonzero(liver & new_lung)
        spread = np.median(np.hypot(ly - ly.mean(), lx - lx.mean()))
        assert np.median(np.hypot(cy - ly.mean(), cx - lx.mean())) > spread, seed
        assert (plain.n_tumors, plain.phase, plain.scanner) == (deep.n_tumors, deep.phase, deep.scanner)
    flat = build_phantom(1, (16, 64, 64), spacing, recess=(0.0, 0.0))
    np.testing.assert_array_equal(_array(flat.image), _array(build_phantom(1, (16, 64, 64), spacing).image))


@pytest.mark.parametrize("phase", PHASES)
def test_organ_hu_within_published_ranges(phase):
    case = build_phantom(5, (40, 160, 160), spacing=(2.4, 2.4, 3.0), n_tumors=0, phase=phase, tissues=True)
    hu, t = _array(case.image).astype(np.float32), case.tissues
    medians = {}
    for name in ("liver", "spleen", "aorta", "muscle", "fat"):
        inside = _interior(t == TISSUES[name], 1 if name == "aorta" else 2)
        assert inside.sum() > 30, name
        medians[name] = float(np.median(hu[inside]))
    for name, (lo, hi) in LITERATURE[phase].items():
        if name == "liver" and case.hu["liver"] < lo:  # a fatty liver: darker than the spleen instead
            assert medians["liver"] < medians["spleen"] - 10
            continue
        assert lo - 8 <= medians[name] <= hi + 8, (phase, name, medians[name])


@pytest.mark.parametrize("phase", PHASES)
def test_every_phase_draws_hu_within_published_ranges(phase):
    # the noise-free table of 24 cases per phase (fatty livers among them)
    for seed in range(24):
        case = build_phantom(seed, (16, 64, 64), phase=phase)
        for name, (lo, hi) in LITERATURE[phase].items():
            value = case.hu[name]
            if name == "liver" and value < lo:
                assert value < case.hu["spleen"]
                continue
            assert lo <= value <= hi, (phase, seed, name, value)


def test_liver_volumes_and_tumour_sizes():
    volumes = []
    for seed in range(10):
        case = build_phantom(seed, shape=(48, 160, 160), spacing=(3.0, 3.0, 12.0))
        lab = _array(case.label)
        voxel = np.prod(case.image.GetSpacing())
        if case.patient["s"] == 1.0 and not (lab[0].any() or lab[-1].any()):
            volumes.append((lab >= 1).sum() * voxel / 1e6)
        tumours = _array(sitk.ConnectedComponent(sitk.GetImageFromArray((lab == 2).astype(np.uint8))))
        sizes = np.bincount(tumours.ravel())[1:] * voxel
        diameters = (6 * sizes / np.pi) ** (1 / 3)
        assert diameters.size <= 15 and (diameters.size == 0 or diameters.max() < 110)
    assert len(volumes) >= 3 and 0.8 <= min(volumes) and max(volumes) <= 2.8, volumes


def test_lits_folder_and_overwrite(tmp_path):
    pairs = write_lits_folder(tmp_path / "lits", 2, seed=5, shape=(16, 64, 64))
    assert [p.name for pair in pairs for p in pair] == [
        "volume-0.nii.gz", "segmentation-0.nii.gz", "volume-1.nii.gz", "segmentation-1.nii.gz"
    ]  # fmt: skip
    expected, _ = make_phantom(case_seed(5, 1), (16, 64, 64))
    np.testing.assert_array_equal(_array(sitk.ReadImage(str(pairs[1][0]))), _array(expected))
    with pytest.raises(VolumeError, match="already exists"):
        write_lits_folder(tmp_path / "lits", [1], seed=5, shape=(16, 64, 64))
    slabs = write_lits_folder(tmp_path / "slabs", 6, seed=5, shape=(16, 64, 64), slab_fraction=1.0)
    depths = [sitk.ReadImage(str(volume)).GetSize()[2] for volume, _ in slabs]
    assert all(3 <= d <= 12 for d in depths) and len(set(depths)) > 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (4, 6, 64)},
        {"shape": (0, 64, 64)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"n_tumors": -1},
        {"phase": "venous"},
        {"recess": (50.0, 20.0)},
        {"recess": (0.0, 500.0)},
        {"recess": (30.0,)},
        {"steatosis": 1.5},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        make_phantom(0, **kwargs)


def test_phantom_command_writes_the_anatomical_generator_or_the_legacy_one(tmp_path):
    from MPUNetCore.cli import main
    from MPUNetCore.phantom import make_phantom as legacy_phantom
    from MPUNetCore.phantom import write_lits_folder as legacy_folder

    shape = ["--shape", "16", "64", "64"]
    assert main(["phantom", str(tmp_path / "new"), "--seed", "4"] + shape) == 0
    assert main(["phantom", str(tmp_path / "old"), "--seed", "4", "--legacy"] + shape) == 0
    new = _array(sitk.ReadImage(str(tmp_path / "new" / "volume-0.nii.gz")))
    np.testing.assert_array_equal(new, _array(make_phantom(case_seed(4, 0), (16, 64, 64))[0]))
    legacy_folder(tmp_path / "ref", 1, seed=4, shape=(16, 64, 64))
    old = _array(sitk.ReadImage(str(tmp_path / "old" / "volume-0.nii.gz")))
    np.testing.assert_array_equal(old, _array(sitk.ReadImage(str(tmp_path / "ref" / "volume-0.nii.gz"))))
    assert legacy_phantom is not make_phantom


def test_training_config_passes_the_recess_range_to_the_generator(tmp_path):
    from Training.config import load_config
    from Training.prepare import make_phantoms

    config = tmp_path / "c.toml"
    config.write_text(
        '[data]\nphantom_cases = 1\nphantom_shape = [16, 64, 64]\nphantom_generator = "anatomical"\n'
        "phantom_recess = [120.0, 120.0]\n"
    )
    make_phantoms(load_config(config), tmp_path / "run")
    write_lits_folder(tmp_path / "direct", 1, shape=(16, 64, 64), recess=(120.0, 120.0))
    write_lits_folder(tmp_path / "none", 1, shape=(16, 64, 64))
    ran, direct, none = (
        _array(sitk.ReadImage(str(tmp_path / d / "volume-0.nii.gz"))) for d in ("run", "direct", "none")
    )
    np.testing.assert_array_equal(ran, direct)
    assert not np.array_equal(ran, none)


def test_steatosis_lowers_only_the_liver_by_10_to_45_hu_in_every_phase():
    """``steatosis=1`` makes every liver fatty (10-45 HU darker, never below -10 HU); the other tissues,
    and the tumours' contrast to the liver, stay as drawn; 0 changes nothing."""
    drops = []
    for seed, phase in zip(range(8), PHASES * 2):
        plain = build_phantom(seed, (8, 64, 64), phase=phase, n_tumors=1)
        fatty = build_phantom(seed, (8, 64, 64), phase=phase, n_tumors=1, steatosis=1.0)
        drop = plain.hu["liver"] - fatty.hu["liver"]
        assert 10 - 1e-3 <= drop <= 45 + 1e-3 or fatty.hu["liver"] == -10.0, (seed, phase, drop)
        drops.append(drop)
        for name, value in plain.hu.items():
            if name == "liver":
                continue
            expected = value - drop if name.startswith("tumor_") and name != "tumor_cyst" else value
            assert fatty.hu[name] == pytest.approx(expected, abs=1e-3), (seed, name)
    assert max(drops) - min(drops) > 10  # drawn per case, not a constant
    same = build_phantom(3, (8, 64, 64), steatosis=0.0)
    np.testing.assert_array_equal(_array(same.image), _array(build_phantom(3, (8, 64, 64)).image))
