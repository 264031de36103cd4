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
