"""The background-interpreter probe and the confirmed-install flow, against this machine's real Python.

The probe runs a real interpreter and is checked against what this process imports itself. Installing is
only exercised up to the decision (declined: nothing happens; accepted outside Slicer: refused with the pip
command), since installing packages from a test is not acceptable; the confirmation callback is the
injection point the widget fills with ``slicer.util.confirmOkCancelDisplay``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from MPUNetSegmentationLib.dependencies import (
    REQUIRED_MODULES,
    EnvironmentReport,
    ensure_dependencies,
    install_plan,
    mpunetcore_root,
    parse_probe_output,
    probe_environment,
    python_executable,
)

MISSING = "mpunet_test_module_that_does_not_exist"


def test_locations_outside_slicer() -> None:
    import MPUNetCore

    assert python_executable() == sys.executable
    assert mpunetcore_root() == Path(MPUNetCore.__file__).resolve().parents[1]


def test_probe_reports_what_this_python_has() -> None:
    import numpy
    import SimpleITK
    import torch
    from MPUNetSegmentationLib.logic import MPUNetLogic

    logic = MPUNetLogic()
    command = logic.startEnvironmentCheck()  # asynchronous, as the widget runs it (it polls done())
    assert command.wait(timeout=300) == 0 and command.done()
    report = logic.environmentReport(command)
    assert report.ok and report.missing == [] and set(report.modules) == set(REQUIRED_MODULES)
    assert report.modules["torch"] == torch.__version__
    assert report.modules["numpy"] == numpy.__version__
    assert report.modules["SimpleITK"] == SimpleITK.__version__
    assert Path(report.executable).resolve() == Path(sys.executable).resolve()
    assert report.python == sys.version.split()[0]
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(report.cuda_devices) == gpus and report.cuda_version == torch.version.cuda
    assert ("GPU:" in report.device_summary()) == bool(gpus or report.mps)
    asked = []
    assert ensure_dependencies(report, confirm=lambda message: asked.append(message) or True)
    assert asked == []  # nothing missing: the user is not asked


def test_missing_module_is_reported_and_nothing_installed_without_consent() -> None:
    report = probe_environment(modules=["json", MISSING])
    assert report.modules["json"] is not None and report.missing == [MISSING]
    assert report.errors[MISSING].startswith("ModuleNotFoundError")
    assert not report.ok
    asked = []
    assert ensure_dependencies(report, confirm=lambda message: asked.append(message) or False) is False
    assert len(asked) == 1 and f"{MISSING} (with pip)" in asked[0] and "ModuleNotFoundError" in asked[0]
    # accepted outside the Slicer application: the default installer refuses and names the pip command
    with pytest.raises(RuntimeError, match=f"pip install {MISSING}"):
        ensure_dependencies(report, confirm=lambda message: True)


def test_install_plan() -> None:
    with_extension = install_plan(["torch", "SimpleITK"], pytorch_utils_available=True)
    assert [(s.module, s.how, s.requirement) for s in with_extension] == [
        ("torch", "pytorchutils", "torch>=2.1"),
        ("SimpleITK", "pip", "SimpleITK"),
    ]
    assert install_plan(["torch"], pytorch_utils_available=False)[0].how == "pip"
    # MPUNetCore fails to import because torch is missing: installing torch is the fix
    assert [s.module for s in install_plan(["torch", "MPUNetCore.pipeline"], False)] == ["torch"]
    with pytest.raises(RuntimeError, match="reinstall the extension"):
        install_plan(["MPUNetCore.pipeline"], pytorch_utils_available=True)


def test_probe_output_without_report_names_the_error() -> None:
    with pytest.raises(RuntimeError, match=r"exit code 1\):\nTraceback \.\.\.\nSyntaxError: bad"):
        parse_probe_output("", "Traceback ...\nSyntaxError: bad", 1)
    report = EnvironmentReport(modules={"torch": None})
    assert "not installed" in report.device_summary()
