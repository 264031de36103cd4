"""Finding image/label pairs (LiTS naming, Medical Segmentation Decathlon layout), checking them, splitting.

LiTS: `volume-N.nii[.gz]` with `segmentation-N.nii[.gz]` anywhere under the root (the official
download has them in "Training Batch 1/2" folders). MSD: `imagesTr/X.nii.gz` with `labelsTr/X.nii.gz`
(macOS `._*` files from the MSD archives are ignored).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from MPUNetCore.fileutils import atomic_output

_LITS = re.compile(r"^(volume|segmentation)-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
_NIFTI = re.compile(r"^(?!\._)(.+)\.nii(\.gz)?$", re.IGNORECASE)
SPLIT_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class CasePair:
    """One training case: a name, its CT and its label map."""

    name: str
    image: Path
    label: Path


def detect_layout(root: Path) -> str:
    """'msd' when `root` holds imagesTr/, 'lits' when it holds volume-N files; ValueError otherwise."""
    if (root / "imagesTr").is_dir():
        return "msd"
    if any(_LITS.match(p.name) for p in root.rglob("volume-*")):
        return "lits"
    raise ValueError(
        f"{root} holds neither the LiTS naming (volume-N.nii.gz with segmentation-N.nii.gz) nor the "
        "Medical Segmentation Decathlon layout (imagesTr/ and labelsTr/); point data.root at one of them"
    )


def discover_pairs(root: Union[str, Path], layout: str = "auto") -> Tuple[List[CasePair], List[str]]:
    """All image/label pairs under `root`, and a list of problems (unpaired or duplicate files).

    Args:
        root: the data folder.
        layout: "auto", "lits" or "msd".

    Returns:
        (pairs sorted by name (LiTS by number), problems as readable sentences).

    Raises:
        FileNotFoundError: `root` does not exist.
        ValueError: an unknown layout, or nothing that looks like either layout.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "lits":
        pairs, problems = _lits_pairs(root)
    elif layout == "msd":
        pairs, problems = _msd_pairs(root)
    else:
        raise ValueError(f"data layout must be auto, lits or msd, not {layout!r}")
    if not pairs:
        raise ValueError(f"no image/label pair found in {root} ({layout} layout); problems: {problems}")
    return pairs, problems


def _lits_pairs(root: Path) -> Tuple[List[CasePair], List[str]]:
    found: Dict[str, Dict[int, List[Path]]] = {"volume": {}, "segmentation": {}}
    for path in sorted(root.rglob("*")):
        match = _LITS.match(path.name)
        if match and path.is_file():
            found[match.group(1).lower()].setdefault(int(match.group(2)), []).append(path)
    problems, pairs = [], []
    for number in sorted(set(found["volume"]) | set(found["segmentation"])):
        volumes, labels = found["volume"].get(number, []), found["segmentation"].get(number, [])
        if len(volumes) > 1 or len(labels) > 1:
            problems.append(
                f"case {number}: several files ({', '.join(map(str, volumes + labels))}); skipped"
            )
        elif not labels:
            problems.append(f"{volumes[0]} has no segmentation-{number}.nii[.gz]; skipped")
        elif not volumes:
            problems.append(f"{labels[0]} has no volume-{number}.nii[.gz]; skipped")
        else:
            pairs.append(CasePair(f"volume-{number}", volumes[0], labels[0]))
    return pairs, problems


def _msd_pairs(root: Path) -> Tuple[List[CasePair], List[str]]:
    label_dir = root / "labelsTr"
    if not label_dir.is_dir():
        raise ValueError(f"{root} has imagesTr/ but no labelsTr/: the MSD layout needs both")

    def niftis(folder: Path) -> Dict[str, Path]:
        out = {}
        for path in sorted(folder.iterdir()):
            match = _NIFTI.match(path.name)
            if match and path.is_file():
                out[match.group(1)] = path
        return out

    images, labels = niftis(root / "imagesTr"), niftis(label_dir)
    problems = [
        f"{images[n]} has no label in {label_dir}; skipped" for n in sorted(set(images) - set(labels))
    ]
    problems += [f"{labels[n]} has no image in imagesTr/; skipped" for n in sorted(set(labels) - set(images))]
    pairs = [CasePair(n, images[n], labels[n]) for n in sorted(set(images) & set(labels))]
    return pairs, problems


def check_geometry(image, label, tolerance: float) -> Optional[str]:
    """Why an image/label pair (two `Volume`s) does not share one grid, or None when it does."""
    if image.shape != label.shape:
        return f"image size {image.size} differs from label size {label.size} (x, y, z)"
    for what in ("spacing", "origin"):
        a, b = np.asarray(getattr(image, what)), np.asarray(getattr(label, what))
        if np.max(np.abs(a - b)) > tolerance:
            shown = [", ".join(f"{v:.4g}" for v in x) for x in (a, b)]
            return f"image {what} ({shown[0]}) differs from label {what} ({shown[1]}) by > {tolerance} mm"
    if np.max(np.abs(np.asarray(image.direction) - np.asarray(label.direction))) > 1e-4:
        return "image and label have different orientations (direction cosines)"
    return None


def split_cases(names: Sequence[str], sizes: Sequence[float], seed: int) -> Dict[str, List[str]]:
    """A seeded random split of `names` into train/val/test in proportion to `sizes`.

    Validation and test get `round(n * fraction)` cases (at least one validation case when there are
    two or more cases), training gets the rest. The same names, sizes and seed give the same split.

    Args:
        names: case names (their order does not matter: they are sorted first).
        sizes: relative sizes (train, val, test), e.g. the paper's (88, 22, 20).
        seed: the split seed.

    Returns:
        `{"train": [...], "val": [...], "test": [...]}`, each sorted.
    """
    names = sorted(names)
    n = len(names)
    if n < 2:
        raise ValueError(f"{n} usable case(s): a split needs at least 2 (one to train, one to validate)")
    fractions = np.asarray(sizes, dtype=float) / float(np.sum(sizes))
    n_val = max(1, int(round(n * fractions[1])))
    n_test = int(round(n * fractions[2]))
    if n_val + n_test >= n:
        n_test = max(0, n - n_val - 1)
    order = np.random.default_rng(seed).permutation(n)
    picked = [names[i] for i in order]
    val, test = picked[:n_val], picked[n_val : n_val + n_test]
    train = picked[n_val + n_test :]
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def save_split(
    path: Union[str, Path],
    split: Dict[str, List[str]],
    pairs: Sequence[CasePair],
    seed: int,
    sizes: Sequence[float],
) -> Path:
    """Write split.json: the three lists, how they were drawn, and each case's files."""
    used = {n for part in SPLIT_PARTS for n in split[part]}
    record = {
        "seed": seed,
        "sizes": list(sizes),
        **{part: split[part] for part in SPLIT_PARTS},
        "cases": {p.name: {"image": str(p.image), "label": str(p.label)} for p in pairs if p.name in used},
    }
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def load_split(path: Union[str, Path]) -> Dict:
    """Read a split.json written by `save_split`; ValueError names what is wrong."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read the split {path}: {error}") from None
    missing = [k for k in (*SPLIT_PARTS, "cases") if k not in record]
    if missing:
        raise ValueError(f"{path} is not a split file (missing {', '.join(missing)})")
    return record
