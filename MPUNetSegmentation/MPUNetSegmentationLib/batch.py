"""Headless batch segmentation of a folder of CTs: the logic behind ``Scripts/mpunet_batch.py``.

For every case of the input folder (image files, or DICOM series in sub-folders, as
``MPUNetCore.cases.discover_cases(kind="image")`` finds them):

1. ``labelmaps/<case>.nii.gz``: the label map, written by ``python -m MPUNetCore segment`` in a background
   process (the Slicer process stays torch-free; the file has exactly the CT's geometry, as ``mpunet
   segment`` writes it);
2. ``segmentations/<case>.seg.nrrd``: a segmentation with named, coloured segments (from the model card),
   built with Slicer's MRML on the CT as Slicer loads it and saved by Slicer's segmentation writer;
3. with ``--labels``: ``metrics.csv``, the per-case metrics, their means and Dice global of every label map
   in ``labelmaps/`` that has a reference, computed by ``MPUNetCore.evaluation`` exactly as
   ``mpunet evaluate --pred OUT/labelmaps --ref LABELS --out metrics.csv`` does (rewritten on each run);
4. ``mpunet_batch.log``: everything the run printed (appended to on each run).

A failing case is logged and skipped; the others complete. Existing outputs of a case are kept (and the
model not run again) unless ``overwrite``. The exit code is 0 when every case succeeded, 1 when any failed
(their names are listed at the end), 2 for unusable arguments.

Under ``torchrun`` each process takes its share of the cases (``batch_ranks.py``) and logs to
``mpunet_batch.rank-R.log`` (rank 0: ``mpunet_batch.log``); once all are done, rank 0 logs the merged
list of every rank's cases and failures and writes ``metrics.csv`` (atomically, once). The label maps and
segmentations are those of a one-process run; every process exits with the merged exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, TextIO, Tuple

LOG_NAME, METRICS_NAME = "mpunet_batch.log", "metrics.csv"
LABELMAP_DIR, SEGMENTATION_DIR = "labelmaps", "segmentations"


@dataclass
class BatchOptions:
    """What to run (see :func:`parse_args` for the command line)."""

    input: Path
    output: Path
    labels: Optional[Path] = None
    model: Optional[str] = None
    device: str = "auto"
    overwrite: bool = False
    tta: bool = False
    postprocess: bool = True
    python: Optional[str] = None
    max_memory: Optional[str] = None  # memory budget such as "4G" (None: mpunet segment's default)


@dataclass
class BatchReport:
    """What a run did: case names done, kept (existing outputs), failed (with the reason), metrics file."""

    done: List[str] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    failed: List[Tuple[str, str]] = field(default_factory=list)
    metrics: Optional[Path] = None

    @property
    def exit_code(self) -> int:
        """0 when no case failed, else 1."""
        return 1 if self.failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``mpunet_batch.py``."""
    parser = argparse.ArgumentParser(
        prog="mpunet_batch.py",
        description="Segment every CT of a folder with MPU-Net (.seg.nrrd, .nii.gz, metrics, log).",
    )
    parser.add_argument("--input", type=Path, required=True, help="folder of CT files / DICOM series folders")
    parser.add_argument("--output", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--labels", type=Path, help="folder of reference label maps: writes metrics.csv")
    parser.add_argument("--model", default=None, help="registry name or bundle path (default: bundled model)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (gpu), cuda:N or mps")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--tta", action="store_true", help="test-time augmentation (slower)")
    parser.add_argument(
        "--no-postprocess", dest="postprocess", action="store_false", help="no post-processing"
    )
    parser.add_argument(
        "--max-memory",
        type=_memory_size,
        metavar="SIZE",
        help="memory each case may use, e.g. 3G: the window and batch size are chosen to fit it "
        "(default: on the CPU 4 GiB, or the memory available if less)",
    )
    return parser


def _memory_size(text: str) -> str:
    """argparse type of --max-memory: checked like ``mpunet segment`` checks it, passed on as written."""
    from MPUNetCore.memory import parse_memory  # torch-free

    parse_memory(text)
    return text


def parse_args(argv: Sequence[str]) -> BatchOptions:
    """Parse the arguments (a leading ``--``, as Slicer passes it after ``--python-script``, is dropped).

    Raises:
        SystemExit: code 2 on bad arguments (argparse's message on stderr).
    """
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    options = BatchOptions(
        args.input,
        args.output,
        args.labels,
        args.model,
        args.device,
        args.overwrite,
        args.tta,
        args.postprocess,
        max_memory=args.max_memory,
    )
    return absolute_paths(options)


def absolute_paths(options: BatchOptions) -> BatchOptions:
    """The options with every path made absolute against the caller's working directory.

    The model runs in a worker process with another working directory, so a relative ``--input``,
    ``--output``, ``--labels`` or ``--model`` path would otherwise name the wrong place there.
    """
    model = options.model
    if model and Path(model).exists():
        model = os.path.abspath(model)

    def absolute(path: Optional[Path]) -> Optional[Path]:
        return None if path is None else Path(os.path.abspath(Path(path).expanduser()))

    return replace(
        options,
        input=absolute(options.input),
        output=absolute(options.output),
        labels=absolute(options.labels),
        model=model,
    )


class _Log:
    """Print to stdout and append to the log file."""

    def __init__(self, path: Path, echo: Optional[Callable[[str], None]] = print) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.stream: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115  (closed in close())
        self.echo = echo

    def __call__(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for line in str(text).splitlines() or [""]:
            self.stream.write(f"{stamp} {line}\n")
            if self.echo is not None:
                self.echo(line)
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def run_batch(options: BatchOptions, echo: Optional[Callable[[str], None]] = print) -> BatchReport:
    """Run the batch (see the module docstring).

    Args:
        options: what to run.
        echo: where log lines go besides the log file (None: only the file).

    Returns:
        The :class:`BatchReport`.

    Raises:
        ValueError, FileNotFoundError: unusable input or label folder, an output that is an input, or an
            output folder another batch run is writing (nothing was run).
    """
    from MPUNetCore.cases import discover_cases
    from MPUNetCore.output_guard import refuse_outputs_onto_inputs, reserve_output

    from .batch_ranks import BatchRanks
    from .headless import ensure_slicer
    from .process import normalized_device

    options = absolute_paths(options)
    ensure_slicer()
    ranks = BatchRanks.current(options.python)
    options = replace(options, device=ranks.device(normalized_device(options.device)))
    if options.labels is not None and not Path(options.labels).is_dir():
        raise FileNotFoundError(f"the label folder {options.labels} does not exist")
    cases = discover_cases(options.input, kind="image")
    log_name = ranks.log_name(LOG_NAME)
    outputs = planned_outputs(options.output, cases, log_name)
    refuse_outputs_onto_inputs(outputs, batch_inputs(options, cases))
    with reserve_output(options.output / log_name):  # one batch run per output folder at a time
        return _run_cases(options, cases, echo, ranks)


def planned_outputs(output: Path, cases: Sequence[Any], log_name: str = LOG_NAME) -> List[Path]:
    """Every file a batch run (its process ``log_name`` logs to) may write into ``output`` for ``cases``."""
    files = [output / log_name, output / METRICS_NAME]
    for case in cases:
        files.extend(output_paths(output, case.name))
    return files


def batch_inputs(options: BatchOptions, cases: Sequence[Any]) -> List[Path]:
    """Every file a batch run reads: the CTs (DICOM folders' files), the references, the model's files."""
    from MPUNetCore.cases import is_image_file
    from MPUNetCore.output_guard import input_files

    paths: List[Any] = [case.path for case in cases]
    if options.labels is not None:
        paths += [p for p in Path(options.labels).iterdir() if is_image_file(p)]
    model = Path(options.model) if options.model else None
    if model is not None and model.exists():
        paths += [model] if model.is_dir() else [model, model.with_suffix(".json"), model.with_suffix(".pt")]
    return input_files(p for p in paths if p is not None and Path(p).exists())


def _run_cases(
    options: BatchOptions, cases: Sequence[Any], echo: Optional[Callable[[str], None]], ranks: Any
) -> BatchReport:
    log = _Log(Path(options.output) / ranks.log_name(LOG_NAME), echo)
    report = BatchReport()
    try:
        log(f"MPU-Net batch: {len(cases)} case(s) in {options.input} -> {options.output}")
        log(f"model {options.model or 'default'}, device {options.device}, overwrite {options.overwrite}")
        numbered = list(enumerate(cases, 1))
        if ranks.enabled:
            numbered = ranks.ranks.share(numbered)
            log(f"torchrun: rank {ranks.ranks.rank} of {ranks.ranks.world} takes {len(numbered)} case(s)")
        for number, case in numbered:
            start = time.monotonic()
            log(f"[{number}/{len(cases)}] {case.name}: {case.path}")
            try:
                ran = _run_case(case.name, Path(case.path), options, log)
            except Exception as error:  # one bad case must not stop the others
                message = str(error).strip() or type(error).__name__
                report.failed.append((case.name, f"{case.path}: {message}"))
                log(f"[{number}/{len(cases)}] {case.name}: FAILED ({case.path}): {message}")
                continue
            (report.done if ran else report.kept).append(case.name)
            verb = "done" if ran else "kept existing outputs"
            log(f"[{number}/{len(cases)}] {case.name}: {verb} ({time.monotonic() - start:.1f} s)")
        if ranks.enabled:  # every rank waits here for the others; then rank 0 speaks for all
            _merge_ranks(report, ranks, [case.name for case in cases], log)
            if ranks.ranks.rank != 0:
                return report
        if options.labels is not None:
            report.metrics = _write_metrics(options, log, report)
        log(f"{len(report.done)} done, {len(report.kept)} kept, {len(report.failed)} failed")
        for name, reason in report.failed:
            log(f"FAILED {name}: {reason}")
    finally:
        log.close()
    return report


def _merge_ranks(report: BatchReport, ranks: Any, order: List[str], log: Callable[[str], None]) -> None:
    """Replace this rank's lists in ``report`` by every rank's, merged in case order."""
    from .batch_ranks import merge

    mine = {"done": report.done, "kept": report.kept, "failed": [list(f) for f in report.failed]}
    merged = merge(ranks.gather(mine), order)
    report.done, report.kept = merged["done"], merged["kept"]
    report.failed = [(name, reason) for name, reason in merged["failed"]]
    if ranks.ranks.rank == 0:
        log(f"torchrun: merged the reports of {ranks.ranks.world} processes")


def output_paths(output: Path, name: str) -> Tuple[Path, Path]:
    """The label map and segmentation files of case ``name`` under ``output``."""
    return output / LABELMAP_DIR / f"{name}.nii.gz", output / SEGMENTATION_DIR / f"{name}.seg.nrrd"


def _run_case(name: str, path: Path, options: BatchOptions, log: Callable[[str], None]) -> bool:
    """Produce the outputs of one case; returns False when all of them existed and were kept."""
    labelmap, segmentation = output_paths(Path(options.output), name)
    need_labels = options.overwrite or not labelmap.exists()
    need_segmentation = options.overwrite or not segmentation.exists()
    if not (need_labels or need_segmentation):
        return False
    if need_labels:
        _segment_in_background(path, labelmap, options, log)
    if need_segmentation:
        _write_segmentation(name, path, labelmap, segmentation, options.model)
        log(f"    wrote {segmentation}")
    return True


def _segment_in_background(
    source: Path, target: Path, options: BatchOptions, log: Callable[[str], None]
) -> None:
    from MPUNetCore.ranks import single_process_environment

    from .background import BackgroundCommand
    from .dependencies import background_environment, mpunetcore_root, python_executable
    from .process import SegmentationOptions

    target.parent.mkdir(parents=True, exist_ok=True)
    settings = SegmentationOptions.create(
        options.model, options.device, options.tta, options.postprocess, options.max_memory
    )
    args = settings.command(options.python or python_executable(), source, target)
    if options.overwrite:
        args.append("--overwrite")
    env = single_process_environment(background_environment())  # under torchrun: one case, this process's
    command = BackgroundCommand(args, env=env, cwd=str(mpunetcore_root()))
    command.start()
    code = command.wait()  # all output is collected once it returns
    messages = [line for line in command.stdout_lines + command.stderr_lines if not _is_progress(line)]
    if code != 0:
        details = "\n".join(line for line in command.stderr_lines if not _is_progress(line)).strip()
        raise RuntimeError(f"mpunet segment failed (exit code {code}): {details or '(no output)'}")
    for line in messages:
        log(f"    {line}")


def _is_progress(line: str) -> bool:
    if not line.startswith('{"event"'):
        return False
    try:
        return json.loads(line).get("event") == "progress"
    except json.JSONDecodeError:
        return False


def _write_segmentation(name: str, ct_path: Path, labelmap: Path, target: Path, model: Optional[str]) -> None:
    """Load the CT in Slicer, build the named segmentation from the label map, save it as .seg.nrrd."""
    import slicer.util

    from .results import read_label_map_on_volume_grid, segment_specs_for_model
    from .scene_arrays import load_volume_node
    from .segmentation_nodes import create_segmentation_node, remove_node

    volume = load_volume_node(str(ct_path), name=name)
    node = None
    try:
        labels = read_label_map_on_volume_grid(labelmap, volume)
        node = create_segmentation_node(
            labels, volume, segment_specs_for_model(model), name=f"{name} MPU-Net"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{name}.partial.seg.nrrd")
        if not slicer.util.saveNode(node, str(partial), {"useCompression": 1}):
            raise RuntimeError(f"Slicer could not write {partial}")
        os.replace(partial, target)
    finally:
        for item in (node, volume):
            if item is not None and item.GetScene() is not None:
                remove_node(item)  # with its display and storage nodes


def _write_metrics(options: BatchOptions, log: Callable[[str], None], report: BatchReport) -> Optional[Path]:
    """Evaluate every label map of the output folder that has a reference, as ``mpunet evaluate`` does."""
    from MPUNetCore.evaluation import evaluate_paths, format_table, write_metrics

    folder = Path(options.output) / LABELMAP_DIR
    if not folder.is_dir() or not any(folder.iterdir()):
        log("metrics: no label map to evaluate")
        return None
    try:  # failed cases have no label map and a case may lack a reference: both are listed, not counted
        result = evaluate_paths(folder, options.labels, missing_prediction="skip", missing_reference="skip")
    except (ValueError, OSError) as error:
        report.failed.append(("metrics", str(error)))
        log(f"metrics: FAILED: {error}")
        return None
    path = write_metrics(result.accumulator, Path(options.output) / METRICS_NAME, overwrite=True)
    log(format_table(result.accumulator))
    if result.missing_references:
        log(f"metrics: no reference for {', '.join(result.missing_references)} (not counted)")
    if result.missing_predictions:
        missing = ", ".join(result.missing_predictions)
        log(f"metrics: no label map for the reference(s) {missing} (not counted)")
    log(f"wrote {path}")
    return path


def main(argv: Sequence[str], echo: Optional[Callable[[str], None]] = print) -> int:
    """Run the batch with command-line arguments; returns the exit code (0 ok, 1 a case failed, 2 usage)."""
    import sys

    from MPUNetCore.ranks import current_ranks

    options = parse_args(argv)
    try:
        report = run_batch(options, echo)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as error:
        print(f"mpunet_batch: error: {error}", file=sys.stderr)
        return 2
    if report.failed and current_ranks().rank == 0:  # one merged list under torchrun
        names = ", ".join(f"{name} ({reason.splitlines()[0]})" for name, reason in report.failed)
        print(f"mpunet_batch: {len(report.failed)} failed: {names}", file=sys.stderr)
    return report.exit_code
