"""The per-stage profile (`mpunet segment --profile`): invariants of the records, and no effect on labels."""

from __future__ import annotations

import mmap
import time

import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from MPUNetCore.bundle import load_bundle
from MPUNetCore.cli import main
from MPUNetCore.phantom import make_phantom
from MPUNetCore.pipeline import segment_file
from MPUNetCore.profiling import Profiler, stage
from MPUNetCore.volume_io import read_label_map

PIPELINE_STAGES = {
    "read",
    "input checks",
    "preprocessing",
    "network forward",
    "blending",
    "resampling back + argmax",
    "post-processing",
    "write",
    "other",
}

steps = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3), st.booleans()), min_size=0, max_size=8
)


@settings(max_examples=25, deadline=None)
@given(steps)
def test_records_are_consistent_for_any_sequence_of_stages(plan):
    """Shares sum to one, every figure is non-negative, stages keep first-entry order and call counts."""
    with Profiler() as prof:
        for name, work, allocate in plan:
            with stage(name):
                time.sleep(work * 1e-4)
                if allocate:
                    block = np.ones(1 << 18)  # 2 MiB touched: faults and RSS to count
                    del block
    records = prof.stages()
    first_order = list(dict.fromkeys(name for name, _, _ in plan))
    assert [r.name for r in records] == first_order + ["other"]
    assert sum(r.share for r in records) == pytest.approx(1.0, abs=1e-9)
    for r in records:
        assert r.seconds >= 0 and r.user >= 0 and r.system >= 0
        assert r.minor_faults >= 0 and r.major_faults >= 0 and 0 <= r.share <= 1
    for name in first_order:
        calls = sum(1 for n, _, _ in plan if n == name)
        assert next(r for r in records if r.name == name).calls == calls
    # stage time is measured inside the profile's wall time
    assert sum(r.seconds for r in records[:-1]) <= prof.total_seconds() + 1e-6
    assert prof.peak_rss() > 0


def test_stage_records_nothing_without_an_active_profiler():
    prof = Profiler()
    with prof:
        with stage("inside"):
            pass
    with stage("after"):  # profiler left: a no-op, and not recorded anywhere
        pass
    assert [r.name for r in prof.stages()] == ["inside", "other"]


def test_peak_of_a_stage_covers_what_it_allocated():
    with Profiler() as prof:
        with stage("small"):
            pass
        with stage("big"):
            # 64 MiB of fresh pages, touched: an anonymous mapping, not malloc, which may hand back
            # memory that is already resident after earlier tests (the peak would then not move)
            block = mmap.mmap(-1, 64 << 20)
            block.write(b"\x01" * (64 << 20))
            block.close()
    small, big = prof.stages()[:2]
    if prof.peak_exact:  # per-stage peaks (Linux): the big stage's peak is 64 MiB above the small one's
        assert big.peak_rss - small.peak_rss >= 60 << 20
    else:
        assert big.peak_rss >= small.peak_rss


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    path = tmp_path_factory.mktemp("case") / "ct.nii.gz"
    image, _ = make_phantom(5, (16, 64, 64), (3.0, 3.0, 4.0))  # the demo model's grid: it finds the liver
    sitk.WriteImage(image, str(path))
    return path


def test_profiling_leaves_the_labels_unchanged_and_covers_every_stage(case, tmp_path):
    bundle = load_bundle("MPUNetCore/models/demo-phantom.json")
    plain = segment_file(case, tmp_path / "plain.nii.gz", bundle, device="cpu")
    with Profiler() as prof:
        profiled = segment_file(case, tmp_path / "profiled.nii.gz", bundle, device="cpu")
    a, b = read_label_map(plain).array, read_label_map(profiled).array
    assert np.array_equal(a, b) and a.any()  # the trained demo model finds liver in the phantom
    records = prof.stages()
    assert {r.name for r in records} == PIPELINE_STAGES
    assert sum(r.share for r in records) == pytest.approx(1.0, abs=1e-9)
    forward = next(r for r in records if r.name == "network forward")
    assert forward.seconds > 0 and forward.calls >= 1


def test_cli_profile_prints_the_table(case, tmp_path, capsys):
    out = tmp_path / "cli.nii.gz"
    code = main(["segment", str(case), "-o", str(out), "--device", "cpu", "--progress", "none", "--profile"])
    assert code == 0 and out.exists()
    err = capsys.readouterr().err
    for name in ("read", "network forward", "resampling back + argmax", "write", "total"):
        assert any(line.startswith(name) for line in err.splitlines()), name
