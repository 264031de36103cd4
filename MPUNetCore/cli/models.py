"""`mpunet models` and `mpunet info`: list, download and verify models; show a model card."""

from __future__ import annotations

import argparse
import json
import sys

from MPUNetCore.cli.progress import ProgressBar


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list, download or verify registered models")
    parser.add_argument("action", nargs="?", default="list", choices=("list", "download", "verify"))
    parser.add_argument("name", nargs="?", help="model name (download/verify; default: all)")
    parser.set_defaults(run=run_models)

    info = sub.add_parser("info", help="show a model's card (architecture, classes, metrics, ...)")
    info.add_argument(
        "model", nargs="?", default=None, help="registry name or bundle path (default: demo model)"
    )
    info.add_argument("--json", action="store_true", help="print the raw card as JSON")
    info.set_defaults(run=run_info)


def run_models(args: argparse.Namespace) -> int:
    from MPUNetCore.bundle import load_bundle
    from MPUNetCore.registry import cache_dir, fetch_model, load_models

    models, clashes = load_models()
    for clash in clashes:
        print(
            f"note: {clash.registry} (from $MPUNET_REGISTRY) also defines {clash.name!r}, the name of a "
            f"bundled model; that entry is ignored and the bundled {clash.name!r} is used. Rename the entry "
            "to use it",
            file=sys.stderr,
        )
    if args.action == "list":
        print(f"{'name':<20} {'version':<9} {'size':>9}  {'where':<8} description")
        for entry in models.values():
            where = "bundled" if entry.is_local else "download"
            size = f"{entry.size / 1e6:>7.1f}MB"
            print(f"{entry.name:<20} {entry.version:<9} {size}  {where:<8} {entry.description}")
        print(f"(cache: {cache_dir()})")
        return 0
    names = [args.name] if args.name else list(models)
    for name in names:
        card = fetch_model(name, progress=ProgressBar(f"{name}: download"), models=models)
        if args.action == "verify":
            load_bundle(card)  # checksum, card and weights must all agree
            print(f"{name}: OK ({card})")
        else:
            print(f"{name}: available at {card}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from MPUNetCore.bundle import read_card
    from MPUNetCore.registry import resolve_model

    card = read_card(resolve_model(args.model))
    if args.json:
        print(json.dumps(card.to_dict(), indent=2))
        return 0
    arch = card.architecture
    print(f"{card.name} {card.version}: {card.description}")
    print(f"  intended use : {card.intended_use}")
    print(f"  network      : {arch['network']} {arch.get('preset', '')} {arch.get('overrides', {}) or ''}")
    print(f"  classes      : {', '.join(f'{c.value}={c.name}' for c in card.classes)}")
    print(f"  preprocessing: {card.preprocessing}")
    print(f"  inference    : {card.inference.to_dict()}")
    if card.training:
        print(f"  training     : {card.training.get('data', card.training)}")
    for split, values in card.metrics.items():
        print(f"  metrics {split}: {_headline(values)}")
    return 0


def _headline(values) -> str:
    """The Dice figures of a metrics record (the full record: `mpunet info --json`)."""
    if not isinstance(values, dict):
        return str(values)
    shown = []
    for key, value in values.items():
        if isinstance(value, dict):
            shown.append(f"{key} {_headline(value)}")
        elif "dice" in key and isinstance(value, (int, float)):
            shown.append(f"{key} {value:.4f}")
    return ", ".join(shown) or "(see --json)"
