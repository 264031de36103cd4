"""The ExtensionsIndex entry agrees with the extension's CMakeLists (name, category, dependencies)."""

from __future__ import annotations

import json
import re

from Testing.conftest import REPO_ROOT


def test_extensions_index_entry_matches_the_cmake_project() -> None:
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    name = re.search(r"^project\((\w+)\)", cmake, re.MULTILINE).group(1)
    entry = json.loads(
        (REPO_ROOT / "Utilities" / "ExtensionsIndex" / f"{name}.json").read_text(encoding="utf-8")
    )
    category = re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', cmake).group(1)
    depends = re.search(r'set\(EXTENSION_DEPENDS "([^"]*)"\)', cmake).group(1).split()
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', cmake).group(1)
    assert entry["category"] == category
    assert sorted(entry["build_dependencies"]) == sorted(depends)
    assert entry["scm_url"].removesuffix(".git") == homepage
    assert entry["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/")


def test_license_is_the_apache_2_text() -> None:
    text = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.split()) > 1500  # the full text, not a stub


def test_description_says_the_shipped_model_is_a_phantom_demonstration() -> None:
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    description = re.search(r'set\(EXTENSION_DESCRIPTION "([^"]+)"\)', cmake).group(1)
    for words in ("demonstration", "synthetic phantoms", "Train a real model", "Model file"):
        assert words in description, words
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert "demonstration\n> trained on synthetic phantoms" in readme
    assert "python -m Training export" in readme
