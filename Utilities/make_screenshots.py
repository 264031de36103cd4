"""Regenerate the review screenshots in ``docs/screenshots/`` (offscreen, no display needed).

A seeded CT phantom is segmented by the module's logic (the model runs in a background process, exactly as
in Slicer), compared with the phantom's expert label, and reviewed with ``MPUNetSegmentationLib.review``; the
slice views are drawn by Slicer's own slice logic and segmentation displayable manager
(``MPUNetSegmentationLib.slice_rendering``) and laid out with the metrics table as the module shows them::

    python Utilities/make_screenshots.py                      # bundled demo model, docs/screenshots/
    python Utilities/make_screenshots.py --model path/to/card.json --output /tmp/shots

Needs the slicer-core wheel, VTK offscreen rendering (EGL/OSMesa) and matplotlib.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # before VTK makes a window

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "MPUNetSegmentation", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

SIDE_BY_SIDE_PNG = "review-side-by-side.png"
OVERLAY_PNG = "review-error-map.png"
MAX_BYTES = 300_000
BACKGROUND = "#1e1e1e"


def _table_rows(table) -> List[List[str]]:
    import slicer.util

    names = [table.GetTable().GetValue(row, 0).ToString() for row in range(table.GetNumberOfRows())]
    columns = [("Dice", "Dice", "{:.3f}"), ("HD95", "HD95 mm", "{:.1f}"), ("RVD", "RVD", "{:+.2f}")]
    columns += [("Predicted volume", "Pred. mL", "{:.1f}"), ("Reference volume", "Ref. mL", "{:.1f}")]
    rows = [["Segment"] + [title for _, title, _ in columns]]
    values = {name: slicer.util.arrayFromTableColumn(table, name) for name, _, _ in columns}
    for index, segment in enumerate(names):
        cells = []
        for name, _, form in columns:
            value = float(values[name][index])
            cells.append("n/a" if value != value else form.format(value))
        rows.append([segment] + cells)
    return rows


def _save(figure, path: Path) -> Path:
    """Save a figure as PNG, reduced to a 256-colour palette if it would exceed :data:`MAX_BYTES`."""
    from PIL import Image

    figure.savefig(path, dpi=100, facecolor=figure.get_facecolor())
    if path.stat().st_size > MAX_BYTES:
        Image.open(path).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            path, optimize=True
        )
    return path


def _largest_tumour_ras(reference, volume):
    """RAS centre of the expert's largest tumour (None without tumours): the slice the screenshots show."""
    import numpy as np
    import SimpleITK as sitk
    import slicer.util
    import vtk

    tumours = (slicer.util.arrayFromVolume(reference) == 2).astype(np.uint8)
    if not tumours.any():
        return None
    parts = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(tumours)))
    k, j, i = np.argwhere(sitk.GetArrayViewFromImage(parts) == 1).mean(axis=0)
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]


def _side_by_side(left, right, rows, path: Path, model_name: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(10.0, 5.7), facecolor=BACKGROUND)
    for position, image, title in (
        (0.0, left, f"Prediction: {model_name} (Red)"),
        (0.5, right, "Expert label (Yellow)"),
    ):
        axes = figure.add_axes([position + 0.005, 0.235, 0.49, 0.7])
        axes.imshow(image)
        axes.set_axis_off()
        axes.set_title(title, color="white", fontsize=11)
    axes = figure.add_axes([0.03, 0.01, 0.94, 0.17])
    axes.set_axis_off()
    cell = axes.table(cellText=rows[1:], colLabels=rows[0], loc="center", cellLoc="center")
    cell.auto_set_font_size(False)
    cell.set_fontsize(10)
    for (row, _), item in cell.get_celld().items():
        item.set_facecolor("#2d2d2d" if row else "#3c3c3c")
        item.set_edgecolor("#555555")
        item.get_text().set_color("white")
    note = "Linked views: same slice, same zoom. Metrics table of the comparison:"
    figure.text(0.5, 0.195, note, color="#bbbbbb", ha="center", fontsize=9)
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)


def _overlay(image, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from MPUNetSegmentationLib.review import ERROR_SEGMENTS

    figure = plt.figure(figsize=(7.6, 6.4), facecolor=BACKGROUND)
    axes = figure.add_axes([0.0, 0.0, 0.74, 0.93])
    axes.imshow(image)
    axes.set_axis_off()
    axes.set_title("Outlines of prediction and expert label, with the error map", color="white", fontsize=11)
    handles = [Patch(color=color, label=name) for _, name, color, _, _ in ERROR_SEGMENTS]
    legend = figure.legend(
        handles=handles, loc="center right", fontsize=8.5, frameon=False, labelcolor="white"
    )
    legend.set_title("Error map", prop={"size": 9})
    legend.get_title().set_color("white")
    try:
        return _save(figure, path)
    finally:
        plt.close(figure)


def make_screenshots(model: Optional[str], output: Path, seed: int = 2026, shape=None) -> List[Path]:
    """Segment, compare and review a phantom, and write the screenshots; returns their paths."""
    import SimpleITK as sitk
    import slicer.util
    from MPUNetSegmentationLib.headless import ensure_slicer
    from MPUNetSegmentationLib.logic import MPUNetLogic
    from MPUNetSegmentationLib.review import OVERLAY, SIDE_BY_SIDE, start_review
    from MPUNetSegmentationLib.review_views import LEFT_VIEW, RIGHT_VIEW, slice_logic
    from MPUNetSegmentationLib.slice_rendering import render_slice_view

    from MPUNetCore.model_card import read_card
    from MPUNetCore.phantoms import DEMO_SHAPE, demo_phantom
    from MPUNetCore.registry import resolve_model

    ensure_slicer()
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mpunet-screenshots-") as folder:
        case = demo_phantom(seed, tuple(shape or DEMO_SHAPE))
        image, label = case.image, case.label
        sitk.WriteImage(image, os.path.join(folder, "phantom.nrrd"))
        sitk.WriteImage(label, os.path.join(folder, "phantom-label.nrrd"))
        volume = slicer.util.loadVolume(os.path.join(folder, "phantom.nrrd"), {"name": "phantom"})
        reference = slicer.util.loadLabelVolume(
            os.path.join(folder, "phantom-label.nrrd"), {"name": "expert"}
        )
        display = volume.GetDisplayNode()
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(400, 40)  # abdomen
        logic = MPUNetLogic(temporaryDirectory=folder)
        prediction = logic.process(volume, model=model, device="cpu", logCallback=print)
        model_name = read_card(resolve_model(model)).name
        focus = _largest_tumour_ras(reference, volume)
        table = logic.compare(prediction, reference, volume)
        rows = _table_rows(table)
        state = start_review(volume, prediction, reference, SIDE_BY_SIDE, table=table, focus_ras=focus)
        left = render_slice_view(slice_logic(LEFT_VIEW), 480, 480)
        right = render_slice_view(slice_logic(RIGHT_VIEW), 480, 480)
        state.end()
        paths = [_side_by_side(left, right, rows, output / SIDE_BY_SIDE_PNG, model_name)]
        state = start_review(volume, prediction, reference, OVERLAY, table=table, focus_ras=focus)
        paths.append(_overlay(render_slice_view(slice_logic(LEFT_VIEW), 560, 560), output / OVERLAY_PNG))
        state.end()
    return paths


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="registry name or bundle path (default: the bundled model)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "screenshots", help="output folder")
    parser.add_argument("--seed", type=int, default=2026, help="phantom seed (default: the demo's)")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=None, help="phantom size z y x (default: the demo's 80 256 256)"
    )
    args = parser.parse_args(argv)
    for path in make_screenshots(args.model, args.output, args.seed, args.shape):
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
