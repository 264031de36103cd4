"""The paper's figures from run logs, with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .metric_keys import LABELS, PAPER_METRICS, metric_key  # noqa: E402


def series(history: List[Dict], key: str) -> tuple:
    """(epochs, values) of a metrics.csv column, leaving out epochs without a value."""
    points = [
        (r["epoch"], r[key]) for r in history if isinstance(r.get(key), float) and not math.isnan(r[key])
    ]
    return tuple(np.asarray(v, dtype=float) for v in zip(*points)) if points else (np.array([]), np.array([]))


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves(history: List[Dict], cls: str, title: str, path: Path) -> Path:
    """Fig. 6/9: each paper metric per epoch, training vs validation."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, metric in zip(axes.ravel(), PAPER_METRICS):
        for part, style in (("train", "-"), ("val", "-o")):
            x, y = series(history, metric_key(part, cls, metric))
            if len(x):
                ax.plot(x, y, style, markersize=2.5, label="training" if part == "train" else "validation")
        ax.set_title(LABELS[metric])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: {cls} metrics, training vs validation")
    return _save(fig, path)


def boxplots(history: List[Dict], cls: str, title: str, path: Path) -> Path:
    """Fig. 7/10: distribution of each paper metric over the epochs, training vs validation."""
    fig, axes = plt.subplots(1, len(PAPER_METRICS), figsize=(14, 3.8))
    for ax, metric in zip(axes, PAPER_METRICS):
        data = [series(history, metric_key(part, cls, metric))[1] for part in ("train", "val")]
        data = [d if len(d) else np.array([np.nan]) for d in data]
        _boxplot(ax, data, ["train", "val"])
        ax.set_title(LABELS[metric])
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: {cls} metrics over the epochs")
    return _save(fig, path)


def _boxplot(ax, data: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """`ax.boxplot` with category names (the keyword changed in matplotlib 3.9)."""
    major, minor = (int(p) for p in matplotlib.__version__.split(".")[:2])
    if (major, minor) >= (3, 9):
        ax.boxplot(data, tick_labels=list(names))
    else:
        ax.boxplot(data, labels=list(names))


def grouped_bars(groups: Dict[str, Dict[str, float]], title: str, path: Path, ylabel: str = "value") -> Path:
    """Fig. 8/11: clustered bars of the paper metrics, one bar per group (e.g. train / val, or runs)."""
    fig, ax = plt.subplots(figsize=(10, 4.2))
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(PAPER_METRICS))
    for i, (name, values) in enumerate(groups.items()):
        heights = [values.get(m, np.nan) for m in PAPER_METRICS]
        bars = ax.bar(x + (i - (len(groups) - 1) / 2) * width, heights, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks(x, [LABELS[m] for m in PAPER_METRICS])
    ax.set_ylabel(ylabel)
    ax.set_ylim(min(0.0, np.nanmin([v for g in groups.values() for v in g.values()] + [0.0])), 1.15)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    return _save(fig, path)


def convergence(histories: Dict[str, List[Dict]], cls: str, path: Path) -> Path:
    """Fig. 12: 1 - Dice per epoch of the compared runs (validation solid, training dashed)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, history in histories.items():
        x, y = series(history, metric_key("val", cls, "dice"))
        line = ax.plot(x, 1 - y, "-", label=f"{name} validation")[0] if len(x) else None
        x, y = series(history, metric_key("train", cls, "dice"))
        if len(x):
            ax.plot(
                x, 1 - y, "--", color=line.get_color() if line else None, alpha=0.7, label=f"{name} training"
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("1 - Dice")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"Convergence ({cls})")
    return _save(fig, path)


def radar(values: Dict[str, Dict[str, float]], title: str, path: Path) -> Path:
    """Fig. 14: radar chart of the six paper metrics on the test set, one polygon per run."""
    angles = np.linspace(0, 2 * np.pi, len(PAPER_METRICS), endpoint=False)
    fig = plt.figure(figsize=(5.5, 5.5))
    ax = fig.add_subplot(projection="polar")
    for name, metrics in values.items():
        v = np.array([metrics.get(m, np.nan) for m in PAPER_METRICS])
        ax.plot(np.append(angles, angles[0]), np.append(v, v[0]), "-o", markersize=3, label=name)
        ax.fill(np.append(angles, angles[0]), np.append(v, v[0]), alpha=0.1)
    ax.set_xticks(angles, [LABELS[m] for m in PAPER_METRICS])
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right", bbox_to_anchor=(1.25, -0.05), fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def test_boxplots(per_run: Dict[str, List[Dict]], cls: str, path: Path) -> Path:
    """Per-case test metrics of each run as box plots (the spread behind Table 8)."""
    fig, axes = plt.subplots(1, len(PAPER_METRICS), figsize=(14, 3.8))
    names: Sequence[str] = list(per_run)
    for ax, metric in zip(axes, PAPER_METRICS):
        data = [np.array([r[metric] for r in per_run[n] if r["class"] == cls], dtype=float) for n in names]
        data = [d if len(d) else np.array([np.nan]) for d in data]
        _boxplot(ax, data, names)
        ax.set_title(LABELS[metric])
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Test set, {cls}: per-case metrics")
    return _save(fig, path)
