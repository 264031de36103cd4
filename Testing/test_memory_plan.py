"""The memory planner (issue 14, item 5): properties of the chosen plan, and what a run does with it.

Properties are checked against :func:`MPUNetCore.memory.estimate_run_bytes` recomputed here for the
chosen window (the planner's own number is not trusted), over generated sizes and budgets: the plan
fits its budget, a bigger budget never gives a smaller window, a request that fits is left alone,
explicit settings are never changed. The command-line tests run the real ``mpunet segment``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from MPUNetCore.cli import main
from MPUNetCore.memory import estimate_run_bytes
from MPUNetCore.memory_plan import MIN_WINDOW, plan_memory

MULTIPLES = st.sampled_from([8, 16])


def recomputed(case: dict, window, batch: int) -> int:
    """The estimate of a run with ``window`` and ``batch``, computed from the sizes independently."""
    padded = [max(g, w) for g, w in zip(case["network"], window)]
    return estimate_run_bytes(case["input"], padded, 3, int(np.prod(window)), batch, case["channels"], True)


@st.composite
def cases(draw) -> dict:
    multiple = draw(MULTIPLES)
    network = [draw(st.integers(1, 600)), draw(st.integers(16, 400)), draw(st.integers(16, 400))]
    window = [draw(st.integers(1, 8)) * multiple, draw(st.integers(2, 40)) * multiple, None]
    window[2] = draw(st.sampled_from([None, window[1]]))
    return dict(
        input=[network[0], 2 * network[1], 2 * network[2]],
        network=network,
        window=window,
        batch=draw(st.integers(1, 4)),
        channels=draw(st.sampled_from([4, 8, 16, 32])),
        multiple=multiple,
    )


def plan(case: dict, budget, keep=()):
    return plan_memory(
        case["input"],
        case["network"],
        3,
        case["channels"],
        case["window"],
        case["batch"],
        budget,
        case["multiple"],
        keep=keep,
    )


@settings(max_examples=150, deadline=None)
@given(case=cases(), budget=st.integers(2**20, 2**36))
def test_a_plan_that_fits_is_within_the_budget_and_made_of_valid_windows(case, budget):
    chosen = plan(case, budget)
    full = plan(case, None)  # no budget: the request itself
    assert chosen.fits == (recomputed(case, chosen.window, chosen.batch_size) <= budget)
    assert chosen.estimate == recomputed(case, chosen.window, chosen.batch_size)
    assert all(w <= f for w, f in zip(chosen.window, full.window)) and chosen.batch_size <= case["batch"]
    assert all(w % case["multiple"] == 0 for w in chosen.window)
    if not chosen.fits:  # then nothing smaller was allowed: the minimum window, batch 1
        low = [
            min(f, max(case["multiple"], -(-m // case["multiple"]) * case["multiple"]))
            for f, m in zip(full.window, MIN_WINDOW)
        ]
        assert list(chosen.window) == low and chosen.batch_size == 1


@settings(max_examples=100, deadline=None)
@given(case=cases(), budgets=st.lists(st.integers(2**20, 2**36), min_size=2, max_size=6))
def test_a_bigger_budget_never_gives_a_smaller_window(case, budgets):
    plans = [plan(case, b) for b in sorted(budgets)]
    for small, big in zip(plans, plans[1:]):
        assert all(s <= b for s, b in zip(small.window, big.window)), (small, big)
        assert small.batch_size <= big.batch_size


@settings(max_examples=100, deadline=None)
@given(case=cases(), extra=st.integers(0, 2**30))
def test_a_request_that_fits_is_left_alone(case, extra):
    full = plan(case, None)
    chosen = plan(case, recomputed(case, full.window, case["batch"]) + extra)
    assert not chosen.changed and chosen.window == full.window and chosen.batch_size == case["batch"]


@settings(max_examples=100, deadline=None)
@given(case=cases(), budget=st.integers(2**20, 2**36))
def test_explicit_settings_are_kept(case, budget):
    full = plan(case, None)
    kept = plan(case, budget, keep=("window", "batch_size"))
    assert kept.window == full.window and kept.batch_size == case["batch"]
    assert kept.fits == (recomputed(case, full.window, case["batch"]) <= budget)
    window_only = plan(case, budget, keep=("window",))
    assert window_only.window == full.window


def test_depth_shrinks_before_the_plane():
    """The released grid of a 512 x 512 x 400 CT, 16 first-layer channels: a budget between the
    estimates of windows 32 x 256 x 256 and 40 x 256 x 256 gives depth 32 at full plane."""
    case = dict(input=[400, 512, 512], network=[400, 256, 256], window=[48, 256, 256], batch=1, channels=16)
    lower, upper = recomputed(case, (32, 256, 256), 1), recomputed(case, (40, 256, 256), 1)
    chosen = plan_memory(case["input"], case["network"], 3, 16, case["window"], 1, (lower + upper) // 2)
    assert chosen.window == (32, 256, 256) and chosen.fits and chosen.changed
    tight = plan_memory(
        case["input"], case["network"], 3, 16, case["window"], 1, recomputed(case, (16, 200, 256), 1)
    )
    assert tight.window[0] == 16 and tight.window[1] * tight.window[2] <= 200 * 256 and tight.fits


# ------------------------------------------------------------------------- the command line


def bundle_with_window(folder: Path, window) -> Path:
    """The tests' tiny U-Net (input multiple 16) with ``window`` in its card."""
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle
    from Testing.slicer_models import TINY_ARCHITECTURE, TINY_CLASSES

    card = ModelCard(
        name="tiny-window",
        architecture=dict(TINY_ARCHITECTURE),
        classes=[SegmentClass(v, n, c) for v, n, c in TINY_CLASSES],
        preprocessing={
            "hu_window": [-200, 200],
            "scale": 200.0,
            "inplane_factor": 1.0,
            "slice_spacing": None,
        },
        inference={"window": list(window), "overlap": 0.25},
    )
    torch.manual_seed(0)
    return save_bundle(build_network(dict(TINY_ARCHITECTURE)), card, folder / "tiny-window.json")


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from MPUNetCore.phantom import make_phantom

    folder = tmp_path_factory.mktemp("plan")
    image = make_phantom(5, shape=(32, 64, 64))[0]
    source = folder / "ct.nii.gz"
    sitk.WriteImage(image, str(source))
    return source, bundle_with_window(folder, (32, 64, 64))


def run(capfd, source: Path, output: Path, model: Path, *extra: str):
    code = main(
        ["segment", str(source), "-o", str(output), "--model", str(model), "--progress", "none", *extra]
    )
    out, err = capfd.readouterr()
    return code, out, err


def test_a_run_within_the_default_budget_keeps_the_cards_window(case, tmp_path, capfd):
    """Labels identical to the engine run directly with the card's settings: planning changed nothing."""
    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import Preprocessing, segment

    source, model = case
    code, _, err = run(capfd, source, tmp_path / "labels.nii.gz", model)
    assert code == 0 and "warning" not in err, err
    bundle = load_bundle(model)
    image = sitk.ReadImage(str(source))
    direct = segment(
        sitk.GetArrayFromImage(image),
        image.GetSpacing(),
        bundle.model,
        Preprocessing.from_dict(bundle.card.preprocessing),
        bundle.card.inference,
    )
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "labels.nii.gz")))
    assert np.array_equal(written, direct)


def test_a_tight_budget_shrinks_the_window_and_says_so(case, tmp_path, capfd):
    source, model = case
    code, _, err = run(capfd, source, tmp_path / "labels.nii.gz", model, "--max-memory", "440M")
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 0 and len(lines) == 1, err
    assert "window 32 x 64 x 64 (batch 1) would need more than the memory budget of 440 MiB" in lines[0]
    window = [int(v) for v in lines[0].split("running with window ")[1].split(" (")[0].split(" x ")]
    assert window[0] < 32 and all(v % 16 == 0 for v in window)
    assert (tmp_path / "labels.nii.gz").exists()


def refused(capfd, tmp_path: Path, *args) -> str:
    """A refusal: exit 2, one error line, nothing written in the test's folder."""
    before = sorted(tmp_path.rglob("*"))
    code, out, err = run(capfd, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("mpunet segment: error: "), err
    assert "Traceback" not in err and sorted(tmp_path.rglob("*")) == before
    return lines[0]


def test_a_budget_even_the_smallest_window_cannot_meet_is_refused(case, tmp_path, capfd):
    source, model = case
    line = refused(capfd, tmp_path, source, tmp_path / "labels.nii.gz", model, "--max-memory", "4M")
    assert "the run would need about" in line and "the budget is 4 MiB (--max-memory 4 MiB)" in line
    assert "--window" not in line


def test_an_explicit_window_is_kept_and_refused_when_it_cannot_fit(case, tmp_path, capfd):
    source, model = case
    args = (source, tmp_path / "labels.nii.gz", model, "--max-memory", "440M")
    line = refused(capfd, tmp_path, *args, "--window", "32", "64", "64")
    assert "pass a smaller --window (or leave it out" in line
    line = refused(capfd, tmp_path, *args, "--window", "32", "64", "64", "--batch-size", "2")
    assert "pass a smaller --window or --batch-size (or leave them out" in line
    code, _, err = run(capfd, *args, "--window", "16", "64", "64")  # fits: kept, no warning
    assert code == 0 and "warning" not in err, err


# ------------------------------------------------------------------ the Slicer module and batch script


def test_the_module_passes_its_memory_limit_to_the_background_run():
    from MPUNetSegmentationLib.process import SegmentationOptions

    options = SegmentationOptions.create("demo-phantom", device="cpu", max_memory=" 3G ")
    args = options.command("python", Path("in.nrrd"), Path("out.nrrd"))
    assert args[args.index("--max-memory") + 1] == "3G"
    for empty in (None, "", "  "):  # the default: no option, mpunet segment's own default
        plain = SegmentationOptions.create(max_memory=empty).command("python", Path("a"), Path("b"))
        assert "--max-memory" not in plain
    with pytest.raises(ValueError, match="Memory limit: memory size 'lots' is not understood"):
        SegmentationOptions.create(max_memory="lots")


def test_the_batch_script_takes_a_memory_limit(tmp_path, capsys):
    from MPUNetSegmentationLib.batch import parse_args

    options = parse_args(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--max-memory", "3G"])
    assert options.max_memory == "3G"
    assert parse_args(["--input", str(tmp_path), "--output", str(tmp_path / "o")]).max_memory is None
    with pytest.raises(SystemExit) as caught:
        parse_args(["--input", str(tmp_path), "--output", str(tmp_path / "o"), "--max-memory", "lots"])
    assert caught.value.code == 2 and "--max-memory" in capsys.readouterr().err
