"""Pytest fixtures for tests that run the Slicer side against Slicer's real MRML (``slicer-core`` wheel).

``Testing/conftest.py`` registers them for every test (and puts ``MPUNetSegmentation/`` on sys.path,
as Slicer does for a module folder).
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def slicer_env() -> Any:
    """The headless Slicer (scene, module logics, ``slicer.app`` stand-in), built once per session."""
    slicer = pytest.importorskip("slicer", reason="slicer-core wheel not installed")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the installed 'slicer' package has no MRML (install slicer-core==5.13.31053.0)")
    from MPUNetSegmentationLib.headless import ensure_slicer

    return ensure_slicer()


@pytest.fixture
def slicer_scene(slicer_env: Any) -> Iterator[Any]:
    """``slicer.mrmlScene``, cleared after the test so that tests do not see each other's nodes."""
    import slicer

    yield slicer.mrmlScene
    from MPUNetSegmentationLib.headless import clear_scene

    clear_scene()
