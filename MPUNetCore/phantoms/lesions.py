"""Liver tumours: 0-15 per case, 3-80 mm across, hypo- or hyperenhancing, rim-enhancing, cysts, necrosis."""

from __future__ import annotations

from typing import Optional

import numpy as np

from .appearance import LIVER_CODES, TUMOR_CODES, T
from .shapes import Grid, Wobble

KINDS = ("tumor_hypo", "tumor_hyper", "tumor_rim", "tumor_cyst")
KIND_P = (0.5, 0.2, 0.2, 0.1)


def draw_count(rng: np.random.Generator) -> int:
    """Number of tumours: none in about 1 case in 6, otherwise 1-15 (mostly a few)."""
    return 0 if rng.random() < 0.17 else int(min(15, rng.geometric(0.25)))


def draw_tumors(
    g: Grid, rng: np.random.Generator, P: dict, n: int, min_diameter: Optional[float] = None
) -> int:
    """Place ``n`` tumours centred on random liver voxels; returns how many were painted.

    Diameters are log-uniform in 3-80 mm (at least ``min_diameter`` mm, e.g. two voxels of the output).
    About a quarter of them may bulge out of the liver surface (exophytic); all voxels are LiTS label 2.
    """
    s = P["s"]
    zz, yy, xx = np.nonzero(g.tissue == T["liver"])
    placed = 0
    if not zz.size:
        return 0
    inside = LIVER_CODES + TUMOR_CODES
    for _ in range(n):
        k = int(rng.integers(zz.size))
        centre = (float(g.u[xx[k]]), float(g.v[yy[k]]), float(g.w[zz[k]]))
        diameter = float(np.exp(rng.uniform(np.log(3), np.log(80)))) * s
        if min_diameter:
            diameter = max(diameter, min_diameter)
        radii = diameter / 2 * rng.uniform(0.8, 1.2, 3)
        kind = KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
        over = inside + ((T["visceral_fat"],) if rng.random() < 0.25 else ())
        wobble = Wobble(rng, 0.1 if kind != "tumor_cyst" else 0.03, 1.5 * diameter)
        if g.blob(centre, radii, T[kind], over, wobble, angle=rng.uniform(0, 3)) is None:
            continue
        placed += 1
        if kind == "tumor_rim":  # an enhancing ring around a hypodense centre
            g.blob(centre, radii * rng.uniform(0.55, 0.8), T["tumor_hypo"], (T["tumor_rim"],), wobble)
        if kind != "tumor_cyst" and diameter > 25 * s and rng.random() < 0.6:
            core = radii * rng.uniform(0.3, 0.6)
            g.blob(centre, core, T["tumor_necrosis"], TUMOR_CODES, Wobble(rng, 0.15, diameter))
    return placed
