"""Bad-input catalogue, training (issue 10, items 9 and 10).

The real ``mpunet-train`` command line runs in process on a careless user's arguments; each test checks
the exit code, one error line naming the problem and the fix, that the user's data folder is
byte-identical and that nothing was written where the user did not ask. Checkpoints are real
``torch.save`` files.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from Testing.child_env import child_env
from Training.checkpoints import load_checkpoint, previous_path, save_checkpoint
from Training.cli import main
from Training.config import load_config, save_config


def snapshot(folder: Path) -> Dict[str, str]:
    """Every file and folder under ``folder`` (files with the SHA-256 of their bytes)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def train(capsys, *args: str):
    code = main(["train", "--progress", "none", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return code, lines


@pytest.fixture
def user_data(tmp_path) -> Path:
    """A user's LiTS-style folder holding files named like the phantoms."""
    folder = tmp_path / "my-data"
    folder.mkdir()
    for k in range(3):
        (folder / f"volume-{k}.nii.gz").write_bytes(f"user volume {k}".encode())
        (folder / f"segmentation-{k}.nii.gz").write_bytes(f"user segmentation {k}".encode())
    return folder


def test_phantoms_are_never_generated_into_a_users_data_folder(capsys, tmp_path, user_data):
    before = snapshot(tmp_path)
    run = tmp_path / "run"
    code, lines = train(
        capsys, "--config", "phantom_demo", "--set", f"data.root={user_data}", "--run-dir", str(run)
    )
    assert code == 2 and len(lines) == 1
    assert "never into your data folder" in lines[0] and "data.phantom_cases=0" in lines[0]
    assert snapshot(tmp_path) == before  # user files intact, no run folder


def test_a_missing_data_root_is_refused_not_created(capsys, tmp_path):
    missing = tmp_path / "no-such-folder"
    code, lines = train(
        capsys, "--config", "lits_unet", "--set", f"data.root={missing}", "--run-dir", str(tmp_path / "run")
    )
    assert code == 2 and len(lines) == 1 and f"data.root {missing} does not exist" in lines[0]
    assert not missing.exists() and not (tmp_path / "run").exists()


def test_phantom_runs_generate_phantoms_inside_the_run_folder_only(tmp_path):
    from Training.prepare import data_root, make_phantoms
    from Training.runfolder import RunFolder

    config = load_config("phantom_demo", ["data.phantom_cases=2", "data.phantom_shape=16,32,32"])
    run = RunFolder(tmp_path / "run")
    root = data_root(config, run)
    make_phantoms(config, root)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert root == run.root / "phantoms"
    assert written == [
        f"run/phantoms/{kind}-{k}.nii.gz" for kind in ("segmentation", "volume") for k in (0, 1)
    ]


def test_resume_with_nothing_to_resume_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    code, lines = train(capsys, "--config", "phantom_demo", "--resume", "--run-dir", str(run))
    assert code == 2 and len(lines) == 1
    assert f"nothing to resume in {run}" in lines[0] and "without --resume" in lines[0]
    assert not run.exists()


def test_a_truncated_checkpoint_is_one_line_naming_it_and_the_kept_previous_one(capsys, tmp_path):
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.pt"
    last.parent.mkdir(parents=True)
    save_config(load_config("phantom_demo"), run / "config.toml")
    save_checkpoint(last, {"epoch": 1, "weights": torch.arange(1000.0)})
    save_checkpoint(last, {"epoch": 2, "weights": torch.arange(1000.0) * 2})
    last.write_bytes(last.read_bytes()[:-100])  # as a crash outside our writer might leave it
    prev_bytes = previous_path(last).read_bytes()
    code, lines = train(capsys, "--resume", "--run-dir", str(run))
    assert code == 2 and len(lines) == 1
    assert f"checkpoint {last} is truncated or damaged" in lines[0]
    assert f"mv '{previous_path(last)}' '{last}'" in lines[0] and "--resume" in lines[0]
    assert previous_path(last).read_bytes() == prev_bytes
    assert load_checkpoint(previous_path(last))["epoch"] == 1


def test_a_failed_save_leaves_the_current_and_previous_checkpoints(tmp_path):
    last = tmp_path / "last.pt"
    save_checkpoint(last, {"epoch": 1})
    save_checkpoint(last, {"epoch": 2})
    before = snapshot(tmp_path)

    class Unsaveable:  # torch.save fails part-way, as a full disk would
        def __reduce__(self):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        save_checkpoint(last, {"epoch": 3, "blob": Unsaveable()})
    assert snapshot(tmp_path) == before  # no temporary file, both checkpoints unchanged
    assert load_checkpoint(last)["epoch"] == 2 and load_checkpoint(previous_path(last))["epoch"] == 1


# ------------------------------------------------------------------ the same refusals under torchrun


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _two_ranks(tmp_path: Path, *args: str, timeout: float = 120) -> List[subprocess.CompletedProcess]:
    """Run `mpunet-train train ARGS` as the 2 gloo processes `torchrun --nproc_per_node=2` starts (the
    same RANK/WORLD_SIZE/MASTER_* environment, without the launcher's own output). A rank still
    waiting after `timeout` seconds fails the test instead of hanging it."""
    port = str(_free_port())
    env = child_env(WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    command = [sys.executable, "-m", "Training", "train", "--progress", "none", *args]
    ranks = [
        subprocess.Popen(
            command,
            cwd=tmp_path,
            env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for r in range(2)
    ]
    deadline = time.monotonic() + timeout
    results = []
    for rank in ranks:
        try:
            out, err = rank.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other in ranks:
                other.kill()
            pytest.fail(f"a rank was still waiting after {timeout} s: a refusal did not reach every rank")
        results.append(subprocess.CompletedProcess(rank.args, rank.returncode, out, err))
    return results


CASES = ["missing data.root", "data.root and phantoms", "nothing to resume", "run exists"]


@pytest.mark.parametrize("case", CASES)
def test_refusals_under_torchrun_end_every_rank_with_one_line(tmp_path, user_data, case):
    run = tmp_path / "run"
    args = ["--config", "phantom_demo", "--run-dir", str(run), "--set", "train.device=cpu"]
    expected = {
        "missing data.root": "does not exist or is not a folder",
        "data.root and phantoms": "never into your data folder",
        "nothing to resume": "nothing to resume",
        "run exists": "already holds a run",
    }[case]
    if case == "missing data.root":
        args += ["--set", f"data.root={tmp_path / 'no-such-folder'}", "--set", "data.phantom_cases=0"]
    elif case == "data.root and phantoms":
        args += ["--set", f"data.root={user_data}"]
    elif case == "nothing to resume":
        args += ["--resume"]
    else:
        (run / "checkpoints").mkdir(parents=True)
        (run / "checkpoints" / "last.pt").write_bytes(b"an earlier run's checkpoint")
    before = snapshot(tmp_path)
    results = _two_ranks(tmp_path, *args)
    assert [r.returncode for r in results] == [2, 2], [r.stderr[-2000:] for r in results]
    lines = [line for r in results for line in (r.stdout + r.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mpunet-train train: error:"), lines
    assert expected in lines[0]
    assert snapshot(tmp_path) == before  # nothing written, the earlier run and the user's data intact
