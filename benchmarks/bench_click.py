"""Seconds per click of click-to-segment, as the Slicer module runs it (headless, slicer-core).

A CT phantom is loaded into Slicer's MRML; ``MPUNetLogic.segmentAtPoint`` starts the model worker (a
background process that keeps the model loaded) and clicks on tumour and liver voxels. Reported: the first
click (worker start, torch import and model loading included), then the median and maximum wall time of the
following clicks from the request to the segment in the scene, and the worker's own model time::

    python benchmarks/bench_click.py                                   # bundled demo model
    python benchmarks/bench_click.py --model path/card.json --shape 96 512 512 --clicks 6 --threads 2

``--threads`` limits the worker's torch threads (OMP_NUM_THREADS), e.g. 2 for "2 CPU cores".
``--demo-architecture`` times an untrained bundle with the demo model's architecture and card (the cost of a
click does not depend on the weights), for when the trained demo model is not at hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "MPUNetSegmentation", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


def demo_architecture_bundle(folder: Path) -> Path:
    """An untrained bundle like the demo model (Training/configs/phantom_demo.toml); returns its card path."""
    import torch

    from MPUNetCore.bundle import ModelCard, SegmentClass, build_network, save_bundle

    architecture = {
        "network": "MPUNet",
        "preset": "released",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "overrides": {"channels": [8, 16, 32, 64, 128]},
    }
    classes = [SegmentClass(0, "Background"), SegmentClass(1, "Liver"), SegmentClass(2, "Liver tumor")]
    card = ModelCard(
        name="demo-architecture-untrained",
        architecture=architecture,
        classes=classes,
        preprocessing={
            "hu_window": [-200, 200],
            "scale": 200.0,
            "target_spacing": [2.0, 2.0],
            "slice_spacing": 3.0,
        },
        inference={"window": [32, None, None], "overlap": 0.25},
        training={"config": {"train": {"patch": [32, 64, 64]}}},
    )
    torch.manual_seed(0)
    return save_bundle(build_network(architecture), card, folder / "demo-architecture.json", overwrite=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="registry name or bundle path (default: bundled model)")
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 512, 512), help="phantom size z y x")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--clicks", type=int, default=6, help="clicks after the first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the worker")
    parser.add_argument(
        "--demo-architecture", action="store_true", help="untrained bundle with the demo model's architecture"
    )
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    import numpy as np
    import SimpleITK as sitk
    import slicer.util
    import vtk
    from MPUNetSegmentationLib.headless import ensure_slicer
    from MPUNetSegmentationLib.logic import MPUNetLogic

    from MPUNetCore.phantom import make_phantom

    ensure_slicer()
    with tempfile.TemporaryDirectory(prefix="bench-click-") as folder:
        if args.demo_architecture:
            args.model = str(demo_architecture_bundle(Path(folder)))
        image, label = make_phantom(args.seed, shape=tuple(args.shape))
        sitk.WriteImage(image, os.path.join(folder, "ct.nrrd"))
        volume = slicer.util.loadVolume(os.path.join(folder, "ct.nrrd"))
        labels = sitk.GetArrayFromImage(label)  # identity direction: same order as Slicer's array
        rng = np.random.default_rng(0)
        points = [p for value in (2, 1) for p in rng.permutation(np.argwhere(labels == value))[: args.clicks]]
        points = points[: args.clicks + 1]
        matrix = vtk.vtkMatrix4x4()
        volume.GetIJKToRASMatrix(matrix)
        logic = MPUNetLogic(temporaryDirectory=folder)
        output, times, model_times = None, [], []
        try:
            for number, (k, j, i) in enumerate(points):
                ras = matrix.MultiplyPoint([float(i), float(j), float(k), 1.0])[:3]
                start = time.perf_counter()
                result = logic.segmentAtPoint(volume, ras, output, model=args.model, device="cpu")
                seconds = time.perf_counter() - start
                output = result.segmentation_node or output
                print(
                    f"click {number}: {seconds:.2f} s (model {result.model_seconds:.2f} s): {result.message}"
                )
                if number:
                    times.append(seconds)
                    model_times.append(result.model_seconds)
                else:
                    box = result.box.shape if result.box else None
                    print(
                        f"  box {box} voxels of {tuple(args.shape)}; first click includes starting the worker"
                    )
        finally:
            logic.stopClickSegmenter()
    if times:
        print(
            f"seconds per click (after the first; {len(times)} clicks, "
            f"{args.threads or os.cpu_count()} threads): "
            f"median {statistics.median(times):.2f}, max {max(times):.2f}; "
            f"model median {statistics.median(model_times):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
