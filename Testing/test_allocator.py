"""The allocator set-up: children get the glibc tunables, glibc takes them, re-execution happens once."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from MPUNetCore import allocator
from MPUNetCore.allocator import GLIBC_TUNABLES, MARKER, OPT_OUT, allocator_environment

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(not allocator._is_glibc(), reason="the tuning is for Linux with glibc only")


def _clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", MARKER, OPT_OUT)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


@glibc_only
def test_environment_adds_the_tunables_and_respects_the_user():
    assert allocator_environment({})["GLIBC_TUNABLES"] == GLIBC_TUNABLES
    assert allocator_environment({OPT_OUT: "1"}) == {OPT_OUT: "1"}
    other = allocator_environment({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1024"})
    assert other["GLIBC_TUNABLES"] == f"glibc.rtld.optional_static_tls=1024:{GLIBC_TUNABLES}"
    mine = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert allocator_environment(mine)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"


def test_nothing_changes_where_glibc_is_absent(monkeypatch):
    monkeypatch.setattr(allocator, "_is_glibc", lambda: False)
    assert allocator_environment({"A": "1"}) == {"A": "1"}
    allocator.reexec_with_tuned_allocator()  # returns: nothing to do (it would replace pytest otherwise)


MMAPPED_BYTES = textwrap.dedent(
    """
    import ctypes
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    block = libc.malloc(64 << 20)
    print(libc.mallinfo2().hblkhd)  # bytes glibc holds in mmap'ed blocks
    """
)


@glibc_only
@pytest.mark.skipif(not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="mallinfo2 needs glibc >= 2.33")
def test_a_child_of_the_slicer_helper_gets_tunables_that_glibc_applies(monkeypatch):
    """A 64 MiB block is mmap'ed by default and comes from the heap in a child the module starts."""
    sys.path.insert(0, str(ROOT / "MPUNetSegmentation"))
    try:
        from MPUNetSegmentationLib.dependencies import background_environment
    finally:
        sys.path.remove(str(ROOT / "MPUNetSegmentation"))
    for key in ("GLIBC_TUNABLES", MARKER, OPT_OUT):
        monkeypatch.delenv(key, raising=False)
    tuned = background_environment()
    assert tuned["GLIBC_TUNABLES"] == GLIBC_TUNABLES

    def mmapped(env: dict) -> int:
        run = subprocess.run([sys.executable, "-c", MMAPPED_BYTES], env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    assert mmapped(_clean_env()) >= 64 << 20
    assert mmapped(tuned) < 64 << 20
    monkeypatch.setenv(OPT_OUT, "1")
    opted_out = background_environment()
    assert "GLIBC_TUNABLES" not in opted_out and mmapped(opted_out) >= 64 << 20


def _starts(tmp_path: Path, command: list, **env: str) -> list:
    """GLIBC_TUNABLES seen by each interpreter start of ``command`` (a sitecustomize logs every start)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    log = tmp_path / "starts.log"
    log.unlink(missing_ok=True)
    (site / "sitecustomize.py").write_text(
        "import os\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(os.environ.get('GLIBC_TUNABLES', '-') + '\\n')\n"
    )
    environment = _clean_env(**env)
    environment["PYTHONPATH"] = os.pathsep.join((str(site), environment["PYTHONPATH"]))
    run = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    return log.read_text().splitlines()


@glibc_only
def test_mpunet_reexecutes_itself_once_with_the_tunables(tmp_path):
    starts = _starts(tmp_path, [sys.executable, "-m", "MPUNetCore", "--version"])
    assert starts == ["-", GLIBC_TUNABLES]


@glibc_only
def test_training_command_reexecutes_once_too(tmp_path):
    assert _starts(tmp_path, [sys.executable, "-m", "Training", "--help"]) == ["-", GLIBC_TUNABLES]


@glibc_only
def test_opt_out_and_tuned_parents_stop_the_reexecution(tmp_path):
    assert _starts(tmp_path, [sys.executable, "-m", "MPUNetCore", "--version"], **{OPT_OUT: "1"}) == ["-"]
    tuned = allocator_environment({})
    starts = _starts(tmp_path, [sys.executable, "-m", "MPUNetCore", "--version"], **tuned)
    assert starts == [GLIBC_TUNABLES]  # a child started with the tuned environment runs as it is
