"""Preprocess each case once into memory-mapped .npy arrays that later runs reuse.

A cache folder is `cache_dir/<key>/` where `<key>` hashes everything that changes the arrays (the
`Preprocessing`, the crop margin, the geometry tolerance, the cache format): change a setting and a
new folder is filled; nothing stale is ever read. Inside, each case has
`<name>-<id>.json` (its entry: source files with size and modification time, network spacing,
status) and, for usable cases, `.image.npy` (float32, network units), `.label.npy` (uint8, 0/1/2)
and `.fg.npz` (coordinates of sampled liver/tumour voxels, for foreground-biased patches). The
entry is written last, so a killed run never leaves a half-written case that looks complete; an
entry whose source files changed is recomputed.

Per case: read and check the pair (same grid, labels in {0, 1, 2}), crop to the liver's slices
plus `crop_margin` network slices each side, bring the CT into the network space with the
inference engine's `to_network_space` (so training sees exactly what inference sees) and the
labels onto the same grid (trilinear on one-hot maps, then argmax).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from MPUNetCore.fileutils import atomic_output
from MPUNetCore.inference import Preprocessing, to_network_space

from .config import Config
from .data import CasePair, check_geometry

CACHE_FORMAT = 1
MAX_FOREGROUND_POINTS = 20000


@dataclass
class CachedCase:
    """A preprocessed case: where its arrays are, its network spacing (x, y, z) and status."""

    name: str
    entry: Path
    status: str  # "ok" or "bad"
    reason: str = ""
    shape: Tuple[int, int, int] = (0, 0, 0)
    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    image_file: str = ""
    label_file: str = ""

    def image(self) -> np.ndarray:
        """The preprocessed CT (z, y, x), memory-mapped read-only."""
        return np.load(self.entry.parent / self.image_file, mmap_mode="r")

    def label(self) -> np.ndarray:
        """The label map (z, y, x) on the network grid, memory-mapped read-only (0/1/2)."""
        return np.load(self.entry.parent / self.label_file, mmap_mode="r")

    def foreground(self) -> Dict[str, np.ndarray]:
        """Sampled (z, y, x) coordinates of liver (label >= 1) and tumour (label 2) voxels."""
        with np.load(self.entry.parent / self.label_file.replace(".label.npy", ".fg.npz")) as data:
            return {"liver": data["liver"], "tumor": data["tumor"]}


def preprocessing_from_config(config: Config) -> Preprocessing:
    """The inference engine's `Preprocessing` described by the config's [preprocessing] section."""
    prep = config.preprocessing
    ts = prep.target_spacing
    return Preprocessing(
        hu_window=tuple(prep.hu_window),
        scale=prep.scale,
        inplane_factor=None if ts else prep.inplane_factor,
        target_spacing=tuple(ts) if ts else None,
        slice_spacing=prep.slice_spacing,
        antialias=prep.antialias,
    )


def cache_key(prep: Preprocessing, crop_margin: int, tolerance: float) -> str:
    """Hash of everything that changes the cached arrays."""
    settings = {
        "format": CACHE_FORMAT,
        "preprocessing": prep.to_dict(),
        "crop_margin": crop_margin,
        "geometry_tolerance": tolerance,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _source_stamp(path: Path) -> List[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _entry_path(folder: Path, pair: CasePair) -> Path:
    ident = hashlib.sha256(str(pair.image.resolve()).encode()).hexdigest()[:8]
    return folder / f"{pair.name}-{ident}.json"


def resample_labels(labels: np.ndarray, shape: Sequence[int], num_labels: int = 3) -> np.ndarray:
    """Labels on a new grid of the same extent: trilinear one-hot maps (align_corners=False), argmax.

    Class by class, keeping the running best, so memory stays at two float copies of the volume.
    """
    source = torch.from_numpy(np.ascontiguousarray(labels))
    best_value = best_label = None
    for value in range(num_labels):
        onehot = (source == value).to(torch.float32)[None, None]
        prob = F.interpolate(
            onehot, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False
        )[0, 0]
        if best_value is None:
            best_value, best_label = prob, torch.zeros(prob.shape, dtype=torch.uint8)
        else:
            better = prob > best_value
            best_value = torch.where(better, prob, best_value)
            best_label[better] = value
    return best_label.numpy()


def preprocess_pair(
    pair: CasePair, prep: Preprocessing, crop_margin: int, tolerance: float
) -> Tuple[Optional[Dict[str, Any]], str]:
    """Read, check, crop and resample one pair.

    Returns:
        (arrays and geometry, "") or (None, the reason the pair is unusable).
    """
    from MPUNetCore.volume_io import VolumeError, read_label_map, read_volume

    try:
        image = read_volume(pair.image)
        label = read_label_map(pair.label, allowed_labels=(0, 1, 2))
    except (VolumeError, OSError) as error:
        return None, str(error)
    problem = check_geometry(image, label, tolerance)
    if problem:
        return None, problem
    slices = np.flatnonzero(label.array.reshape(label.array.shape[0], -1).any(axis=1))
    if slices.size == 0:
        return None, "the label map holds no liver (no label 1 or 2)"
    sz = image.spacing[2]
    margin = (
        crop_margin + 1
        if prep.slice_spacing is None
        else math.ceil(crop_margin * prep.slice_spacing / sz) + 1
    )
    z0, z1 = max(0, int(slices[0]) - margin), min(image.shape[0], int(slices[-1]) + 1 + margin)
    net_image, transform = to_network_space(image.array[z0:z1], image.spacing, prep)
    net_label = resample_labels(label.array[z0:z1], transform.network_shape)
    inside = np.flatnonzero(net_label.reshape(net_label.shape[0], -1).any(axis=1))
    if inside.size == 0:
        return None, "the liver vanishes on the network grid (too small for the preprocessing spacing)"
    k0 = max(0, int(inside[0]) - crop_margin)
    k1 = min(net_label.shape[0], int(inside[-1]) + 1 + crop_margin)
    return {
        "image": net_image.numpy()[k0:k1].astype(np.float32, copy=False),
        "label": net_label[k0:k1],
        "spacing": tuple(float(s) for s in transform.network_spacing),
        "source_spacing": tuple(image.spacing),
        "source_shape": tuple(image.shape),
    }, ""


def _foreground_points(label: np.ndarray, seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, mask in (("liver", label >= 1), ("tumor", label == 2)):
        points = np.argwhere(mask).astype(np.int32)
        if len(points) > MAX_FOREGROUND_POINTS:
            points = points[np.sort(rng.choice(len(points), MAX_FOREGROUND_POINTS, replace=False))]
        out[name] = points
    return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        np.save(tmp, array)


def cache_case(
    pair: CasePair, folder: Path, prep: Preprocessing, crop_margin: int, tolerance: float
) -> CachedCase:
    """The cached case for `pair`, computing and writing it unless a current entry exists."""
    entry_path = _entry_path(folder, pair)
    stamps = {"image": _source_stamp(pair.image), "label": _source_stamp(pair.label)}
    if entry_path.exists():
        entry = json.loads(entry_path.read_text(encoding="utf-8"))
        if entry.get("stamps") == stamps and entry.get("image_source") == str(pair.image):
            return _case_from_entry(entry_path, entry)
    result, reason = preprocess_pair(pair, prep, crop_margin, tolerance)
    entry: Dict[str, Any] = {
        "name": pair.name,
        "image_source": str(pair.image),
        "label_source": str(pair.label),
        "stamps": stamps,
        "status": "bad" if result is None else "ok",
        "reason": reason,
    }
    if result is not None:
        stem = entry_path.stem
        entry.update(
            image_file=f"{stem}.image.npy",
            label_file=f"{stem}.label.npy",
            shape=list(result["image"].shape),
            spacing=list(result["spacing"]),
            source_spacing=list(result["source_spacing"]),
            source_shape=list(result["source_shape"]),
        )
        _save_npy(folder / entry["image_file"], result["image"])
        _save_npy(folder / entry["label_file"], result["label"])
        with atomic_output(folder / f"{stem}.fg.npz", overwrite=True) as tmp:
            np.savez(tmp, **_foreground_points(result["label"]))
    with atomic_output(entry_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(entry, indent=1), encoding="utf-8")
    return _case_from_entry(entry_path, entry)


def _case_from_entry(path: Path, entry: Dict[str, Any]) -> CachedCase:
    return CachedCase(
        name=entry["name"],
        entry=path,
        status=entry["status"],
        reason=entry.get("reason", ""),
        shape=tuple(entry.get("shape", (0, 0, 0))),
        spacing=tuple(entry.get("spacing", (1.0, 1.0, 1.0))),
        image_file=entry.get("image_file", ""),
        label_file=entry.get("label_file", ""),
    )


def build_cache(
    pairs: Sequence[CasePair],
    cache_dir: Path,
    prep: Preprocessing,
    crop_margin: int,
    tolerance: float,
    progress: Optional[Callable[[int, int], None]] = None,
    rank: int = 0,
    world: int = 1,
) -> Tuple[Path, List[CachedCase]]:
    """Preprocess the pairs this process is responsible for (every `world`-th one from `rank`).

    Returns:
        (the cache folder for these settings, the cached cases of this process).
    """
    folder = Path(cache_dir) / cache_key(prep, crop_margin, tolerance)
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "settings.json"
    if rank == 0 and not settings.exists():
        record = {
            "format": CACHE_FORMAT,
            "preprocessing": prep.to_dict(),
            "crop_margin": crop_margin,
            "geometry_tolerance": tolerance,
        }
        with atomic_output(settings, overwrite=True) as tmp:
            tmp.write_text(json.dumps(record, indent=2), encoding="utf-8")
    mine = list(pairs)[rank::world]
    cases = []
    for done, pair in enumerate(mine, 1):
        cases.append(cache_case(pair, folder, prep, crop_margin, tolerance))
        if progress is not None:
            progress(done, len(mine))
    return folder, cases


def load_cached(pairs: Sequence[CasePair], folder: Path) -> List[CachedCase]:
    """The cached cases of `pairs` from a filled cache folder (after `build_cache` on every rank)."""
    cases = []
    for pair in pairs:
        path = _entry_path(folder, pair)
        if not path.exists():
            raise RuntimeError(f"cache entry {path} is missing: was the cache built for these settings?")
        cases.append(_case_from_entry(path, json.loads(path.read_text(encoding="utf-8"))))
    return cases
