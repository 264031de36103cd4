"""`mpunet segment FOLDER` under torchrun: two gloo processes split the cases and equal one process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from MPUNetCore.bundle import build_network, save_bundle
from MPUNetCore.phantom import write_lits_folder
from MPUNetCore.ranks import Ranks, current_ranks
from MPUNetCore.volume_io import read_label_map
from Testing.test_bundle import ARCH, make_card

ROOT = Path(__file__).resolve().parents[1]


def test_shares_cover_every_case_once():
    cases = list(range(7))
    for world in (1, 2, 3, 8):
        shares = [Ranks(r, world).share(cases) for r in range(world)]
        assert sorted(c for s in shares for c in s) == cases
    assert current_ranks({}) == Ranks(0, 1, 0)
    assert current_ranks({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == Ranks(1, 2, 1)
    with pytest.raises(ValueError, match="RANK=2 and WORLD_SIZE=2"):
        current_ranks({"RANK": "2", "WORLD_SIZE": "2"})


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchrun")
    torch.manual_seed(0)
    card = make_card()
    card.inference = card.inference.replace(window=(16, 32, 32))
    model = save_bundle(build_network(ARCH), card, root / "model" / "tiny.json")
    folder = root / "cases"
    write_lits_folder(folder, cases=3, seed=11, shape=(20, 48, 48))
    for label in folder.glob("segmentation-*"):
        label.unlink()  # images only
    (folder / "volume-9.nii.gz").write_bytes(b"not an image")  # one case fails on whichever rank gets it
    return root, model, folder


def _segment(root: Path, model: Path, folder: Path, out: Path, launcher: list) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((str(ROOT), os.environ.get("PYTHONPATH", ""))))
    env["OMP_NUM_THREADS"] = "1"  # torchrun's default for several processes; the same for the plain run
    command = [*launcher, "-m", "MPUNetCore", "segment", str(folder), "-o", str(out), "--model", str(model)]
    return subprocess.run(
        [sys.executable, *command, "--device", "cpu", "--progress", "none"],
        cwd=root, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip


def test_two_gloo_processes_equal_one_process(cases):
    root, model, folder = cases
    one = _segment(root, model, folder, root / "one", [])
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    two = _segment(root, model, folder, root / "two", torchrun)
    for result in (one, two):
        assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]  # the bad case
        assert "1 of 4 case(s) failed" in result.stderr and "volume-9" in result.stderr
    assert two.stderr.count("1 of 4 case(s) failed") == 1  # one merged list, printed by rank 0
    names = sorted(p.name for p in (root / "one").iterdir())
    assert names == [f"volume-{i}.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (root / "two").iterdir()) == names
    for name in names:
        a = read_label_map(root / "one" / name).array
        b = read_label_map(root / "two" / name).array
        assert np.array_equal(a, b), name
