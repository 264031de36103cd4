"""The liver's neighbours in the abdomen: spleen, stomach, kidneys, pancreas, colon and small bowel."""

from __future__ import annotations

import numpy as np

from .appearance import T
from .shapes import Grid, Wobble, tube

ABDOMEN = (T["visceral_fat"],)


def draw_spleen(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """A crescent on the patient's left, posterior-lateral under the left dome."""
    s = P["s"]
    centre = (0.68 * P["Ac"], 0.3 * P["Bcp"], -P["left_dome"] - rng.uniform(50, 75) * s)
    radii = np.array([22, 55, 55]) * s * rng.uniform(0.75, 1.3, 3)
    g.blob(centre, radii, T["spleen"], ABDOMEN, Wobble(rng, 0.1, 50 * s), angle=-0.75)
    hilum = (centre[0] - 0.9 * radii[0], centre[1] - 0.2 * radii[1], centre[2])
    g.blob(hilum, radii * (0.7, 0.45, 0.55), T["visceral_fat"], (T["spleen"],), angle=-0.75)


def draw_stomach(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Fundus under the left dome down to the antrum across the midline; gas above fluid (supine)."""
    s, A, B, H = P["s"], P["Ac"], P["Bc"], P["H"]
    top = -P["left_dome"] - 25 * s
    path = [(0.42 * A, -0.05 * B, top), (0.4 * A, -0.35 * B, top - 0.35 * H),
            (0.15 * A, -0.6 * B, top - 0.6 * H), (-0.12 * A, -0.55 * B, top - 0.55 * H)]  # fmt: skip
    path = [np.add(p, rng.normal(0, 6 * s, 3)) for p in path]
    radii = np.array([40, 35, 25, 15]) * s * rng.uniform(0.6, 1.2)
    over = ABDOMEN + (T["bowel_wall"], T["bowel_content"])
    tube(g, path, radii, T["stomach_wall"], over)
    wall = rng.uniform(3, 6) * s
    tube(g, path, np.maximum(radii - wall, 1), T["stomach_fluid"], (T["stomach_wall"],))
    level = -0.05 * B - rng.uniform(-0.2, 0.7) * radii[0]  # gas-fluid level (v), anterior is up
    box = g.box((0.2 * A, -0.3 * B, top - 0.3 * H), (0.5 * A, 0.6 * B, 0.6 * H))
    if box is not None:
        gas = (g.tissue[box] == T["stomach_fluid"]) & (g.v[box[1]][None, :, None] < level)
        g.tissue[box][gas] = T["gas"]


def draw_kidneys(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Kidneys beside the spine (the right one lower), cortex, medulla and renal pelvis."""
    s, H = P["s"], P["H"]
    for side, top in ((-1, -0.6 * H), (1, -0.45 * H)):
        if rng.random() < 0.03:
            continue  # a missing kidney (nephrectomy) happens
        radii = np.array([27, 30, 55]) * s * rng.uniform(0.85, 1.15)
        centre = (side * (P["Rv"] + 48 * s), P["vb"] + 8 * s, top - radii[2] - rng.uniform(0, 30) * s)
        angle = side * 0.6
        over = ABDOMEN + (T["muscle"],)
        shape = Wobble(rng, 0.06, 40 * s)
        if g.blob(centre, radii, T["kidney_cortex"], over, shape, angle=angle) is None:
            continue
        g.blob(centre, radii * (0.65, 0.65, 0.8), T["kidney_medulla"], (T["kidney_cortex"],), angle=angle)
        sinus = (centre[0] - side * 0.4 * radii[0], centre[1] - 0.35 * radii[1], centre[2])
        g.blob(sinus, radii * (0.35, 0.3, 0.45), T["renal_pelvis"], (T["kidney_medulla"], T["kidney_cortex"]))


def draw_pancreas(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Head by the duodenum (right), neck in front of the portal trunk, tail to the splenic hilum."""
    s, A, B, H = P["s"], P["Ac"], P["Bc"], P["H"]
    w0 = -0.85 * H - rng.uniform(0, 20) * s
    path = [(-0.22 * A, -0.15 * B, w0 - 25 * s), (-0.05 * A, -0.32 * B, w0),
            (0.3 * A, -0.05 * B, w0 + 15 * s), (0.55 * A, 0.2 * P["Bcp"], w0 + 35 * s)]  # fmt: skip
    path = [np.add(p, rng.normal(0, 5 * s, 3)) for p in path]
    radii = np.array([16, 11, 10, 8]) * s * rng.uniform(0.8, 1.2)
    tube(g, path, radii, T["pancreas"], ABDOMEN)


def _loop(
    g: Grid, rng: np.random.Generator, start, radius: float, steps: int, step: float, bounds, P: dict
) -> None:
    """A bowel loop: a random walk inside ``bounds`` with wall, content and sometimes gas."""
    points = [np.asarray(start, float)]
    direction = rng.normal(size=3)
    for _ in range(steps):
        direction = direction / np.linalg.norm(direction) + rng.normal(0, 0.7, 3)
        nxt = np.clip(points[-1] + step * direction / np.linalg.norm(direction), bounds[0], bounds[1])
        points.append(nxt)
    radii = np.full(len(points), radius)
    over = ABDOMEN
    tube(g, points, radii, T["bowel_wall"], over)
    content = T["gas"] if rng.random() < 0.3 else T["bowel_content"]
    tube(g, points, radii - 2.5 * P["s"], content, (T["bowel_wall"],))


def draw_bowel(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Colon frame (ascending, hepatic flexure under the liver, transverse, descending) and small bowel."""
    s, A, B, H = P["s"], P["Ac"], P["Bc"], P["H"]
    flex = -P["liver_scale"] * H - rng.uniform(-20, 20) * s
    rc = rng.uniform(18, 28) * s
    colon = [(-0.7 * A, 0.05 * B, flex - 250 * s), (-0.68 * A, -0.1 * B, flex - 20 * s),
             (-0.45 * A, -0.6 * B, flex + 10 * s), (0.0, -0.75 * B, flex - 30 * s),
             (0.5 * A, -0.55 * B, flex + 30 * s), (0.72 * A, 0.05 * B, flex + 20 * s),
             (0.72 * A, 0.1 * B, flex - 250 * s)]  # fmt: skip
    colon = [np.add(p, rng.normal(0, 8 * s, 3)) for p in colon]
    tube(g, colon, np.full(len(colon), rc), T["bowel_wall"], ABDOMEN)
    tube(g, colon, np.full(len(colon), rc - 3 * s), T["bowel_content"], (T["bowel_wall"],))
    box = g.box((0, 0, flex - 100 * s), (A, B, 200 * s))
    if box is not None:  # gas rises to the front of the colon's content
        content = g.tissue[box] == T["bowel_content"]
        front = g.v[box[1]][None, :, None] < rng.uniform(-0.8, -0.4) * B
        g.tissue[box][content & front] = T["gas"]
    lo = np.array([-0.75 * A, -0.85 * B, flex - 300 * s])
    hi = np.array([0.75 * A, 0.4 * B, flex + 30 * s])
    for _ in range(int(rng.integers(20, 34))):
        _loop(g, rng, rng.uniform(lo, hi), rng.uniform(9, 18) * s, 8, 25 * s, (lo, hi), P)
