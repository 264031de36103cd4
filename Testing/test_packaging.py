"""The Slicer extension's CMake files package every Python file and resource that exists (background §6)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MPUNetSegmentation"


def _cmake_list(text: str, name: str) -> List[str]:
    match = re.search(rf"set\(\s*{name}\b(.*?)\)", text, re.DOTALL)
    assert match, f"set({name} ...) not found"
    entries = []
    for line in match.group(1).splitlines():
        line = line.split("#", 1)[0].strip()
        entries.extend(line.split())
    return entries


def _on_disk(folder: Path, suffix: str = "", skip_top: tuple = ()) -> List[str]:
    found = []
    for path in folder.rglob(f"*{suffix}"):
        parts = path.relative_to(folder).parts
        if path.is_file() and "__pycache__" not in parts and parts[0] not in skip_top:
            if not any(part.startswith(".") for part in parts):
                found.append(path)
    return sorted(found)


@pytest.fixture(scope="module")
def module_cmake() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")


def test_module_scripts_are_all_listed(module_cmake: str) -> None:
    listed = _cmake_list(module_cmake, "MODULE_PYTHON_SCRIPTS")
    listed = [entry.replace("${MODULE_NAME}", "MPUNetSegmentation") for entry in listed]
    expected = [p.relative_to(MODULE_DIR).as_posix() for p in _on_disk(MODULE_DIR, ".py", ("Testing",))]
    assert sorted(listed) == sorted(expected)
    assert len(set(listed)) == len(listed)
    assert not any(entry.startswith("..") for entry in listed)  # would be copied outside the module


def test_module_resources_are_all_listed(module_cmake: str) -> None:
    listed = _cmake_list(module_cmake, "MODULE_PYTHON_RESOURCES")
    expected = [p.relative_to(MODULE_DIR).as_posix() for p in _on_disk(MODULE_DIR / "Resources")]
    assert sorted(listed) == sorted(expected)
    assert "Resources/Icons/MPUNetSegmentation.png" in listed


def test_mpunetcore_is_packaged_next_to_the_module(module_cmake: str) -> None:
    listed = _cmake_list(module_cmake, "MPUNETCORE_PYTHON_SCRIPTS")
    expected = [p.relative_to(ROOT).as_posix() for p in _on_disk(ROOT / "MPUNetCore", ".py")]
    assert sorted(listed) == sorted(expected) and "MPUNetCore/__init__.py" in listed
    resources = _cmake_list(module_cmake, "MPUNETCORE_PYTHON_RESOURCES")
    assert sorted(resources) == sorted(
        p.relative_to(ROOT).as_posix()
        for suffix in (".json", ".pt")  # registry, model cards, the bundled demo weights
        for p in _on_disk(ROOT / "MPUNetCore", suffix)
    )
    assert "MPUNetCore/models/demo-phantom.pt" in resources
    for entry in listed + resources:
        assert (ROOT / entry).is_file(), entry
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\)\n", module_cmake, re.DOTALL).group(1)
    assert "SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR}/.." in call
    assert "DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}" in call
    assert "INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in call


def test_module_build_macro(module_cmake: str) -> None:
    call = re.search(r"slicerMacroBuildScriptedModule\((.*?)\)", module_cmake, re.DOTALL).group(1)
    for token in ("NAME ${MODULE_NAME}", "SCRIPTS ${MODULE_PYTHON_SCRIPTS}", "WITH_GENERIC_TESTS"):
        assert token in call
    assert "set(MODULE_NAME MPUNetSegmentation)" in module_cmake


def test_top_level_extension_description() -> None:
    text = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    fields = dict(re.findall(r'set\((EXTENSION_[A-Z]+) "([^"]*)"\)', text))
    assert fields["EXTENSION_HOMEPAGE"] == "https://github.com/mpunet/SlicerMPUNet"
    assert fields["EXTENSION_CATEGORY"] == "Segmentation"
    assert fields["EXTENSION_CONTRIBUTORS"] == "MPUNet developers"
    assert fields["EXTENSION_DEPENDS"] == "PyTorch"
    assert len(fields["EXTENSION_DESCRIPTION"]) > 40
    assert fields["EXTENSION_ICONURL"].endswith("/MPUNetExtension.png")
    assert fields["EXTENSION_SCREENSHOTURLS"].startswith("https://")
    for line in (
        "find_package(Slicer REQUIRED)",
        "include(${Slicer_USE_FILE})",
        "add_subdirectory(MPUNetSegmentation)",
        "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
        "include(${Slicer_EXTENSION_CPACK})",
    ):
        assert line in text


@pytest.mark.parametrize(
    "path", ["MPUNetExtension.png", "MPUNetSegmentation/Resources/Icons/MPUNetSegmentation.png"]
)
def test_icons_are_128_pixel_pngs(path: str) -> None:
    image = pytest.importorskip("PIL.Image").open(ROOT / path)
    assert image.format == "PNG" and image.size == (128, 128)
    assert image.convert("RGBA").getchannel("A").getextrema() == (0, 255)  # rounded, transparent corners


def test_generator_agrees() -> None:
    script = ROOT / "Utilities" / "update_cmake_file_lists.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
