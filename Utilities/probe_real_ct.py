"""What a model's liver on the real 3-slice CT depends on: the same CT with one thing changed at a time.

Each probe changes one feature of the real CT (its noise, the liver's intensity, the gas inside the
body, the bone, the table) and reports the liver Dice and the mean liver probability inside the
expert's liver. A probe that turns a miss into a find names what the phantoms get wrong::

    python Utilities/probe_real_ct.py --model RUN/export/phantom_demo.json
    python Utilities/probe_real_ct.py --model demo-phantom --probes raw,smooth,posterior-lung

The CT has three 1 mm slices: a few probes are not a study, they point at what to measure next.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from Utilities.eval_real_ct import REAL, dice  # noqa: E402

Probe = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _body(ct: np.ndarray) -> np.ndarray:
    """The patient (largest connected region above -400 HU, holes filled), slice by slice."""
    from scipy import ndimage

    body = np.zeros(ct.shape, bool)
    for k, plane in enumerate(ct):
        filled = ndimage.binary_opening(ndimage.binary_fill_holes(plane > -400), iterations=3)
        labels, count = ndimage.label(filled)
        if count:
            sizes = ndimage.sum(filled, labels, range(1, count + 1))
            body[k] = labels == 1 + int(np.argmax(sizes))
    return body


def _largest_gas(ct: np.ndarray, body: np.ndarray) -> np.ndarray:
    """The largest gas region inside the body (in this CT: the right lung base behind the liver)."""
    from scipy import ndimage

    gas = body & (ct < -300)
    labels, count = ndimage.label(gas)
    if not count:
        return gas
    sizes = ndimage.sum(gas, labels, range(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def _changed(ct: np.ndarray, where: np.ndarray, value) -> np.ndarray:
    out = ct.copy()
    out[where] = value if np.isscalar(value) else value[where]
    return out


def _smooth(ct: np.ndarray, sigma_mm: float) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(ct, (0, sigma_mm / 0.81, sigma_mm / 0.81)).astype(np.float32)


PROBES: Dict[str, Probe] = {
    "raw": lambda ct, liver, body: ct,
    "smooth": lambda ct, liver, body: _smooth(ct, 1.5),
    "plus-40-HU": lambda ct, liver, body: ct + 40,
    "liver-constant-100-HU": lambda ct, liver, body: _changed(ct, liver, 100.0),
    "posterior-lung": lambda ct, liver, body: _changed(ct, _largest_gas(ct, body), 20.0),
    "other-gas": lambda ct, liver, body: _changed(ct, body & (ct < -300) & ~_largest_gas(ct, body), 20.0),
    "bone-to-soft-tissue": lambda ct, liver, body: _changed(ct, body & ~liver & (ct > 150), 40.0),
    "no-table": lambda ct, liver, body: _changed(ct, ~body, -1000.0),
}
PROBE_HELP = {
    "raw": "the CT as it is",
    "smooth": "Gaussian blur of 1.5 mm in-plane (less per-pixel noise)",
    "plus-40-HU": "every voxel 40 HU brighter",
    "liver-constant-100-HU": "the expert's liver set to 100 HU, no texture",
    "posterior-lung": "the largest gas region in the body (the right lung base) set to 20 HU",
    "other-gas": "every other gas region (stomach, bowel) set to 20 HU",
    "bone-to-soft-tissue": "bone outside the liver set to 40 HU",
    "no-table": "everything outside the body set to air",
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo-phantom", help="card .json or registry name")
    parser.add_argument(
        "--probes", default=",".join(PROBES), help=f"comma-separated, of: {', '.join(PROBES)}"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.probes.split(",") if n.strip()]
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        parser.error(f"unknown probe(s) {unknown}; choose from {', '.join(PROBES)}")
    if not REAL.is_dir():
        print(f"the real CT is not at {REAL}: nothing to probe", file=sys.stderr)
        return 2

    import SimpleITK as sitk

    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import Preprocessing, predict_probabilities
    from MPUNetCore.registry import resolve_model

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(REAL)))
    image = reader.Execute()
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(REAL / "liver_seg.nrrd"))) > 0
    body = _body(ct)
    bundle = load_bundle(resolve_model(args.model))
    prep = Preprocessing.from_dict(bundle.card.preprocessing)
    print(f"{bundle.card.name} {bundle.card.version} on the real CT ({REAL.name})")
    for name in names:
        probs = predict_probabilities(
            PROBES[name](ct, liver, body),
            image.GetSpacing(),
            bundle.model,
            prep,
            settings=bundle.card.inference,
        )
        found = probs.argmax(0) >= 1
        inside = float(probs[1:][:, liver].sum(0).mean())
        score = f"liver Dice {dice(found, liver):.3f}   p(liver) in the liver {inside:.2f}"
        print(f"  {name:24s} {score}   {PROBE_HELP[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
