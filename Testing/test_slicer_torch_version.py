"""The probe checks the installed torch version against MPU-Net's requirement and offers an upgrade.

The requirement's comparison is checked on hand-written version strings (local builds, pre-releases,
two-digit minors); the upgrade offer on the real probe of this machine's interpreter, with the minimum
raised above the installed torch (installing from a test is not acceptable, so the flow stops at the
installer callback, which the widget fills with the background installer).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from MPUNetSegmentationLib import dependencies, requirements
from MPUNetSegmentationLib.dependencies import EnvironmentReport, ensure_dependencies, probe_environment
from MPUNetSegmentationLib.requirements import TORCH_REQUIREMENT, version_satisfies


@pytest.mark.parametrize(
    ("version", "requirement", "expected"),
    [
        ("2.1.0", ">=2.1", True),
        ("2.13.0+cpu", ">=2.1", True),  # minor 13 > 1 compared as numbers, local build tag ignored
        ("2.0.1+cu118", ">=2.1", False),
        ("1.13.1", ">=2.1", False),
        ("2.1", ">=2.1.0", True),
        ("2.1.0a0+git1234", ">=2.1", True),
        ("2.0.99", ">=2.1.0", False),
        ("installed", ">=2.1", True),  # no version attribute: the import worked, nothing to compare
    ],
)
def test_version_satisfies(version: str, requirement: str, expected: bool) -> None:
    assert version_satisfies(version, requirement) is expected


def test_unsupported_requirement_is_refused() -> None:
    with pytest.raises(ValueError, match="'==2.1'.*'>=X.Y'"):
        version_satisfies("2.1", "==2.1")


def test_torch_requirement_is_the_packages_own() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    # UTF-8 explicitly: the file has non-ASCII comments, and an earlier test may leave the C locale set
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert f"torch{TORCH_REQUIREMENT}" in project["dependencies"]


def test_outdated_torch_is_offered_for_upgrade(monkeypatch) -> None:
    import torch

    report = probe_environment(modules=["torch"])
    assert report.modules["torch"] == torch.__version__
    assert report.outdated == {} and report.ok  # this machine's torch meets the requirement

    monkeypatch.setitem(requirements.MINIMUM_VERSIONS, "torch", ">=99.0")
    assert report.outdated == {"torch": torch.__version__} and not report.ok and report.missing == []
    assert f"PyTorch {torch.__version__} is older than MPU-Net needs" in report.device_summary()

    asked, installed = [], []
    assert ensure_dependencies(
        report,
        confirm=lambda message: asked.append(message) or True,
        install=installed.append,
        pytorch_utils_available=True,
    )
    assert f"torch>=99.0 (upgrade from {torch.__version__}, with the PyTorch extension)" in asked[0]
    (steps,) = installed
    assert [(s.module, s.how, s.requirement, s.upgrade_from) for s in steps] == [
        ("torch", "pytorchutils", "torch>=99.0", torch.__version__)
    ]
    assert ensure_dependencies(report, confirm=lambda message: False) is False  # declined: nothing runs


def test_missing_and_outdated_are_distinct() -> None:
    report = EnvironmentReport(modules={"torch": "1.13.1+cu117", "numpy": None})
    assert report.missing == ["numpy"] and report.outdated == {"torch": "1.13.1+cu117"}
    steps = dependencies.install_plan(report.missing, False, report.outdated)
    assert [(s.requirement, s.how, s.upgrade_from) for s in steps] == [
        ("numpy", "pip", ""),
        ("torch>=2.1", "pip", "1.13.1+cu117"),
    ]
