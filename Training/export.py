"""`export`: a run's best or last checkpoint as a model bundle (`MPUNetCore.bundle`) for `mpunet segment`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional

from MPUNetCore import __version__
from MPUNetCore.bundle import ModelCard, SegmentClass, save_bundle
from MPUNetCore.fileutils import check_writable
from MPUNetCore.output_guard import refuse_outputs_onto_inputs, reserve_outputs

from .cache import preprocessing_from_config
from .config import Config, load_config
from .data import SPLIT_PARTS, load_split
from .evaluate import load_model, read_summary
from .metric_keys import TRAIN_TIME
from .models import architecture
from .runfolder import RunFolder, read_csv
from .trainer import load_checkpoint
from .validation import card_settings

# Colours of Slicer's GenericAnatomyColors: liver (221, 130, 101), tumor (144, 238, 144).
CLASS_COLORS = {
    "Background": [0.0, 0.0, 0.0],
    "Liver": [0.8667, 0.5098, 0.3961],
    "Liver tumor": [0.5647, 0.9333, 0.5647],
}


def segment_classes(config: Config) -> List[SegmentClass]:
    """The card's classes: Background, Liver and (liver_tumor task) Liver tumor, with colours."""
    names = ["Background", "Liver"] + (["Liver tumor"] if config.data.task == "liver_tumor" else [])
    return [SegmentClass(i, n, list(CLASS_COLORS[n])) for i, n in enumerate(names)]


def _clean(value: Any) -> Any:
    """JSON-safe metrics: NaN becomes None, numbers are rounded to 6 significant digits."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.6g}")
    return value


def build_card(run: RunFolder, config: Config, name: str, checkpoint: str = "best") -> ModelCard:
    """The model card of a run: architecture, classes, preprocessing, inference, training, metrics.

    ``checkpoint`` ("best" or "last") is the one exported: the card names it and its epoch, and carries
    test metrics only when ``evaluate`` measured that same checkpoint.
    """
    best = load_checkpoint(run.best)
    exported = best if checkpoint == "best" else load_checkpoint(run.last)
    history = read_csv(run.metrics) if run.metrics.exists() else []
    split = load_split(run.split)
    times = [r[TRAIN_TIME] for r in history if isinstance(r.get(TRAIN_TIME), float)]
    info = json.loads(run.info.read_text(encoding="utf-8")) if run.info.exists() else {}
    training: Dict[str, Any] = {
        "experiment": config.experiment.name,
        "task": config.data.task,
        "data": config.data.root
        or f"{config.data.phantom_cases} generated phantoms (seed {config.data.phantom_seed})",
        "split": {p: len(split[p]) for p in SPLIT_PARTS},
        "split_seed": split.get("seed"),
        "epochs": len(history),
        "best_epoch": best.get("epoch"),
        "checkpoint": checkpoint,
        "checkpoint_epoch": exported.get("epoch"),
        "mean_train_time_per_epoch_s": round(sum(times) / len(times), 2) if times else None,
        "device": info.get("device"),
        "parameters": info.get("parameters"),
        "config": config.to_dict(),
    }
    metrics: Dict[str, Any] = {
        "validation_best_epoch": _clean({k: v for k, v in best["metrics"].items() if k.startswith("val_")})
    }
    if checkpoint == "last" and history:
        metrics["validation_last_epoch"] = _clean(
            {k: v for k, v in history[-1].items() if k.startswith("val_")}
        )
    test = read_summary(run, "test")
    if test is not None and test.get("checkpoint", "best") == checkpoint:
        metrics["test"] = _clean(test["classes"])
    return ModelCard(
        name=name,
        architecture=exported.get("architecture") or architecture(config),
        classes=segment_classes(config),
        preprocessing=preprocessing_from_config(config).to_dict(),
        inference=card_settings(config),
        version=__version__,
        description=config.experiment.description or f"{name}, trained with mpunet-train",
        training=training,
        metrics=metrics,
    )


def export_run(
    run_dir: Path,
    output: Optional[Path] = None,
    name: Optional[str] = None,
    overwrite: bool = False,
    checkpoint: str = "best",
) -> Path:
    """Write the best (or last) checkpoint of a run as a bundle (card + weights); returns the card's path.

    The card carries the test metrics when `evaluate` has measured that checkpoint (else validation's).
    """
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last'; got {checkpoint!r}")
    run = RunFolder(run_dir)
    run.require(run.config, run.best if checkpoint == "best" else run.last, run.split)
    config = load_config(run.config)
    name = name or config.experiment.name
    path = Path(output) if output else run.export / f"{name}.json"
    if path.suffix != ".json":
        raise ValueError(f"--output {path}: give the card's path, ending in .json (the weights go beside it)")
    outputs = [path, path.with_suffix(".pt")]
    refuse_outputs_onto_inputs(outputs, run.inputs())
    for target in outputs:  # refuse before the (slow) model loading
        check_writable(target, overwrite)
    with reserve_outputs(outputs):  # a second export to the same bundle refuses at once
        card = build_card(run, config, name, checkpoint)
        model = load_model(run, config, checkpoint)
        return save_bundle(model, card, path, overwrite=overwrite)
