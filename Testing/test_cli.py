"""The `mpunet` command end to end on phantoms, with a tiny (untrained) model bundle for speed."""

from __future__ import annotations

import csv
import threading

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, load_bundle, save_bundle
from MPUNetCore.cli import main
from MPUNetCore.inference import InferenceCancelled
from MPUNetCore.metrics import label_metrics
from MPUNetCore.phantom import write_lits_folder
from MPUNetCore.pipeline import segment_file
from Testing.test_bundle import ARCH


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    torch.manual_seed(0)
    card = ModelCard(
        name="tiny",
        architecture=dict(ARCH),
        classes=[SegmentClass(0, "Background"), SegmentClass(1, "Liver"), SegmentClass(2, "Liver tumor")],
        preprocessing={
            "hu_window": [-200, 200],
            "scale": 200,
            "inplane_factor": None,
            "target_spacing": [4.0, 4.0],
            "slice_spacing": 4.0,
        },
        inference={"window": [16, 32, 32], "overlap": 0.25},
    )
    return save_bundle(build_network(ARCH), card, tmp_path_factory.mktemp("model") / "tiny.json")


@pytest.fixture(scope="module")
def lits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lits")
    write_lits_folder(folder, cases=2, seed=3, shape=(24, 96, 96))
    return folder


def test_segment_file_keeps_the_input_geometry(tiny_model, lits, tmp_path, capsys):
    out = tmp_path / "pred.nrrd"
    assert (
        main(
            [
                "segment",
                str(lits / "volume-0.nii.gz"),
                "-o",
                str(out),
                "--model",
                str(tiny_model),
                "--progress",
                "none",
            ]
        )
        == 0
    )
    ct, pred = sitk.ReadImage(str(lits / "volume-0.nii.gz")), sitk.ReadImage(str(out))
    assert pred.GetSize() == ct.GetSize()
    np.testing.assert_allclose(pred.GetSpacing(), ct.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(pred.GetOrigin(), ct.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(pred.GetDirection(), ct.GetDirection(), atol=1e-6)
    assert set(np.unique(sitk.GetArrayFromImage(pred))) <= {0, 1, 2}
    assert "wrote" in capsys.readouterr().out


def test_folder_mode_skips_labels_continues_after_a_broken_case_and_fails_at_the_end(
    tiny_model, lits, tmp_path, capsys
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("volume-0.nii.gz", "segmentation-0.nii.gz"):
        (inputs / name).write_bytes((lits / name).read_bytes())
    (inputs / "broken.nii.gz").write_bytes(b"definitely not a NIfTI file")
    code = main(
        [
            "segment",
            str(inputs),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_model),
            "--progress",
            "none",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["volume-0.nii.gz"]
    assert "1 of 2 case(s) failed" in captured.err and "broken" in captured.err


def test_existing_outputs_are_never_replaced_without_overwrite(tiny_model, lits, tmp_path, capsys):
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"precious")
    args = [
        "segment",
        str(lits / "volume-1.nii.gz"),
        "-o",
        str(out),
        "--model",
        str(tiny_model),
        "--progress",
        "none",
    ]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "-o", str(tmp_path / "x.nii.gz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert main(["info", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_a_cancelled_run_writes_nothing(tiny_model, lits, tmp_path):
    bundle = load_bundle(tiny_model)
    stop = threading.Event()
    out = tmp_path / "cancelled.nii.gz"
    with pytest.raises(InferenceCancelled):
        segment_file(
            lits / "volume-0.nii.gz", out, bundle, progress=lambda done, total: stop.set(), cancel=stop
        )
    assert list(tmp_path.iterdir()) == []


def test_evaluate_pairs_lits_names_and_matches_the_metrics_library(tiny_model, lits, tmp_path, capsys):
    preds = tmp_path / "pred"
    assert (
        main(["segment", str(lits), "-o", str(preds), "--model", str(tiny_model), "--progress", "none"]) == 0
    )
    table = tmp_path / "metrics.csv"
    assert main(["evaluate", "--pred", str(preds), "--ref", str(lits), "--out", str(table)]) == 0
    assert "Dice global" in capsys.readouterr().out
    rows = list(csv.DictReader(table.open()))
    assert [(r["case_id"], r["class"]) for r in rows[:4]] == [
        ("volume-0", "liver"),
        ("volume-0", "tumor"),
        ("volume-1", "liver"),
        ("volume-1", "tumor"),
    ]
    ref = sitk.ReadImage(str(lits / "segmentation-1.nii.gz"))
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(preds / "volume-1.nii.gz")))
    expected = label_metrics(pred, sitk.GetArrayFromImage(ref), ref.GetSpacing()[::-1])
    for row in rows[2:4]:
        for key in ("dice", "iou", "precision", "recall"):
            assert float(row[key]) == pytest.approx(expected[row["class"]][key], rel=1e-9)
    assert {r["case_id"] for r in rows[4:]} == {"mean", "global"}


def test_phantom_command_is_seeded(tmp_path):
    for name in ("a", "b"):
        assert (
            main(
                ["phantom", str(tmp_path / name), "--cases", "1", "--seed", "7", "--shape", "16", "64", "64"]
            )
            == 0
        )
    first, second = (sitk.ReadImage(str(tmp_path / n / "volume-0.nii.gz")) for n in ("a", "b"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first), sitk.GetArrayFromImage(second))


def test_demo_with_the_bundled_model_is_reproducible_and_finds_the_liver(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["demo", "--output", str(tmp_path / name), "--progress", "none"]) == 0
    first, second = (sitk.ReadImage(str(tmp_path / n / "phantom-ct_mpunet.nii.gz")) for n in ("a", "b"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(first), sitk.GetArrayFromImage(second))
    label = sitk.ReadImage(str(tmp_path / "a" / "phantom-label.nii.gz"))
    liver = sitk.GetArrayFromImage(label) >= 1
    found = sitk.GetArrayFromImage(first) >= 1
    assert 2 * (liver & found).sum() / (liver.sum() + found.sum()) > 0.8  # the card's held-out Dice is 0.88
    assert "Dice global" in capsys.readouterr().out
