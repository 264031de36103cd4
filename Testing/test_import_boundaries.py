"""The layering rules (docs/architecture.md), checked two ways.

1. By importing, in a fresh interpreter, every module of a package and looking at ``sys.modules``: what a
   module pulls in at run time, through any chain of imports.
2. By a static scan of every ``import`` statement (also those inside functions, which run only later):
   what the code could pull in on some path the first check does not take.

MPUNetCore imports no Slicer, VTK, Qt, CTK, Training or Slicer-module code. The Slicer module's widget, its
Qt sections and its Qt-free Lib import no torch (the Slicer process never loads it; inference runs in a
background process), and only torch-free MPUNetCore modules. Training imports nothing of Slicer.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Set

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "MPUNetSegmentation"
SLICER_SIDE = {"slicer", "vtk", "vtkmodules", "qt", "ctk", "MPUNetSegmentation", "MPUNetSegmentationLib"}
SLICER_SIDE |= {"MPUNetSegmentationGui", "Training"}
#: MPUNetCore modules the Slicer process may import: they must stay torch-free (checked below).
TORCH_FREE_CORE = {
    "MPUNetCore",
    "MPUNetCore.cases",
    "MPUNetCore.dicom_checks",
    "MPUNetCore.evaluation",
    "MPUNetCore.inference.settings",
    "MPUNetCore.metrics",
    "MPUNetCore.model_card",
    "MPUNetCore.networks.registry",
    "MPUNetCore.phantom",
    "MPUNetCore.ranks",
    "MPUNetCore.registry",
    "MPUNetCore.volume_checks",
}

_PROBE = r"""
import importlib, json, pkgutil, sys
sys.path[:0] = json.loads(sys.argv[1])
package = importlib.import_module(sys.argv[2])
found = pkgutil.walk_packages(package.__path__, sys.argv[2] + ".")
names = [sys.argv[2]] + [m.name for m in found if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def _load_everything(package: str) -> Dict[str, List[str]]:
    paths = [str(MODULE_DIR), str(ROOT)]
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(paths), package],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _tops(names: Iterable[str]) -> Set[str]:
    return {name.split(".")[0] for name in names}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> Set[str]:
    """Modules imported anywhere in ``path``, inside functions too (relative imports stay in their package).

    ``from package import name`` counts as ``package.name`` when that is one of this repository's modules.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            found.update({m for m in subs if _is_module(m)} or {node.module})
    return found


def _scan(folder: Path) -> Dict[str, Set[str]]:
    return {str(p.relative_to(ROOT)): _imports(p) for p in sorted(folder.rglob("*.py"))}


def test_importing_all_of_mpunetcore_loads_nothing_of_slicer_or_training() -> None:
    result = _load_everything("MPUNetCore")
    assert len(result["imported"]) > 40  # every module of the package was imported
    assert not _tops(result["loaded"]) & SLICER_SIDE, sorted(_tops(result["loaded"]) & SLICER_SIDE)


def test_importing_all_of_the_slicer_lib_loads_no_torch() -> None:
    result = _load_everything("MPUNetSegmentationLib")
    assert "MPUNetSegmentationLib.logic" in result["imported"]
    assert "torch" not in _tops(result["loaded"])
    for name in TORCH_FREE_CORE:  # what the Lib imports later, inside functions: each alone, too
        assert "torch" not in _tops(_load_module_alone(name)), name


def _load_module_alone(name: str) -> List[str]:
    code = f"import sys, json; import {name}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_static_scan_mpunetcore_and_training() -> None:
    for path, modules in _scan(ROOT / "MPUNetCore").items():
        assert not _tops(modules) & SLICER_SIDE, (path, sorted(_tops(modules) & SLICER_SIDE))
    allowed = SLICER_SIDE - {"Training"}
    for path, modules in _scan(ROOT / "Training").items():
        assert not _tops(modules) & allowed, (path, sorted(_tops(modules) & allowed))


def test_static_scan_the_slicer_module_imports_no_torch_and_only_torch_free_core() -> None:
    scanned = _scan(MODULE_DIR)
    assert "MPUNetSegmentation/MPUNetSegmentation.py" in scanned  # the widget
    assert any(path.startswith("MPUNetSegmentation/MPUNetSegmentationGui/") for path in scanned)
    for path, modules in scanned.items():
        assert "torch" not in _tops(modules), path
        core = {m for m in modules if m.startswith("MPUNetCore.")}
        # `from MPUNetCore.registry import DEFAULT_MODEL` lists the module and module.name: keep modules
        core = {
            m for m in core if m in TORCH_FREE_CORE or not any(m.startswith(f"{t}.") for t in TORCH_FREE_CORE)
        }
        assert core <= TORCH_FREE_CORE, (path, sorted(core - TORCH_FREE_CORE))


def test_the_scan_finds_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\n\ndef f():\n    from torch import nn\n    import vtk.util\n"
        "    from MPUNetCore import pipeline\n",
        encoding="utf-8",
    )
    assert _imports(sample) == {"os", "torch", "vtk.util", "MPUNetCore.pipeline"}
