"""Ship a model bundle inside the package and register it (the bundled demo model is added this way).

    python Utilities/bundle_model.py runs/phantom_demo/export/phantom_demo.json --name demo-phantom \
        --version 0.2.0 --intended-use "Demonstration only: ..."

Copies the card and weights into `MPUNetCore/models/NAME.{json,pt}` (the card's `name` and weights
file renamed to match), checks that the bundle loads, and writes its entry, with both SHA-256 sums,
into `MPUNetCore/models/registry.json`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from MPUNetCore.bundle import load_bundle, read_card  # noqa: E402
from MPUNetCore.fileutils import sha256_of  # noqa: E402
from MPUNetCore.registry import BUILTIN_REGISTRY  # noqa: E402

MODELS = BUILTIN_REGISTRY.parent
SIZE_LIMIT = 10 * 1024 * 1024  # bundled weights stay small (the repository ships them)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card", type=Path, help="the bundle's model card (.json)")
    parser.add_argument("--name", required=True, help="registry name, e.g. demo-phantom")
    parser.add_argument("--version", help="model version in the card and registry (default: the card's)")
    parser.add_argument("--intended-use", help="the card's intended-use statement (default: the card's)")
    args = parser.parse_args()

    source = load_bundle(args.card)  # refuses a bundle that does not load
    card = read_card(args.card)
    weights = args.card.parent / card.weights["file"]
    if weights.stat().st_size > SIZE_LIMIT:
        size_mb = weights.stat().st_size / 1e6
        raise SystemExit(f"{weights} is {size_mb:.1f} MB; bundled models must be <= 10 MB")
    target_weights = MODELS / f"{args.name}.pt"
    shutil.copyfile(weights, target_weights)
    data = json.loads(args.card.read_text(encoding="utf-8"))
    data["name"] = args.name
    data["version"] = args.version or data.get("version", card.version)
    data["intended_use"] = args.intended_use or data.get("intended_use", card.intended_use)
    data["weights"] = {**data["weights"], "file": target_weights.name}
    target_card = MODELS / f"{args.name}.json"
    target_card.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    assert load_bundle(target_card).card.name == args.name and source is not None

    registry = json.loads(BUILTIN_REGISTRY.read_text(encoding="utf-8"))
    entry = {
        "name": args.name,
        "version": data["version"],
        "description": card.description,
        "card_url": target_card.name,
        "card_sha256": sha256_of(target_card),
        "weights_url": target_weights.name,
        "weights_sha256": sha256_of(target_weights),
        "size": target_weights.stat().st_size,
    }
    registry["models"] = [m for m in registry["models"] if m["name"] != args.name] + [entry]
    BUILTIN_REGISTRY.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    print(f"bundled {args.name}: {target_card} + {target_weights} ({entry['size'] / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
