"""The module's self-test, without Qt: what ``MPUNetSegmentationTest`` runs in Slicer, and pytest headless.

Slicer's extension build machines have neither PyTorch nor a network, so the steps that need no torch always
run, each checked against numbers computed here with numpy:

* phantom: a synthetic CT and its label written with SimpleITK and loaded with ``slicer.util``;
* compare: a prediction made from the label by a known shift, compared with the label (Dice per class);
* table: the comparison table exported as CSV and read back;
* review: the side-by-side review set up and ended (layout restored), and the error map's voxel counts.

Inference (the default model in a background process) runs only when torch can be imported; otherwise the
step is skipped and the reason is logged. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

SKIPPED = "skipped"
PASSED = "passed"
SELF_TEST_SEED = 2026  # the demo's phantom (a case the demo model never saw), at 48 x 128 x 128
LOGGER = logging.getLogger("MPUNetSegmentation")


def torch_importable() -> Tuple[bool, str]:
    """Tell whether ``import torch`` can work here, without importing it.

    Returns:
        ``(True, "")``, or ``(False, reason)`` with the reason and the fix.
    """
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError) as error:
        return False, f"PyTorch cannot be imported ({error}); install it from the module panel"
    if spec is None:
        return False, "PyTorch is not installed in this Python; install it from the module panel"
    return True, ""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


class SelfTest:
    """The self-test steps, run in order by :meth:`run`.

    Args:
        logic: an ``MPUNetLogic`` (the module's logic in Slicer).
        folder: a folder for the phantom and the CSV (created).
        display: shows a progress message (``ScriptedLoadableModuleTest.delayDisplay`` in Slicer).
        torch_check: tells whether inference can run (default :func:`torch_importable`).
    """

    def __init__(
        self,
        logic: Any,
        folder: Path,
        display: Callable[[str], None] = LOGGER.info,
        torch_check: Callable[[], Tuple[bool, str]] = torch_importable,
    ) -> None:
        self.logic = logic
        self.folder = Path(folder)
        self.display = display
        self.torch_check = torch_check
        self.volume: Any = None
        self.reference: Any = None
        self.labels: Optional[np.ndarray] = None
        self.prediction: Any = None
        self.table_node: Any = None

    def run(self) -> Dict[str, str]:
        """Run every step; a failed check raises ``AssertionError``.

        Returns:
            ``{step: "passed" | "skipped: <reason>"}`` for phantom, compare, table, review, inference.
        """
        results = {}
        for step in ("phantom", "compare", "table", "review", "inference"):
            results[step] = getattr(self, step)() or PASSED
        return results

    def phantom(self) -> None:
        """Write a synthetic CT phantom and its label, and load both into the scene."""
        import SimpleITK as sitk
        import slicer.util

        from MPUNetCore.phantoms import demo_phantom

        self.display("Writing a synthetic CT phantom")
        case = demo_phantom(SELF_TEST_SEED, shape=(48, 128, 128))  # the demo's protocol, coarser voxels
        image, label = case.image, case.label
        self.folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(self.folder / "phantom.nrrd"))
        sitk.WriteImage(label, str(self.folder / "phantom-label.nrrd"))
        self.volume = slicer.util.loadVolume(str(self.folder / "phantom.nrrd"))
        self.reference = slicer.util.loadLabelVolume(str(self.folder / "phantom-label.nrrd"))
        self.labels = np.array(slicer.util.arrayFromVolume(self.reference), dtype=np.uint8)
        expected = sitk.GetArrayFromImage(label)
        _check(
            self.labels.shape == expected.shape, f"label loaded as {self.labels.shape}, not {expected.shape}"
        )
        _check(np.array_equal(self.labels, expected), "the loaded label differs from the written one")
        _check(set(np.unique(self.labels).tolist()) == {0, 1, 2}, "the phantom has no liver or no tumour")

    def compare(self) -> None:
        """Compare a prediction (the label shifted by 2 voxels in x) with the label; check each Dice."""
        import slicer.util

        from .segmentation_nodes import create_segmentation_node

        self.display("Comparing a shifted label with the phantom's label")
        shifted = np.zeros_like(self.labels)
        shifted[:, :, 2:] = self.labels[:, :, :-2]
        self.prediction = create_segmentation_node(shifted, self.volume, name="phantom shifted")
        self.table_node = self.logic.compare(self.prediction, self.reference, self.volume)
        _check(
            self.table_node.GetNumberOfRows() == 2,
            f"{self.table_node.GetNumberOfRows()} table rows, expected 2",
        )
        dice = slicer.util.arrayFromTableColumn(self.table_node, "Dice")
        expected = [_dice(shifted >= 1, self.labels >= 1), _dice(shifted == 2, self.labels == 2)]
        _check(0.0 < min(expected) and max(expected) < 1.0, "the shift should make both Dice partial")
        for name, got, want in zip(("liver", "tumour"), dice, expected):
            _check(abs(float(got) - want) < 1e-9, f"{name} Dice {float(got):.6f}, expected {want:.6f}")

    def table(self) -> None:
        """Export the comparison table as CSV and check what was written."""
        self.display("Exporting the comparison table")
        path = self.logic.exportTableToCsv(self.table_node, self.folder / "comparison.csv")
        with open(path, newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
        _check(len(rows) == 3, f"CSV has {len(rows)} lines, expected a header and 2 rows")
        column = rows[0].index("Dice")
        for row, index in zip(rows[1:], range(2)):
            written = float(row[column])
            stored = self.table_node.GetTable().GetValueByName(index, "Dice").ToDouble()
            _check(written == stored, f"CSV Dice {written} differs from the table's {stored}")

    def review(self) -> None:
        """Set up the side-by-side review, check the views and the error map, and end it."""
        import slicer

        from .review import SIDE_BY_SIDE, error_map_segmentation, start_review
        from .review_views import layout_node

        self.display("Reviewing against the reference")
        before = slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView  # a layout the review does not use
        layout_node().SetViewArrangement(before)
        state = start_review(
            self.volume, self.prediction, self.reference, SIDE_BY_SIDE, table=self.table_node
        )
        _check(len(state.slice_nodes) == 2, "side-by-side review should use two slice views")
        _check(layout_node().GetViewArrangement() == state.layout_id, "the review layout is not shown")
        state.end()
        _check(layout_node().GetViewArrangement() == before, "ending the review did not restore the layout")
        errors = error_map_segmentation(self.prediction, self.reference, self.volume)
        shifted = np.zeros_like(self.labels)
        shifted[:, :, 2:] = self.labels[:, :, :-2]
        false_positives = int(((shifted >= 1) & (self.labels == 0)).sum())
        voxels = self._tag(errors, "liver_fp", "MPUNet.Voxels")
        _check(
            voxels == false_positives,
            f"error map: {voxels} liver false positives, expected {false_positives}",
        )

    @staticmethod
    def _tag(node: Any, segment_id: str, tag: str) -> int:
        import vtk

        value = vtk.reference("")
        node.GetSegmentation().GetSegment(segment_id).GetTag(tag, value)
        return int(str(value) or 0)

    def inference(self) -> Optional[str]:
        """Segment the phantom with the default model in the background, when torch can be imported.

        Returns:
            None when it ran, ``"skipped: <reason>"`` when torch is missing (the reason is also logged).
        """
        import slicer.util

        available, reason = self.torch_check()
        if not available:
            message = f"MPU-Net self-test: inference skipped: {reason}"
            LOGGER.warning(message)
            self.display(message)
            return f"{SKIPPED}: {reason}"
        self.display("Segmenting in the background (default model)")
        voxels = slicer.util.arrayFromVolume(self.volume).copy()
        fractions = []
        segmentation = self.logic.process(self.volume, progressCallback=lambda f, m: fractions.append(f))
        _check(segmentation.GetName() == "phantom MPU-Net", f"result named '{segmentation.GetName()}'")
        segments = segmentation.GetSegmentation()
        names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
        _check(names == ["Liver", "Liver tumor"], f"segments {names}")
        _check(bool(fractions) and fractions[-1] == 1.0, "progress did not reach 100 %")
        _check(
            bool((slicer.util.arrayFromVolume(self.volume) == voxels).all()), "the input volume was modified"
        )
        table = self.logic.compare(segmentation, self.reference, self.volume)
        dice = slicer.util.arrayFromTableColumn(table, "Dice")
        _check(float(dice[0]) > 0.5, f"liver Dice {float(dice[0]):.3f} is too low for the demo model")
        return None
