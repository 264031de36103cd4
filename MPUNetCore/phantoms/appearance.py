"""Tissue codes and their CT numbers (HU) per contrast phase, drawn per case from published ranges.

The ranges are typical adult values from standard radiology references, rounded outward a little:
unenhanced soft tissue, fat, blood and bone from Lamba et al., "CT Hounsfield numbers of soft tissues on
unenhanced abdominal CT scans", AJR 2014;203:1013-1020, and the Radiopaedia article "Hounsfield unit";
enhancement per phase (late arterial ~35 s, portal venous ~70 s, delayed ~3-5 min) from Bae,
"Intravenous contrast medium administration and scan timing at CT", Radiology 2010;256:32-61, and the
liver-lesion enhancement patterns of the LI-RADS CT/MRI atlas (hypervascular lesions with arterial
hyperenhancement and portal-venous washout; hypovascular metastases, some with rim enhancement).
Fatty livers are drawn in about 1 case in 8 (unenhanced liver below 40 HU, Kodama et al., AJR 2007).
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

#: Tissue codes of the simulation grid (uint8).
TISSUES: Dict[str, int] = {
    "air": 0, "fat": 1, "skin": 2, "muscle": 3, "visceral_fat": 4, "bowel_wall": 5, "bowel_content": 6,
    "gas": 7, "lung": 8, "heart": 9, "blood_pool": 10, "cortical_bone": 11, "cancellous_bone": 12,
    "disc": 13, "csf": 14, "aorta": 15, "ivc": 16, "portal_vein": 17, "hepatic_vein": 18,
    "kidney_cortex": 19, "kidney_medulla": 20, "spleen": 21, "stomach_wall": 22, "stomach_fluid": 23,
    "pancreas": 24, "gallbladder": 25, "liver": 26, "table": 27, "table_foam": 28, "renal_pelvis": 29,
    "portal_trunk": 30, "tumor_hypo": 31, "tumor_hyper": 32, "tumor_rim": 33, "tumor_necrosis": 34,
    "tumor_cyst": 35,
}  # fmt: skip
T = TISSUES
LIVER_CODES = (T["liver"], T["portal_vein"], T["hepatic_vein"])  # LiTS label 1 (its vessels included)
TUMOR_CODES = tuple(v for k, v in TISSUES.items() if k.startswith("tumor"))  # LiTS label 2
PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")

# (low, high) HU per tissue and phase: non-contrast, arterial, portal venous, delayed.
_R = Tuple[float, float]
HU_RANGES: Dict[str, Tuple[_R, _R, _R, _R]] = {
    "fat": ((-120, -80),) * 4,
    "visceral_fat": ((-115, -75),) * 4,
    "skin": ((20, 60), (30, 70), (40, 80), (35, 75)),
    "muscle": ((35, 60), (45, 70), (50, 75), (45, 70)),
    "bowel_wall": ((25, 45), (50, 110), (60, 110), (50, 90)),
    "bowel_content": ((-20, 40),) * 4,
    "gas": ((-1000, -900),) * 4,
    "lung": ((-900, -700),) * 4,
    "heart": ((35, 55), (80, 130), (90, 140), (70, 110)),  # myocardium
    "blood_pool": ((35, 55), (200, 400), (140, 220), (100, 150)),  # cardiac chambers
    "cortical_bone": ((700, 1400),) * 4,
    "cancellous_bone": ((150, 400),) * 4,
    "disc": ((60, 110),) * 4,
    "csf": ((0, 20),) * 4,
    "aorta": ((35, 55), (250, 450), (140, 220), (100, 150)),
    "ivc": ((35, 55), (60, 150), (120, 190), (100, 150)),
    "portal_vein": ((35, 55), (80, 160), (150, 230), (110, 160)),
    "hepatic_vein": ((35, 55), (40, 80), (140, 210), (110, 160)),
    "portal_trunk": ((35, 55), (80, 160), (150, 230), (110, 160)),  # outside the liver: not labelled
    "kidney_cortex": ((25, 45), (140, 240), (150, 230), (110, 190)),
    "kidney_medulla": ((25, 45), (60, 100), (140, 220), (120, 200)),
    "renal_pelvis": ((0, 20), (0, 25), (0, 40), (200, 800)),  # excreted contrast when delayed
    "spleen": ((40, 55), (100, 170), (110, 150), (90, 120)),
    "stomach_wall": ((30, 50), (60, 120), (70, 120), (60, 100)),
    "stomach_fluid": ((-5, 25),) * 4,
    "pancreas": ((35, 50), (100, 160), (90, 130), (70, 100)),
    "gallbladder": ((-5, 25),) * 4,
    "liver": ((50, 70), (65, 95), (100, 140), (80, 110)),
    "table": ((150, 700),) * 4,
    "table_foam": ((-950, -700),) * 4,
}
# Liver tumours relative to the liver of the same case and phase (HU difference ranges).
TUMOR_CONTRAST: Dict[str, Tuple[_R, _R, _R, _R]] = {
    "tumor_hypo": ((-30, -8), (-40, -10), (-70, -25), (-55, -15)),
    "tumor_hyper": ((-15, 5), (30, 90), (-30, 0), (-30, -5)),  # arterial hyperenhancement, washout
    "tumor_rim": ((-20, 0), (10, 50), (0, 30), (-10, 20)),  # the enhancing ring
    "tumor_necrosis": ((-45, -30), (-70, -50), (-110, -70), (-90, -60)),
}
CYST_HU = (-5, 20)
FATTY_LIVER_NC = (5, 40)
# Smooth texture amplitude (HU) per tissue: parenchymal heterogeneity, fat strands, trabecular bone.
TEXTURE = {"liver": 4, "spleen": 6, "muscle": 6, "fat": 8, "visceral_fat": 10, "bowel_content": 25,
           "cancellous_bone": 60, "lung": 40, "kidney_cortex": 8, "pancreas": 10, "tumor_hypo": 8,
           "tumor_hyper": 10, "tumor_rim": 8, "tumor_necrosis": 6}  # fmt: skip


def draw_hu(
    rng: np.random.Generator, phase: str, synthseg: bool = False, liver_drop: float = 0.0
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-case HU mean and texture amplitude of every tissue code.

    Args:
        rng: random generator.
        phase: one of :data:`PHASES`.
        synthseg: draw every soft tissue uniformly in [-150, 250] HU instead (SynthSeg-style
            randomisation; air, lung, fat and bone keep realistic values so the HU window still applies).
        liver_drop: HU the liver loses to fat on top of what was drawn (steatosis; the tumours keep
            their contrast to the liver), at most down to -10 HU.

    Returns:
        ``(mean, texture)``: float32 arrays of 256 entries indexed by tissue code.
    """
    k = PHASES.index(phase)
    mean = np.full(256, -1000.0, np.float32)
    texture = np.zeros(256, np.float32)
    for name, ranges in HU_RANGES.items():
        if name in TISSUES:
            mean[T[name]] = rng.uniform(*ranges[k])
            texture[T[name]] = TEXTURE.get(name, 3)
    if rng.random() < 0.125:  # steatosis lowers the liver by the same amount in every phase
        drop = rng.uniform(25, 45)
        mean[T["liver"]] = rng.uniform(*FATTY_LIVER_NC) if k == 0 else mean[T["liver"]] - drop
    if liver_drop > 0:
        mean[T["liver"]] = max(-10.0, float(mean[T["liver"]]) - liver_drop)
    liver = mean[T["liver"]]
    for name, ranges in TUMOR_CONTRAST.items():
        mean[T[name]] = liver + rng.uniform(*ranges[k])
        texture[T[name]] = TEXTURE.get(name, 5)
    mean[T["tumor_cyst"]] = rng.uniform(*CYST_HU)
    mean[T["air"]] = rng.uniform(-1010, -990)
    if synthseg:
        keep = {T[n] for n in ("air", "gas", "lung", "fat", "visceral_fat", "cortical_bone", "table_foam")}
        for code in set(TISSUES.values()) - keep:
            mean[code] = rng.uniform(-150, 250)
    return mean, texture


def label_lut() -> np.ndarray:
    """Lookup table tissue code -> LiTS label (0 background, 1 liver incl. its vessels, 2 tumour)."""
    lut = np.zeros(256, np.uint8)
    lut[list(LIVER_CODES)] = 1
    lut[list(TUMOR_CODES)] = 2
    return lut
