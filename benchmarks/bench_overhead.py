"""The stages after the network alone: resampling back + argmax, and post-processing.

    python benchmarks/profile_inputs.py DIR                      # the profile case (CT + bundle)
    python benchmarks/bench_overhead.py DIR --save               # network probabilities, once (slow)
    python benchmarks/bench_overhead.py DIR --repeats 3          # time the two stages on them

The probabilities are saved to ``DIR/probs.pt`` so that the network runs once; each repeat then times
``probabilities_to_labels`` and ``postprocess_labels`` (wall and process CPU seconds) and prints a hash
of both label maps, so that two checkouts (``PYTHONPATH=CHECKOUT``) can be compared run by run.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))  # appended: a PYTHONPATH checkout wins


def _cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _save(folder: Path) -> None:
    import SimpleITK as sitk
    import torch

    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.inference import Preprocessing
    from MPUNetCore.inference.engine import predict_network_probabilities

    image = sitk.ReadImage(str(folder / "ct.nii.gz"))
    bundle = load_bundle(folder / "demo-released.json")
    prep = Preprocessing.from_dict(bundle.card.preprocessing)
    array = sitk.GetArrayFromImage(image)
    probs, tr = predict_network_probabilities(
        array, image.GetSpacing(), bundle.model, prep, bundle.card.inference
    )
    torch.save({"probs": probs, "input_shape": tr.input_shape}, folder / "probs.pt")
    print(f"saved {folder / 'probs.pt'}: {tuple(probs.shape)} -> {tr.input_shape}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("--save", action="store_true", help="run the network and save its probabilities")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.save:
        _save(args.folder)
        return 0
    import torch

    from MPUNetCore.inference.postprocessing import postprocess_labels
    from MPUNetCore.inference.resampling import probabilities_to_labels

    saved = torch.load(args.folder / "probs.pt")
    probs, shape = saved["probs"], saved["input_shape"]
    print(f"threads {torch.get_num_threads()}, probabilities {tuple(probs.shape)} -> {tuple(shape)}")
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), _cpu()
        labels = probabilities_to_labels(probs, shape)
        t1, c1 = time.perf_counter(), _cpu()
        cleaned = postprocess_labels(labels)
        t2, c2 = time.perf_counter(), _cpu()
        digest = hashlib.sha256(labels.tobytes() + cleaned.tobytes()).hexdigest()[:12]
        print(
            f"resampling back + argmax {t1 - t0:.2f} s (CPU {c1 - c0:.2f} s) | "
            f"post-processing {t2 - t1:.2f} s (CPU {c2 - c1:.2f} s) | labels {digest}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
