"""Pytest fixtures for tests that run the Slicer side against Slicer's real MRML (``slicer-core`` wheel).

Use them from a test module with ``pytest_plugins = ["slicer_fixtures"]`` (``Testing/`` is on sys.path
when pytest collects it), or register the module once in ``Testing/conftest.py``.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import slicer_module_path  # noqa: F401  (puts MPUNetSegmentation/ on sys.path)


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
