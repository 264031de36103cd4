"""Rewrite the generated file lists in ``MPUNetSegmentation/CMakeLists.txt`` from the files on disk.

Slicer packages only the Python files and resources a module's CMakeLists.txt names, so every ``.py``
of the module and of ``MPUNetCore`` must be listed. Run from anywhere after adding or removing files::

    python Utilities/update_cmake_file_lists.py          # rewrite the lists
    python Utilities/update_cmake_file_lists.py --check  # exit 1 if they are out of date

``Testing/test_packaging.py`` checks the lists independently.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
MODULE = "MPUNetSegmentation"
CMAKE_FILE = ROOT / MODULE / "CMakeLists.txt"
MPUNETCORE_RESOURCE_SUFFIXES = (".json", ".pt")  # registry, model cards and the bundled demo weights


def _files(folder: Path, suffixes: tuple, exclude_dirs: tuple = ()) -> List[Path]:
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if not path.is_file() or "__pycache__" in relative.parts or relative.parts[0] in exclude_dirs:
            continue
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not suffixes or path.name.endswith(suffixes):
            found.append(path)
    return sorted(found)


def file_lists(root: Path = ROOT) -> Dict[str, List[str]]:
    """Return the entries of each generated list, as CMake expects them.

    Args:
        root: repository root.

    Returns:
        ``{list name: entries}``; module paths are relative to the module folder, MPUNetCore paths to the
        repository root (they keep the ``MPUNetCore/`` prefix).
    """
    module_dir = root / MODULE
    scripts = [p.relative_to(module_dir).as_posix() for p in _files(module_dir, (".py",), ("Testing",))]
    main = f"{MODULE}.py"
    scripts = ([main] if main in scripts else []) + [s for s in scripts if s != main]
    resources_dir = module_dir / "Resources"
    resources = (
        [p.relative_to(module_dir).as_posix() for p in _files(resources_dir, ())]
        if resources_dir.is_dir()
        else []
    )
    core_dir = root / "MPUNetCore"
    core_scripts = [p.relative_to(root).as_posix() for p in _files(core_dir, (".py",))]
    core_resources = [p.relative_to(root).as_posix() for p in _files(core_dir, MPUNETCORE_RESOURCE_SUFFIXES)]
    return {
        "MODULE_PYTHON_SCRIPTS": scripts,
        "MODULE_PYTHON_RESOURCES": resources,
        "MPUNETCORE_PYTHON_SCRIPTS": core_scripts,
        "MPUNETCORE_PYTHON_RESOURCES": core_resources,
    }


def render(text: str, lists: Dict[str, List[str]]) -> str:
    """Return ``text`` with every ``# BEGIN GENERATED: NAME`` ... ``# END GENERATED: NAME`` block refilled."""
    for name, entries in lists.items():
        pattern = re.compile(
            rf"^(?P<indent>[ \t]*)# BEGIN GENERATED: {name}\n.*?^[ \t]*# END GENERATED: {name}\n",
            re.MULTILINE | re.DOTALL,
        )
        match = pattern.search(text)
        if match is None:
            raise ValueError(
                f"{CMAKE_FILE} has no '# BEGIN GENERATED: {name}' ... '# END GENERATED: {name}' block"
            )
        indent = match.group("indent")
        body = "".join(f"{indent}{entry}\n" for entry in entries)
        block = f"{indent}# BEGIN GENERATED: {name}\n{body}{indent}# END GENERATED: {name}\n"
        text = text[: match.start()] + block + text[match.end() :]
    return text


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 when the lists are stale")
    args = parser.parse_args(argv)
    current = CMAKE_FILE.read_text(encoding="utf-8")
    updated = render(current, file_lists())
    if args.check:
        if updated != current:
            print(f"{CMAKE_FILE} file lists are out of date: run python {Path(__file__).as_posix()}")
            return 1
        return 0
    if updated != current:
        CMAKE_FILE.write_text(updated, encoding="utf-8")
        print(f"updated {CMAKE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
