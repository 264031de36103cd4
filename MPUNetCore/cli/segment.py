"""`mpunet segment`: CT file, DICOM series folder or folder of cases → label map(s)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import List, Tuple

from MPUNetCore.cli.progress import ProgressBar
from MPUNetCore.inference.settings import InferenceSettings
from MPUNetCore.model_card import ModelCard
from MPUNetCore.output_guard import LABEL_MAP_FORMATS
from MPUNetCore.profiling import Profiler


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "segment",
        help="segment the liver and liver tumours in CT",
        description=(
            "Segment a CT (NIfTI, NRRD, MHA file or DICOM series folder) or every case of a folder. "
            "Outputs keep the input's exact geometry and are written atomically."
        ),
    )
    parser.add_argument("input", type=Path, help="a CT file, a DICOM series folder, or a folder of cases")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help=(
            "output label map (file input) or output folder (folder of cases). Label maps are written as "
            f"{', '.join(LABEL_MAP_FORMATS)}: one file holding the 3-D labels with the CT's spacing, origin "
            "and direction (.mhd/.nhdr use two files and cannot be written atomically; .png, .tif and the "
            "like lose the geometry). An output that is one of the inputs is refused, even with --overwrite"
        ),
    )
    add_model_options(parser)
    parser.add_argument("--series", metavar="UID", help="which DICOM series of a folder holding several")
    parser.add_argument(
        "--format",
        default=".nii.gz",
        choices=LABEL_MAP_FORMATS,
        help="file format of outputs written into a folder (default .nii.gz)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    add_input_options(parser)
    parser.add_argument(
        "--progress",
        default="bar",
        choices=("bar", "json", "none"),
        help="progress display: a bar, JSON lines (for a parent process) or none",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print where each case's time and memory went (read, preprocessing, network, blending, "
        "resampling back, post-processing, write) on stderr",
    )
    parser.set_defaults(run=run)


def memory_size(text: str) -> int:
    """argparse type of --max-memory: a size such as 4G, 512M or 16GiB, in bytes."""
    from MPUNetCore.memory import parse_memory

    return parse_memory(text)


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """Options that accept inputs refused by default, and the memory budget."""
    parser.add_argument(
        "--allow-uneven-slices",
        action="store_true",
        help="segment a DICOM series with missing slices or uneven spacing on an evenly spaced "
        "approximation (refused by default; the output's header records it)",
    )
    parser.add_argument(
        "--fill-nonfinite",
        type=float,
        metavar="HU",
        help="replace NaN/infinite voxels with this value, e.g. -1000 (refused by default)",
    )
    parser.add_argument(
        "--max-memory",
        type=memory_size,
        metavar="SIZE",
        help="memory a run may use, e.g. 3G: the window and batch size are chosen to fit it (depth "
        "first, then in-plane; a warning names a smaller window, whose labels can differ slightly), and a "
        "run that cannot fit even so is refused before it starts (default on the CPU: 4 GiB, or the "
        "memory available if less; a scan that cannot fit 4 GiB at all gets the memory available)",
    )


def warn(line: str) -> None:
    """Print a warning line on stderr (the Slicer module shows these lines in its log)."""
    print(f"warning: {line}", file=sys.stderr)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that runs a model."""
    parser.add_argument(
        "--model",
        default=None,
        help="registry name or bundle path (card .json, weights .pt or folder); "
        "default: the bundled demo model",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"
    )
    parser.add_argument(
        "--tta", action="store_true", default=None, help="test-time augmentation by mirroring (slower)"
    )
    parser.add_argument(
        "--no-postprocess",
        dest="postprocess",
        action="store_false",
        default=None,
        help="keep every liver component and tumours outside the liver",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="windows per forward pass (default: the card's, lowered to 1 if the memory budget needs it)",
    )
    parser.add_argument(
        "--window",
        type=int,
        nargs=3,
        metavar=("D", "H", "W"),
        default=None,
        help="network-grid window (0: the full extent of that axis; default: the card's, made smaller "
        "if the memory budget needs it). Given here, it is kept: a run that cannot fit is refused",
    )


def settings_from_args(args: argparse.Namespace, card: ModelCard) -> InferenceSettings:
    """The card's `InferenceSettings` with the options given on the command line applied."""
    given = {
        "device": args.device,
        "tta": args.tta,
        "postprocess": args.postprocess,
        "batch_size": args.batch_size,
        "window": None if args.window is None else tuple(v or None for v in args.window),
    }
    return card.inference.replace(**{k: v for k, v in given.items() if v is not None})


def explicit_settings(args: argparse.Namespace) -> Tuple[str, ...]:
    """The settings given on the command line that the memory planning must keep (window, batch size)."""
    return tuple(k for k in ("window", "batch_size") if getattr(args, k, None) is not None)


def load_model(args: argparse.Namespace):
    """The bundle named by `--model`, with a download progress bar when it must be fetched."""
    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import select_device
    from MPUNetCore.registry import resolve_model

    card = resolve_model(args.model, progress=ProgressBar("download", args.progress))
    return load_bundle(card, device=select_device(args.device))


def plan_outputs(args: argparse.Namespace) -> List[Tuple[str, Path, Path]]:
    """(case name, input, output) for every case; refuses unusable outputs before any work.

    Refused: a format that cannot hold a 3-D label map, an output that is one of the inputs (whatever
    the flags), and existing outputs without `--overwrite`.
    """
    from MPUNetCore.cases import discover_cases
    from MPUNetCore.output_guard import check_label_map_format, input_files, refuse_outputs_onto_inputs

    cases = discover_cases(args.input, kind="image")
    single = len(cases) == 1 and cases[0].path == args.input
    if single and not args.output.is_dir():
        plan = [(cases[0].name, cases[0].path, check_label_map_format(args.output))]
    else:
        plan = [(c.name, c.path, args.output / f"{c.name}{args.format}") for c in cases]
    refuse_outputs_onto_inputs([out for _, _, out in plan], input_files(c.path for c in cases))
    existing_outputs(plan, args.overwrite)
    return plan


def existing_outputs(plan: List[Tuple[str, Path, Path]], overwrite: bool) -> None:
    """Refuse existing outputs unless `overwrite`."""
    existing = [str(out) for _, _, out in plan if out.exists()]
    if existing and not overwrite:
        more = f" and {len(existing) - 5} more" if len(existing) > 5 else ""
        raise FileExistsError(
            f"the output(s) {', '.join(existing[:5])}{more} already exist; choose another output, or pass "
            "--overwrite to replace them"
        )


def run(args: argparse.Namespace) -> int:
    from MPUNetCore.output_guard import reserve_outputs
    from MPUNetCore.ranks import current_ranks

    ranks = current_ranks()  # under torchrun: this process's share of the cases (MPUNetCore.ranks)
    plan = plan_outputs(args)
    mine = ranks.share(plan)
    args.device = ranks.device(args.device)
    try:
        try:
            with reserve_outputs(out for _, _, out in mine):  # a second run writing them refuses at once
                existing_outputs(mine, args.overwrite)  # written by a run that finished meanwhile
                failures = _segment_all(args, mine, single=len(plan) == 1 and not ranks.enabled)
        except (ValueError, OSError, RuntimeError, MemoryError) as error:
            if not ranks.enabled:
                raise
            failures = [(f"rank {ranks.rank}", str(error))]  # the others must still reach the gather
            print(f"rank {ranks.rank}: FAILED: {error}", file=sys.stderr)
        merged = [failure for part in ranks.gather(failures) for failure in part]
    finally:
        ranks.close()
    if merged and ranks.rank == 0:
        print(f"{len(merged)} of {len(plan)} case(s) failed:", file=sys.stderr)
        for name, message in merged:
            print(f"  {name}: {message}", file=sys.stderr)
    return 1 if merged else 0


def _segment_all(
    args: argparse.Namespace, plan: List[Tuple[str, Path, Path]], single: bool
) -> List[Tuple[str, str]]:
    """Segment each case of `plan`; returns the (case, message) failures (raises for a `single` case)."""
    from MPUNetCore.memory import OutOfMemory, is_out_of_memory, memory_error_message
    from MPUNetCore.pipeline import segment_file

    if not plan:
        return []
    bundle = load_model(args)
    settings = settings_from_args(args, bundle.card)
    failures: List[Tuple[str, str]] = []
    for name, source, target in plan:
        start = time.perf_counter()
        profiler = Profiler() if getattr(args, "profile", False) else contextlib.nullcontext()
        try:
            with profiler:
                segment_file(
                    source,
                    target,
                    bundle,
                    overwrite=args.overwrite,
                    series_uid=args.series,
                    settings=settings,
                    progress=ProgressBar(f"{name}: windows", args.progress),
                    allow_uneven_slices=args.allow_uneven_slices,
                    fill_nonfinite=args.fill_nonfinite,
                    max_memory=args.max_memory,
                    keep=explicit_settings(args),
                    warn=warn,
                )
        except (ValueError, OSError, RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                error = OutOfMemory(memory_error_message(error, f"segmenting {source}"))
            if single:
                raise error from None
            failures.append((name, str(error)))
            print(f"{name}: FAILED: {error}", file=sys.stderr)
            continue
        print(f"{name}: wrote {target} ({time.perf_counter() - start:.1f} s)")
        if isinstance(profiler, Profiler):
            print(f"{name}: profile\n{profiler.table()}", file=sys.stderr)
    return failures
