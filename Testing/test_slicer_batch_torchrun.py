"""The headless batch script under torchrun (plain Python, slicer-core): two gloo processes equal one.

Three phantom CTs and a broken file, with references for the metrics table. The same batch runs once as
one process and once as ``torchrun --nproc_per_node=2``; the label maps, the segmentations and
``metrics.csv`` must be identical, the broken file must be named once in one merged failure list, and
both runs must exit with 1. Nothing is mocked (a tiny real U-Net bundle keeps it fast).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from MPUNetSegmentationLib.batch_ranks import BatchRanks, merge

from MPUNetCore.ranks import Ranks, single_process_environment
from Testing.child_env import run_python
from Testing.slicer_models import write_phantom, write_tiny_bundle

SCRIPT = Path(__file__).resolve().parents[1] / "MPUNetSegmentation" / "Scripts" / "mpunet_batch.py"
TORCHRUN = ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")


def test_merge_puts_every_rank_s_cases_back_in_case_order():
    parts = [
        {"done": ["a", "c"], "kept": [], "failed": [["e", "bad"]]},
        {"done": ["d"], "kept": ["b"], "failed": [["metrics", "x"]]},
    ]
    merged = merge(parts, ["a", "b", "c", "d", "e"])
    assert merged == {"done": ["a", "c", "d"], "kept": ["b"], "failed": [["e", "bad"], ["metrics", "x"]]}
    assert BatchRanks(Ranks(0, 2), "python").log_name("mpunet_batch.log") == "mpunet_batch.log"
    assert BatchRanks(Ranks(1, 2), "python").log_name("mpunet_batch.log") == "mpunet_batch.rank-1.log"
    env = {"RANK": "1", "WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x", "MASTER_PORT": "1", "PATH": "/bin"}
    assert single_process_environment(env) == {"PATH": "/bin"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch_torchrun")
    inputs, labels = root / "in", root / "labels"
    inputs.mkdir()
    labels.mkdir()
    for seed in (3, 4, 5):
        ct, label = write_phantom(root / "phantoms", seed=seed, shape=(20, 48, 48))
        shutil.copy(ct, inputs / ct.name)
        shutil.copy(label, labels / label.name)
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b this is not a volume" * 50)
    model = write_tiny_bundle(root / "model")
    common = ("--input", inputs, "--labels", labels, "--model", model, "--device", "cpu")
    one = run_python(SCRIPT, *common, "--output", root / "one", cwd=root, timeout=900)
    two = run_python(*TORCHRUN, SCRIPT, *common, "--output", root / "two", cwd=root, timeout=900)
    return root, one, two


@pytest.mark.slow
def test_two_gloo_processes_write_what_one_process_writes(runs):
    root, one, two = runs
    for result in (one, two):
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]  # the broken file
    assert one.stderr.count("mpunet_batch: 1 failed: broken") == 1
    assert two.stderr.count("mpunet_batch: 1 failed: broken") == 1  # one merged list, from rank 0
    for folder, pattern in (("labelmaps", "*.nii.gz"), ("segmentations", "*.seg.nrrd")):
        names = sorted(p.name for p in (root / "one" / folder).glob(pattern))
        assert names == sorted(f"phantom-{seed}{pattern[1:]}" for seed in (3, 4, 5))
        assert sorted(p.name for p in (root / "two" / folder).glob(pattern)) == names
        for name in names:
            a, b = (sitk.ReadImage(str(root / run / folder / name)) for run in ("one", "two"))
            np.testing.assert_array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
            keys = sorted(k for k in a.GetMetaDataKeys() if k.startswith("Segment"))
            assert keys == sorted(k for k in b.GetMetaDataKeys() if k.startswith("Segment"))
            assert [a.GetMetaData(k) for k in keys] == [b.GetMetaData(k) for k in keys]
    one_csv = (root / "one" / "metrics.csv").read_text()
    assert one_csv == (root / "two" / "metrics.csv").read_text()
    assert all(f"phantom-{seed}," in one_csv for seed in (3, 4, 5))


@pytest.mark.slow
def test_each_rank_logs_its_share_and_rank_0_the_merged_report(runs):
    root, _, _ = runs
    main, other = (root / "two" / "mpunet_batch.log").read_text(), (root / "two" / "mpunet_batch.rank-1.log")
    assert "rank 0 of 2 takes 2 case(s)" in main and "rank 1 of 2 takes 2 case(s)" in other.read_text()
    assert "merged the reports of 2 processes" in main
    assert "3 done, 0 kept, 1 failed" in main and "FAILED broken" in main
    done = [f"phantom-{seed}: done" for seed in (3, 4, 5)]
    assert sum(line in main for line in done) + sum(line in other.read_text() for line in done) == 3
