"""The trunk of a phantom: body wall, skin, arms, table, spine, ribs, great vessels, lungs, heart.

All lengths are millimetres already multiplied by the patient's scale; ``P`` is the dictionary of
patient parameters drawn in :mod:`.geometry` (its keys are documented there).
"""

from __future__ import annotations

import numpy as np

from .appearance import T
from .shapes import Grid, Wobble

SOFT = (T["visceral_fat"],)


def _ellipse(U, V, a, b_ant, b_post):
    """Elliptic radius (1 on the outline) with a flatter back: ``b_post`` applies posteriorly."""
    return np.sqrt((U / a) ** 2 + (V / np.where(V < 0, b_ant, b_post)) ** 2)


def body_profile(w: np.ndarray, P: dict) -> np.ndarray:
    """Relative width of the trunk per slice: broader chest and pelvis, a narrower waist."""
    chest = 0.03 * np.tanh(w / 80)
    pelvis = 0.05 * np.exp(-(((w + 2.2 * P["H"]) / 100) ** 2))
    return (1 + chest + pelvis + 0.02 * np.sin(w / 150 + P["phase"])).astype(np.float32)


def draw_body(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Skin, subcutaneous fat, muscle wall and the abdominal cavity (visceral fat), slice by slice."""
    U, V = g.plane()
    wob = Wobble(rng, 0.025, 150 * P["s"])(U, V, 0)
    prof = body_profile(g.w, P)[:, None, None]
    A, B, Bp, tf, tm = P["A"], P["B"], P["Bp"], P["tf"], P["tm"]
    layers = (
        ((A, B, Bp), "skin"),
        ((A - P["skin"], B - P["skin"], Bp - P["skin"]), "fat"),
        ((A - tf, B - tf, Bp - 0.6 * tf), "muscle"),
        ((A - tf - tm, B - tf - tm, Bp - 0.6 * tf - tm), "visceral_fat"),
    )
    for (a, b, bp), name in layers:
        inside = (_ellipse(U, V, a, b, bp) + wob)[None] < prof
        g.tissue[inside] = T[name]


def dome(g: Grid, P: dict) -> np.ndarray:
    """Height ``w`` (mm) of the diaphragm per axial position ``(y, x)``: a high right and a lower left dome.

    The posterior recesses reach further down, so lung lies behind the liver on its upper slices.
    """
    U, V = g.plane()
    A, B, H = P["Ac"], P["Bc"], P["H"]
    fall = np.where(V > 0, 1.1 * H * (V / P["Bcp"]) ** 2, 0.35 * H * (V / B) ** 2)
    right = -0.7 * H * ((U + 0.4 * A) / A) ** 2 - fall
    left = -P["left_dome"] - 0.7 * H * ((U - 0.45 * A) / A) ** 2 - fall
    return np.maximum(right, left).astype(np.float32)


def draw_thorax(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Lungs above the diaphragm, the heart on the left dome, mediastinal fat."""
    top = dome(g, P)
    thorax = (g.w[:, None, None] > top[None] + 3 * P["s"]) & (g.tissue == T["visceral_fat"])
    g.tissue[thorax] = T["lung"]
    s, Ac, Bc = P["s"], P["Ac"], P["Bc"]
    centre = (0.15 * Ac, -0.25 * Bc, rng.uniform(55, 75) * s)
    radii = np.array([0.42 * Ac, 0.5 * Bc, 75 * s]) * rng.uniform(0.9, 1.1)
    g.blob(centre, radii, T["heart"], (T["lung"],), angle=-0.5)
    g.blob(centre, radii * 0.72, T["blood_pool"], (T["heart"],), angle=-0.5)
    mediastinum = ((g.u[None, :] / (0.17 * Ac)) ** 2 + ((g.v[:, None] - 0.25 * Bc) / (0.5 * Bc)) ** 2) < 1
    g.column(mediastinum, g.w > 20 * s, T["visceral_fat"], (T["lung"],))


def draw_recesses(g: Grid, P: dict) -> None:
    """The lung's costophrenic recesses: lung between the liver and the cavity wall, laterally and behind.

    Near the wall the diaphragm's attachment runs far below its dome, so on the slices where the liver
    is largest a crescent of lung still separates it from the ribs (the real 3-slice CT shows one around
    its right lobe). ``P['recess']`` (mm) is how far below the dome the crescent reaches at the wall; the
    crescent narrows downwards. Drawn after the liver, over liver, its vessels and visceral fat.
    """
    depth = P.get("recess", 0.0)
    if depth <= 0:
        return
    U, V = g.plane()
    radius = np.sqrt((U / P["Ac"]) ** 2 + (V / np.where(V > 0, P["Bcp"], P["Bc"])) ** 2)
    band = np.clip((radius - 0.72) / 0.28, 0, 1) * (V > -0.3 * P["Bc"])  # not at the anterior wall
    top = dome(g, P)
    w = g.w[:, None, None]
    inside = (band > 0)[None] & (w > (top - depth * band)[None]) & (w <= top[None] + 3 * P["s"])
    carve = np.isin(g.tissue, (T["liver"], T["portal_vein"], T["hepatic_vein"], T["visceral_fat"]))
    g.tissue[inside & carve] = T["lung"]


def draw_spine(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Vertebrae (cortical shell, cancellous core, discs, posterior arch), spinal canal, back muscles."""
    s = P["s"]
    U, V = g.plane()
    everywhere = np.ones(g.shape[0], bool)
    Rv, vb = P["Rv"], P["vb"]
    canal = vb + Rv + 11 * s
    period = rng.uniform(28, 34) * s
    vertebra = ((g.w + rng.uniform(0, period)) % period) > 0.22 * period
    for side in (-1, 1):
        back = ((U - side * 34 * s) / (26 * s)) ** 2 + ((V - canal - 15 * s) / (24 * s)) ** 2 < 1
        g.column(back, everywhere, T["muscle"])
        psoas = ((U - side * (Rv + 18 * s)) / (17 * s)) ** 2 + ((V - vb) / (15 * s)) ** 2 < 1
        g.column(psoas, g.w < -0.75 * P["H"], T["muscle"])
        crus = ((U - side * (Rv + 4 * s)) / (6 * s)) ** 2 + ((V - vb + Rv) / (12 * s)) ** 2 < 1
        g.column(crus, (g.w < -0.1 * P["H"]) & (g.w > -0.7 * P["H"]), T["muscle"], (T["visceral_fat"],))
    r = np.sqrt((U / (1.1 * Rv)) ** 2 + ((V - vb) / Rv) ** 2)
    g.column(r < 1, vertebra, T["cortical_bone"])
    g.column(r < 0.82, vertebra, T["cancellous_bone"])
    g.column(r < 1, ~vertebra, T["disc"])
    arch = np.sqrt(U**2 + (V - canal) ** 2)
    spinous = (U / (5 * s)) ** 2 + ((V - canal - 25 * s) / (15 * s)) ** 2 < 1
    transverse = ((np.abs(U) - 25 * s) / (15 * s)) ** 2 + ((V - canal + 3 * s) / (5 * s)) ** 2 < 1
    g.column(((arch < 15 * s) | spinous | transverse) & (arch >= 8 * s), vertebra, T["cortical_bone"])
    g.column(arch < 8 * s, everywhere, T["csf"])


def draw_great_vessels(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Aorta (left of the spine, into the chest behind the heart) and IVC (right, into the liver's groove)."""
    s, Rv, vb = P["s"], P["Rv"], P["vb"]
    U, V = g.plane()
    ra = rng.uniform(9, 13) * s
    aorta = (U - 14 * s) ** 2 + (V - (vb - Rv - ra - 2 * s)) ** 2 < ra**2
    g.column(aorta, g.w > -P["H"] - 170 * s, T["aorta"])
    for side in (-1, 1):  # common iliac arteries below the bifurcation
        iliac = (U - side * 30 * s) ** 2 + (V - (vb - Rv - 8 * s)) ** 2 < (0.65 * ra) ** 2
        g.column(iliac, g.w <= -P["H"] - 170 * s, T["aorta"])
    ivc = ((U - P["ivc_u"]) / (13 * s)) ** 2 + ((V - P["ivc_v"]) / (10 * s)) ** 2 < 1
    g.column(ivc, g.w < 15 * s, T["ivc"])


def draw_ribs(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Ribs: oblique bands on a ring inside the muscle wall, descending towards the front."""
    s = P["s"]
    U, V = g.plane()
    a = P["Ac"] + 0.5 * P["tm"]
    b = np.where(V < 0, P["Bc"], P["Bcp"]) + 0.5 * P["tm"]
    radial = (np.sqrt((U / a) ** 2 + (V / b) ** 2) - 1) * (a + b) / 2
    angle = np.arctan2(np.abs(U), V)  # 0 at the spine, pi at the front
    ring = (np.abs(radial) < 5 * s) & (angle > 0.3) & (angle < 2.4)
    ys, xs = np.nonzero(ring)
    if not ys.size:
        return
    pitch, slope, half = rng.uniform(30, 38) * s, rng.uniform(0.3, 0.5), rng.uniform(5, 7) * s
    arc = angle[ys, xs] * 110 * s
    height = g.w[:, None] + slope * arc[None, :]
    phase = (height + rng.uniform(0, pitch)) % pitch
    dist = np.sqrt(((phase - pitch / 2) / half) ** 2 + (radial[ys, xs] / (5 * s))[None, :] ** 2)
    present = (dist < 1) & (height > -0.75 * P["H"]) & (height < 400 * s)
    zs, ks = np.nonzero(present)
    g.tissue[zs, ys[ks], xs[ks]] = np.where(dist[zs, ks] > 0.6, T["cortical_bone"], T["cancellous_bone"])


def draw_arms_and_table(g: Grid, rng: np.random.Generator, P: dict) -> None:
    """Arms down beside the trunk (sometimes) and the patient table under the back (usually)."""
    s = P["s"]
    U, V = g.plane()
    if P["arms_down"]:
        ra = rng.uniform(38, 50) * s
        for side in (-1, 1):
            cu = side * (P["A"] + ra + rng.uniform(5, 25) * s)
            cv = rng.uniform(-0.1, 0.3) * P["B"]
            r = np.sqrt((U - cu) ** 2 + (V - cv) ** 2)
            for radius, name in ((ra, "skin"), (ra - 2 * s, "fat"), (0.75 * ra, "muscle")):
                g.column(r < radius, np.ones(g.shape[0], bool), T[name], (T["air"], T["skin"], T["fat"]))
            bone = np.sqrt((U - cu + side * 0.1 * ra) ** 2 + (V - cv) ** 2)
            g.column(bone < 11 * s, np.ones(g.shape[0], bool), T["cortical_bone"], (T["muscle"],))
            g.column(bone < 7 * s, np.ones(g.shape[0], bool), T["fat"], (T["cortical_bone"],))
    if P["table"]:
        top = P["Bp"] + P["table_gap"]
        radius = rng.uniform(600, 1200) * s
        depth = V - (top + radius - np.sqrt(np.maximum(radius**2 - U**2, 0)))
        width = np.abs(U) < rng.uniform(200, 240) * s
        g.column(
            width & (depth >= 0) & (depth < P["table_shell"]),
            np.ones(g.shape[0], bool),
            T["table"],
            (T["air"],),
        )
        foam = width & (depth >= P["table_shell"]) & (depth < P["table_shell"] + 25 * s)
        g.column(foam, np.ones(g.shape[0], bool), T["table_foam"], (T["air"],))
        g.column(width & (depth >= P["table_shell"] + 25 * s) & (depth < 2 * P["table_shell"] + 25 * s),
                 np.ones(g.shape[0], bool), T["table"], (T["air"],))  # fmt: skip
