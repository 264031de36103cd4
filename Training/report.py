"""`report RUN [RUN ...]`: the paper's figures (PNG) and comparison tables (Markdown + CSV) of runs.

Per run: metric curves training vs validation (Fig. 6/9), box plots over the epochs (Fig. 7/10),
clustered bars of the converged values (Fig. 8/11, Tables 3/4). Across runs: 1 - Dice convergence
(Fig. 12), the converged values side by side (Table 5), time per epoch and size (Table 6), the best
saved models (Table 7), and, for evaluated runs, the test radar chart (Fig. 14), per-case box plots
and the test tables (Tables 8/9). "Converged" means the mean over the last third of the epochs (the
paper averages epochs 400-600 of 600).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from MPUNetCore.output_guard import refuse_outputs_onto_inputs

from . import plots
from .config import load_config
from .evaluate import markdown_table, read_summary
from .metric_keys import (
    BEST_EPOCH,
    EPOCH,
    EPOCH_TIME,
    LABELS,
    PAPER_METRICS,
    TRAIN_TIME,
    VAL_TIME,
    metric_key,
)
from .runfolder import RunFolder, read_csv, write_csv

PAPER = PAPER_METRICS
HEADER = [LABELS[m] for m in PAPER]


@dataclass
class RunRecord:
    """What a report needs from one run folder."""

    name: str
    folder: RunFolder
    classes: List[str]
    history: List[Dict[str, Any]]
    info: Dict[str, Any] = field(default_factory=dict)
    test: Optional[Dict[str, Any]] = None
    test_cases: List[Dict[str, Any]] = field(default_factory=list)

    def converged(self, part: str, cls: str) -> Dict[str, float]:
        """Mean of each paper metric over the last third of the epochs (NaNs skipped)."""
        last = max(1, int(math.ceil(len(self.history) / 3)))
        rows = self.history[-last:]
        return {m: _nanmean([r.get(metric_key(part, cls, m), math.nan) for r in rows]) for m in PAPER}

    def best_row(self) -> Optional[Dict[str, Any]]:
        """The metrics row of the best saved epoch."""
        if not self.history:
            return None
        epoch = self.history[-1].get(BEST_EPOCH, math.nan)
        return next((r for r in self.history if r[EPOCH] == epoch), None)

    def mean_time(self, key: str) -> float:
        """Mean of a time column over the epochs that have it."""
        return _nanmean([r.get(key, math.nan) for r in self.history])

    def file_size_mb(self) -> float:
        """Size of the exported weights, else of the best checkpoint (includes metadata), in MB."""
        exported = sorted(self.folder.export.glob("*.pt"))
        path = exported[0] if exported else self.folder.best
        return path.stat().st_size / 1e6 if path.exists() else math.nan


def _nanmean(values: Sequence[Any]) -> float:
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(float(v))]
    return float(np.mean(numbers)) if numbers else math.nan


def load_run(path: Path) -> RunRecord:
    """Read a run folder's config, metrics, info and (if any) test evaluation."""
    run = RunFolder(path)
    run.require(run.config, run.metrics)
    config = load_config(run.config)
    classes = ["liver", "tumor"] if config.data.task == "liver_tumor" else ["liver"]
    info = json.loads(run.info.read_text(encoding="utf-8")) if run.info.exists() else {}
    record = RunRecord(config.experiment.name, run, classes, read_csv(run.metrics), info)
    record.test = read_summary(run, "test")
    cases = run.evaluation / "test_cases.csv"
    if cases.exists():
        record.test_cases = read_csv(cases)
    return record


def _unique_names(runs: List[RunRecord]) -> None:
    names = [r.name for r in runs]
    for r in runs:
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({r.folder.root.name})"


def make_report(run_dirs: Sequence[Path], output: Path) -> Path:
    """Write the figures and `report.md` (plus `tables.csv`) into `output`; returns report.md."""
    runs = [load_run(Path(d)) for d in run_dirs]
    _unique_names(runs)
    output = Path(output)
    inputs = [path for r in runs for path in r.folder.inputs() + sorted(r.folder.export.glob("*"))]
    refuse_outputs_onto_inputs([output, *report_files(runs, output)], inputs)
    output.mkdir(parents=True, exist_ok=True)
    classes = [c for c in ("liver", "tumor") if any(c in r.classes for r in runs)]
    table_rows: List[Dict[str, Any]] = []
    md: List[str] = [f"# Training report: {', '.join(r.name for r in runs)}", ""]
    md += _run_sections(runs, output, table_rows)
    md += _comparison_sections(runs, classes, output)
    md += _time_section(runs, table_rows)
    md += _best_section(runs)
    evaluated = [r for r in runs if r.test]
    if evaluated:
        md += _test_section(evaluated, classes, output, table_rows)
    else:
        md += [
            "No run has been evaluated yet: `python -m Training evaluate RUN` adds Tables 8/9 and Fig. 14.",
            "",
        ]
    write_csv(output / "tables.csv", table_rows)
    report = output / "report.md"
    report.write_text("\n".join(md), encoding="utf-8")
    return report


def report_files(runs: Sequence[RunRecord], output: Path) -> List[Path]:
    """Every file a report of `runs` may write into `output` (a superset: some figures need data).

    Args:
        runs: the loaded runs, with their final (unique) names.
        output: the report folder.

    Returns:
        The paths, checked against the runs' files before anything is written.
    """
    names = ["report.md", "tables.csv"]
    for r in runs:
        kinds = ("curves", "boxplots", "bars")
        names += [f"{_slug(r.name)}_{c}_{kind}.png" for c in r.classes for kind in kinds]
    for c in ("liver", "tumor"):
        names += [f"{kind}_{c}.png" for kind in ("convergence", "compare", "radar", "test_boxplots")]
    return [output / name for name in names]


def _run_sections(runs: List[RunRecord], output: Path, table_rows: List[Dict[str, Any]]) -> List[str]:
    """Per run and class: curves, box plots, converged bars and their table (Figs. 6-11, Tables 3/4)."""
    md: List[str] = []
    for r in runs:
        slug = _slug(r.name)
        md += [
            f"## {r.name}",
            "",
            f"Run folder `{r.folder.root}`, {len(r.history)} epochs, "
            f"{r.info.get('parameters', 'unknown')} parameters.",
            "",
        ]
        for cls in r.classes:
            figs = [
                plots.curves(r.history, cls, r.name, output / f"{slug}_{cls}_curves.png"),
                plots.boxplots(r.history, cls, r.name, output / f"{slug}_{cls}_boxplots.png"),
            ]
            groups = {"training": r.converged("train", cls), "validation": r.converged("val", cls)}
            figs.append(
                plots.grouped_bars(
                    groups, f"{r.name}: converged {cls} metrics", output / f"{slug}_{cls}_bars.png"
                )
            )
            md += [
                f"### {cls}: convergence data (mean of the last third of the epochs; paper Tables 3/4)",
                "",
                markdown_table(["", *HEADER], [[k, *(v[m] for m in PAPER)] for k, v in groups.items()]),
                "",
            ]
            md += [f"![{p.stem}]({p.name})" for p in figs] + [""]
            for part, values in groups.items():
                table_rows.append({"table": "converged", "run": r.name, "class": cls, "part": part, **values})
    return md


def _comparison_sections(runs: List[RunRecord], classes: List[str], output: Path) -> List[str]:
    """Per class, across runs: convergence figure and converged values side by side (Table 5, Fig. 12)."""
    md: List[str] = []
    for cls in classes:
        with_cls = [r for r in runs if cls in r.classes]
        fig = plots.convergence({r.name: r.history for r in with_cls}, cls, output / f"convergence_{cls}.png")
        rows = [
            [f"{r.name} {p}", *(r.converged(p, cls)[m] for m in PAPER)]
            for r in with_cls
            for p in ("train", "val")
        ]
        md += [
            f"## Comparison, {cls} (paper Table 5 and Fig. 12)",
            "",
            markdown_table(["", *HEADER], rows),
            "",
            f"![convergence]({fig.name})",
            "",
        ]
        if len(with_cls) > 1:
            groups = {r.name: r.converged("val", cls) for r in with_cls}
            bars = plots.grouped_bars(
                groups, f"Converged validation {cls} metrics", output / f"compare_{cls}.png"
            )
            md += [f"![compare]({bars.name})", ""]
    return md


def _time_section(runs: List[RunRecord], table_rows: List[Dict[str, Any]]) -> List[str]:
    """Time per epoch, parameters and file size of each run (Table 6)."""
    md: List[str] = []
    md += ["## Time per epoch and size (paper Table 6)", ""]
    time_rows = []
    for r in runs:
        train_t, val_t, total = (
            r.mean_time(TRAIN_TIME),
            r.mean_time(VAL_TIME),
            r.mean_time(EPOCH_TIME),
        )
        time_rows.append(
            [
                r.name,
                train_t,
                val_t,
                total,
                r.info.get("parameters", math.nan),
                r.file_size_mb(),
                r.info.get("device", "?"),
            ]
        )
        table_rows.append(
            {
                "table": "time",
                "run": r.name,
                TRAIN_TIME: train_t,
                VAL_TIME: val_t,
                EPOCH_TIME: total,
                "parameters": r.info.get("parameters"),
                "file_mb": r.file_size_mb(),
            }
        )
    md += [
        markdown_table(
            ["run", "train time (s)", "val time (s)", "total (s)", "parameters", "file (MB)", "device"],
            time_rows,
        ),
        "",
    ]
    return md


def _best_section(runs: List[RunRecord]) -> List[str]:
    """The metrics of each run's best saved epoch (Table 7)."""
    md: List[str] = []
    md += ["## Best saved models (paper Table 7)", ""]
    best_rows = []
    for r in runs:
        row = r.best_row()
        for cls in r.classes:
            if row is None:
                continue
            for part in ("train", "val"):
                best_rows.append(
                    [
                        r.name,
                        int(row["epoch"]),
                        cls,
                        part,
                        *(row.get(metric_key(part, cls, m)) for m in PAPER),
                    ]
                )
    md += [markdown_table(["run", "epoch", "class", "part", *HEADER], best_rows), ""]
    return md


def _test_section(
    runs: List[RunRecord], classes: List[str], output: Path, table_rows: List[Dict]
) -> List[str]:
    md = ["## Test set (paper Tables 8/9, Fig. 14)", ""]
    for cls in classes:
        with_cls = [r for r in runs if cls in r.test["classes"]]
        means = {
            r.name: {m: r.test["classes"][cls].get(f"mean_{m}", math.nan) for m in PAPER} for r in with_cls
        }
        radar = plots.radar(means, f"Test set, {cls}", output / f"radar_{cls}.png")
        box = plots.test_boxplots(
            {r.name: r.test_cases for r in with_cls}, cls, output / f"test_boxplots_{cls}.png"
        )
        md += [
            f"### {cls}: average over the test cases (Table 9)",
            "",
            markdown_table(
                ["run", *HEADER, "Dice global"],
                [
                    [n, *(v[m] for m in PAPER), r.test["classes"][cls]["dice_global"]]
                    for (n, v), r in zip(means.items(), with_cls)
                ],
            ),
            "",
            f"![radar]({radar.name}) ![test box plots]({box.name})",
            "",
        ]
        for r in with_cls:
            cases = [[c["case_id"], *(c[m] for m in PAPER)] for c in r.test_cases if c["class"] == cls]
            md += [
                f"#### {r.name}, {cls}: per case (Table 8)",
                "",
                markdown_table(["case", *HEADER], cases),
                "",
            ]
            table_rows.append({"table": "test", "run": r.name, "class": cls, **means[r.name]})
    return md


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


__all__ = ["RunRecord", "load_run", "make_report"]
