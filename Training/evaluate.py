"""`evaluate`: the best checkpoint on the test split, per case (paper Table 8) and averaged (Table 9).

Each test CT is read from its original file and segmented with `MPUNetCore.inference.segment` (the
run's preprocessing, window and post-processing), so the scores are those a user of the exported
model gets, on the original grid and in millimetres: the paper's six metrics plus the LiTS ones
(recall, VOE, RVD, ASSD, MSD, RMSD, HD95) per class, the mean over cases and Dice global.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from torch import nn

from MPUNetCore.cli.progress import ProgressBar
from MPUNetCore.inference import segment, select_device
from MPUNetCore.metrics import DiceAccumulator
from MPUNetCore.networks.registry import build_network

from .cache import preprocessing_from_config
from .config import Config, classes_of, load_config
from .data import load_split
from .metric_keys import LABELS, LITS_METRICS, PAPER_METRICS
from .models import architecture
from .runfolder import RunFolder, write_csv, write_json
from .trainer import load_checkpoint
from .validation import CARD_SETTINGS, card_settings, inference_settings, task_labels


def load_model(run: RunFolder, config: Config, checkpoint: str = "best") -> nn.Module:
    """The network of a run with the weights of its best (or last) checkpoint, in eval mode."""
    path = run.best if checkpoint == "best" else run.last
    run.require(path)
    state = load_checkpoint(path)
    model = build_network(state.get("architecture") or architecture(config))
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_run(
    run_dir: Path,
    split: str = "test",
    checkpoint: str = "best",
    device: Optional[str] = None,
    overrides: Sequence[str] = (),
    progress: str = "bar",
) -> str:
    """Segment and score the cases of one split part; writes RUN/evaluation/<split>_*.{csv,json,md}.

    Args:
        run_dir: the run folder.
        split: "test" (default), "val" or "train".
        checkpoint: "best" or "last".
        device: where to run; the run's train.device when None.
        overrides: `section.key=value` changes for this evaluation (e.g. inference.tta=true).
        progress: "bar", "json" or "none".

    Returns:
        The Markdown report (also written to RUN/evaluation/<split>.md).
    """
    from MPUNetCore.volume_io import read_label_map, read_volume

    run = RunFolder(run_dir)
    run.require(run.config, run.split)
    config = load_config(run.config, overrides)
    record = load_split(run.split)
    names = record[split]
    if not names:
        raise ValueError(f"the {split} split of {run.root} is empty (data.split gives it no cases)")
    dev = select_device(device or config.train.device)
    model = load_model(run, config, checkpoint).to(dev)
    prep = preprocessing_from_config(config)
    settings = inference_settings(config, dev)
    accumulator = DiceAccumulator(classes_of(config))
    bar = ProgressBar(f"evaluate {split}", progress)
    for done, name in enumerate(names, 1):
        files = record["cases"][name]
        image = read_volume(files["image"])
        label = read_label_map(files["label"])
        prediction = segment(image.array, image.spacing, model, prep, settings)
        accumulator.add(
            name,
            prediction,
            task_labels(label.array, config.data.task),
            spacing=tuple(reversed(image.spacing)),
        )
        bar(done, len(names))
    run.evaluation.mkdir(exist_ok=True)
    rows = accumulator.rows()
    summary = accumulator.summary()
    write_csv(run.evaluation / f"{split}_cases.csv", rows, accumulator.fieldnames())
    write_csv(run.evaluation / f"{split}_summary.csv", [{"class": c, **v} for c, v in summary.items()])
    write_json(
        run.evaluation / f"{split}_summary.json",
        {
            "split": split,
            "checkpoint": checkpoint,
            "cases": len(names),
            "classes": summary,
            "inference": {
                k: str(v) for k, v in card_settings(config).to_dict().items() if k in CARD_SETTINGS
            },
            "tta": config.inference.tta,
        },
    )
    text = markdown_report(config.experiment.name, split, rows, summary)
    (run.evaluation / f"{split}.md").write_text(text, encoding="utf-8")
    print(f"wrote {run.evaluation}/{split}_cases.csv, {split}_summary.csv and {split}.md", file=sys.stderr)
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_report(
    name: str, split: str, rows: List[Dict[str, Any]], summary: Dict[str, Dict[str, float]]
) -> str:
    """Per-case tables (Table 8) and the averages (Table 9) of each class, paper metrics first."""
    metrics = PAPER_METRICS + LITS_METRICS
    header = ["case", *(LABELS[m] for m in metrics)]
    parts = [f"# {name}: {split} split ({len({r['case_id'] for r in rows})} cases)", ""]
    for cls, stats in summary.items():
        cases = [[r["case_id"], *(r[m] for m in metrics)] for r in rows if r["class"] == cls]
        parts += [f"## {cls}: per case (paper Table 8)", "", markdown_table(header, cases), ""]
        mean = ["mean", *(stats.get(f"mean_{m}", math.nan) for m in metrics)]
        parts += [
            f"## {cls}: average (paper Table 9)",
            "",
            markdown_table(header, [mean]),
            "",
            f"Dice per case {_fmt(stats['dice_per_case'])}, Dice global {_fmt(stats['dice_global'])}.",
            "",
        ]
    return "\n".join(parts)


def read_summary(run: RunFolder, split: str = "test") -> Optional[Dict[str, Any]]:
    """The evaluation summary of a run, or None when it was not evaluated."""
    path = run.evaluation / f"{split}_summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
