"""`mpunet demo`: make a synthetic CT, segment it with the bundled model, and score it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from MPUNetCore.cli.segment import add_model_options, explicit_settings, load_model, settings_from_args

DEFAULT_OUTPUT = Path("mpunet-demo")
DEMO_SEED = 2026  # not among the seeds the demo model was trained on


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="segment a generated phantom CT with the bundled model and print its metrics",
        description=(
            "End-to-end check on an embedded default: writes a synthetic abdominal CT (an anatomical "
            "phantom: liver with vessels and tumours among its neighbours) and its label, "
            "segments it, and compares the result with the label. Works offline."
        ),
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"output folder (default: {DEFAULT_OUTPUT}, or a numbered sibling if it exists)",
    )
    parser.add_argument("--seed", type=int, default=DEMO_SEED, help="phantom seed")
    parser.add_argument("--overwrite", action="store_true", help="replace files in an existing --output")
    parser.add_argument("--progress", default="bar", choices=("bar", "json", "none"), help="progress display")
    add_model_options(parser)
    parser.set_defaults(run=run)


def fresh_folder(base: Path) -> Path:
    """`base`, or `base-2`, `base-3`, … whichever does not exist yet (so earlier results stay)."""
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from MPUNetCore.cli.progress import ProgressBar
    from MPUNetCore.evaluation import evaluate_pairs, format_table, write_metrics
    from MPUNetCore.fileutils import check_writable
    from MPUNetCore.phantoms import demo_phantom
    from MPUNetCore.pipeline import segment_file

    output = args.output or fresh_folder(DEFAULT_OUTPUT)
    ct_path, label_path = output / "phantom-ct.nii.gz", output / "phantom-label.nii.gz"
    prediction_path, metrics_path = output / "phantom-ct_mpunet.nii.gz", output / "metrics.csv"
    for path in (ct_path, label_path, prediction_path, metrics_path):
        check_writable(path, args.overwrite)
    output.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    case = demo_phantom(args.seed)
    image, label = case.image, case.label
    sitk.WriteImage(image, str(ct_path), useCompression=True)
    sitk.WriteImage(label, str(label_path), useCompression=True)
    spacing = tuple(round(s, 2) for s in image.GetSpacing())
    print(
        f"phantom CT  : {ct_path} {image.GetSize()} voxels, spacing {spacing} mm, "
        f"{case.phase.replace('_', ' ')} phase, {case.n_tumors} tumours drawn"
    )

    bundle = load_model(args)
    parameters = sum(p.numel() for p in bundle.model.parameters())
    print(
        f"model       : {bundle.card.name} {bundle.card.version} ({bundle.card.architecture['network']}, "
        f"{parameters:,} parameters) — {bundle.card.intended_use}"
    )
    started = time.perf_counter()
    segment_file(
        ct_path,
        prediction_path,
        bundle,
        overwrite=args.overwrite,
        settings=settings_from_args(args, bundle.card),
        keep=explicit_settings(args),
        progress=ProgressBar("segmenting", args.progress),
    )
    print(f"segmentation: {prediction_path} ({time.perf_counter() - started:.1f} s)")

    accumulator = evaluate_pairs([(prediction_path, label_path, "phantom")])
    print(format_table(accumulator))
    write_metrics(accumulator, metrics_path, overwrite=args.overwrite)
    print(f"metrics     : {metrics_path}   (total {time.perf_counter() - start:.1f} s)")
    return 0
