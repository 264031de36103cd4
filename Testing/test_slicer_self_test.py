"""The module's self-test (``MPUNetSegmentationTest`` delegates to ``MPUNetSegmentationLib/self_test.py``).

Run headless against Slicer's real MRML (slicer-core wheel): with torch, every step including inference;
in a Python where ``import torch`` fails, which simulates a Slicer without PyTorch (as on the extension
build machines), the torch-free steps pass and inference is skipped with the reason logged; and a wrong
comparison makes it fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: a meta-path finder makes every import of torch fail, as in a Slicer
# whose Python has no PyTorch, then the self-test runs on the headless Slicer.
WITHOUT_TORCH = """
import importlib.abc, json, logging, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
sys.path[:0] = [sys.argv[2] + "/MPUNetSegmentation", sys.argv[2]]
try:
    import torch  # noqa: F401
    sys.exit("torch imported despite the block")
except ModuleNotFoundError:
    pass
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
from MPUNetSegmentationLib.headless import ensure_slicer
ensure_slicer()
from MPUNetSegmentationLib.logic import MPUNetLogic
from MPUNetSegmentationLib.self_test import SelfTest
results = SelfTest(MPUNetLogic(), sys.argv[1]).run()
print(json.dumps({"results": results, "torch_loaded": any(m.split(".")[0] == "torch" for m in sys.modules)}))
"""


def test_self_test_without_torch_skips_only_inference(slicer_env, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(tmp_path / "selftest"), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert {k: results[k] for k in ("phantom", "compare", "table", "review")} == dict.fromkeys(
        ("phantom", "compare", "table", "review"), "passed"
    )
    assert results["inference"].startswith("skipped: PyTorch cannot be imported")
    assert "LOG WARNING MPU-Net self-test: inference skipped: PyTorch cannot be imported" in done.stderr
    assert not report["torch_loaded"]
    assert (tmp_path / "selftest" / "comparison.csv").exists()


def test_self_test_with_torch_runs_inference(slicer_scene, tmp_path: Path) -> None:
    from MPUNetSegmentationLib.logic import MPUNetLogic
    from MPUNetSegmentationLib.self_test import SelfTest, torch_importable

    assert torch_importable() == (True, "")
    results = SelfTest(MPUNetLogic(), tmp_path).run()
    assert results == dict.fromkeys(("phantom", "compare", "table", "review", "inference"), "passed")
    names = {slicer_scene.GetNthNode(i).GetName() for i in range(slicer_scene.GetNumberOfNodes())}
    assert "phantom MPU-Net" in names  # the inference step's result


def test_self_test_fails_on_a_wrong_comparison(slicer_scene, tmp_path: Path) -> None:
    from MPUNetSegmentationLib.logic import MPUNetLogic
    from MPUNetSegmentationLib.self_test import SelfTest

    class SelfComparingLogic(MPUNetLogic):
        def compare(self, segmentation, reference, referenceVolume, tableNode=None):
            return super().compare(segmentation, segmentation, referenceVolume, tableNode)  # Dice 1

    test = SelfTest(SelfComparingLogic(), tmp_path, torch_check=lambda: (False, "not needed here"))
    test.phantom()
    with pytest.raises(AssertionError, match=r"liver Dice 1\.000000, expected 0\.9"):
        test.compare()
