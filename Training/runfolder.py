"""The files of a run folder, and the history/CSV/TensorBoard logs written into it."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from MPUNetCore.fileutils import atomic_output
from MPUNetCore.output_guard import input_files


class RunFolder:
    """Paths of one run: config, split, logs, checkpoints, evaluation, export, report."""

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)
        self.config = self.root / "config.toml"
        self.split = self.root / "split.json"
        self.data_report = self.root / "data_report.json"
        self.info = self.root / "run_info.json"
        self.metrics = self.root / "metrics.csv"
        self.val_cases = self.root / "val_cases.csv"
        self.checkpoints = self.root / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self.evaluation = self.root / "evaluation"
        self.export = self.root / "export"
        self.tensorboard = self.root / "tensorboard"

    def inputs(self) -> List[Path]:
        """The files of the run that export and report read or that the run needs later.

        Commands that write next to a run check their outputs against these
        (`MPUNetCore.output_guard.refuse_outputs_onto_inputs`); the export folder is not among them.
        """
        files = [self.config, self.split, self.data_report, self.info, self.metrics, self.val_cases]
        files += [self.last, self.best]
        return files + input_files([self.evaluation] if self.evaluation.is_dir() else [])

    def require(self, *paths: Path) -> None:
        """FileNotFoundError naming the missing file and what produces it."""
        for path in paths:
            if not path.exists():
                hint = {
                    "config.toml": "train",
                    "best.pt": "train",
                    "split.json": "train",
                    "test_cases.csv": "evaluate",
                }.get(path.name, "train")
                raise FileNotFoundError(
                    f"{path} is missing: is {self.root} a run folder? (run `{hint}` first)"
                )


def write_json(path: Path, record: Any) -> None:
    """Atomic JSON file (replaces an older one)."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: List[Dict[str, Any]], columns: Optional[List[str]] = None) -> None:
    """Atomic CSV of `rows` (columns: the given ones, else every key in first-seen order)."""
    if columns is None:
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in columns})
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_csv(path: Path) -> List[Dict[str, Any]]:
    """Rows of a CSV written by `write_csv`, numbers as floats (empty cells as NaN)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _number(text: str) -> Any:
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return text


class TensorBoard:
    """TensorBoard scalars when the `tensorboard` package is installed; does nothing otherwise."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.writer = SummaryWriter(str(folder))

    def log(self, row: Dict[str, Any], step: int) -> None:
        """Every numeric entry of `row` as a scalar named like its CSV column (train/val grouped)."""
        if self.writer is None:
            return
        for key, value in row.items():
            if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
                group, _, name = key.partition("_")
                tag = f"{group}/{name}" if group in ("train", "val") else f"misc/{key}"
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()
