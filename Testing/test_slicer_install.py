"""Apply never waits on the GUI thread: the environment check and installing packages run in the background.

Real processes throughout, and pip really installs (offline: ``PIP_NO_INDEX`` with a wheel written here, into
a ``PIP_TARGET`` folder, never into this Python). Covered: an action held while a slow environment check
runs (the call returns at once, the action runs from ``poll``, the report is cached); a missing package
offered, installed by pip in a background process with its output in the log, checked again, then the
action runs; the user declining; pip failing (its error text reaches the user); Cancel of an installation
returning at once while pip's process group ignores the interrupt.
"""

from __future__ import annotations

import os
import stat
import sys
import time
import zipfile
from pathlib import Path

import pytest
from MPUNetSegmentationLib.dependencies import InstallStep
from MPUNetSegmentationLib.environment_gate import EnvironmentGate
from MPUNetSegmentationLib.install import InstallJob, install_commands
from MPUNetSegmentationLib.logic import MPUNetLogic

pytestmark = pytest.mark.skipif(os.name == "nt", reason="shell scripts stand in for slow interpreters")


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _poll_until(gate: EnvironmentGate, done, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        gate.poll()
        assert time.monotonic() < deadline, f"gave up waiting; error: {gate.error}"
        time.sleep(0.02)


@pytest.fixture
def offline_pip(monkeypatch, tmp_path):
    """pip in the background processes: no index, a local wheel folder, installs into a target folder."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "mpunet_tinypkg-0.1-py3-none-any.whl", "w") as wheel:
        info = "mpunet_tinypkg-0.1.dist-info"
        files = {
            "mpunet_tinypkg/__init__.py": "__version__ = '0.1'\n",
            f"{info}/METADATA": "Metadata-Version: 2.1\nName: mpunet-tinypkg\nVersion: 0.1\n",
            f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        }
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]))
    for name, value in {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_TARGET": str(target),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_CACHE_DIR": "1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    return target


def test_an_action_waits_for_a_slow_check_without_blocking(tmp_path) -> None:
    slow = _script(tmp_path / "slow-python", f'sleep 1.5\nexec "{sys.executable}" "$@"')
    gate = EnvironmentGate(
        MPUNetLogic(pythonExecutable=str(slow)), confirm=lambda text: False, modules=["json"]
    )
    ran = []
    started = time.monotonic()
    assert not gate.when_ready(lambda: ran.append(time.monotonic()))
    assert time.monotonic() - started < 0.3 and not ran and gate.busy  # Apply returned at once
    _poll_until(gate, lambda: ran)
    assert ran[0] - started >= 1.5 and gate.report.ok and not gate.busy
    started = time.monotonic()
    assert gate.when_ready(lambda: ran.append(time.monotonic()))  # cached: runs now, no second check
    assert len(ran) == 2 and gate.probe is None and time.monotonic() - started < 0.1


def test_a_missing_package_is_installed_in_the_background_then_the_action_runs(offline_pip) -> None:
    questions, log, ran = [], [], []
    gate = EnvironmentGate(
        MPUNetLogic(),
        confirm=lambda text: questions.append(text) or True,
        log_callback=log.append,
        modules=["json", "mpunet_tinypkg"],
        pytorch_utils_available=False,
    )
    gate.when_ready(lambda: ran.append(True))
    _poll_until(gate, lambda: ran or gate.error)
    assert ran and gate.error is None and gate.report.ok
    assert len(questions) == 1 and "mpunet_tinypkg (with pip)" in questions[0]
    assert any(line.endswith("-m pip install mpunet_tinypkg") for line in log)
    assert any("Successfully installed mpunet" in line and "0.1" in line for line in log)  # pip's own output
    assert (offline_pip / "mpunet_tinypkg" / "__init__.py").is_file()


def test_declining_or_a_failing_pip_never_runs_the_action(offline_pip) -> None:
    ran, log = [], []
    declined = EnvironmentGate(MPUNetLogic(), confirm=lambda text: False, modules=["mpunet_nothing_here"])
    declined.when_ready(lambda: ran.append(True))
    _poll_until(declined, lambda: not declined.busy)
    assert not ran and declined.pending is None and declined.install is None and declined.error is None
    failing = EnvironmentGate(
        MPUNetLogic(), confirm=lambda text: True, log_callback=log.append, modules=["mpunet_nothing_here"]
    )
    failing.when_ready(lambda: ran.append(True))
    _poll_until(failing, lambda: failing.error)
    assert not ran and failing.pending is None
    assert "installing mpunet_nothing_here failed (exit code 1)" in failing.error
    assert "No matching distribution found for mpunet_nothing_here" in failing.error  # pip's words


def test_install_commands_follow_the_route_of_each_step() -> None:
    steps = [InstallStep("torch", "pytorchutils", "torch>=2.0"), InstallStep("numpy", "pip", "numpy")]
    assert install_commands(steps, "PythonSlicer") == [
        ["PythonSlicer", "-m", "pip", "install", "light-the-torch>=0.5"],
        ["PythonSlicer", "-m", "light_the_torch", "install", "torch>=2.0"],
        ["PythonSlicer", "-m", "pip", "install", "numpy"],
    ]


def test_cancel_of_an_installation_returns_at_once(tmp_path) -> None:
    stubborn = _script(tmp_path / "stubborn-python", "trap '' INT TERM\necho downloading\nexec sleep 60")
    log = []
    job = InstallJob([InstallStep("torch", "pip", "torch>=2.0")], str(stubborn), log.append).start()
    deadline = time.monotonic() + 30
    while "downloading" not in log:
        assert not job.poll() and time.monotonic() < deadline
        time.sleep(0.01)
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 0.2 and job.state == job.CANCELLED and job.poll()
    assert job.command.returncode is None  # pip ignores the interrupt for now; a thread will kill it
    assert job.command.wait_stopped(15) and job.command.returncode is not None
