"""From a config to the cached train/val/test cases of a run: phantoms, discovery, cache, split."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from MPUNetCore.cli.progress import ProgressBar

from . import distributed
from .cache import CachedCase, build_cache, load_cached, preprocessing_from_config
from .config import Config
from .data import SPLIT_PARTS, discover_pairs, load_split, save_split, split_cases
from .runfolder import RunFolder, write_json


@dataclass
class PreparedData:
    """The cached cases of each split part, and the split record (as saved in split.json)."""

    parts: Dict[str, List[CachedCase]]
    split: Dict


def data_root(config: Config, run: RunFolder) -> Path:
    """The data folder: data.root (only ever read), or the run's phantoms/ folder for phantom runs."""
    root = config.data.root
    return Path(root) if root else run.root / "phantoms"


def check_data_source(config: Config) -> None:
    """Refuse, before anything is written, a data.root that is missing or that phantoms would be put in.

    Training never creates or writes the user's data folder: phantoms are generated only into the run
    folder, so data.root and data.phantom_cases cannot both be set.
    """
    data = config.data
    root = data.root
    if root and data.phantom_cases > 0:
        raise ValueError(
            f"data.root = {root} and data.phantom_cases = {data.phantom_cases} are both set: phantoms are "
            "generated only into the run folder, never into your data folder. To train on your data add "
            "--set data.phantom_cases=0; to train on phantoms leave data.root empty."
        )
    if root and not Path(root).is_dir():
        raise FileNotFoundError(
            f"data.root {root} does not exist or is not a folder: point --set data.root=PATH at your LiTS "
            "folder (volume-N/segmentation-N) or MSD task folder (imagesTr/labelsTr) (never created)."
        )


def make_phantoms(config: Config, root: Path) -> None:
    """Generate data.phantom_cases phantoms into `root` (the run's phantoms/ folder) unless they are there."""
    data = config.data
    wanted = data.phantom_cases
    if data.root:
        return  # the user's data folder is never written (check_data_source refuses the combination)
    if wanted <= 0 or all((root / f"segmentation-{k}.nii.gz").exists() for k in range(wanted)):
        return
    options = {"shape": tuple(data.phantom_shape)} if data.phantom_shape else {}
    if data.phantom_generator == "anatomical":
        from MPUNetCore.phantoms import write_lits_folder

        options.update(
            synthseg_fraction=data.phantom_synthseg,
            slab_fraction=data.phantom_slabs,
            recess=tuple(data.phantom_recess) or None,
            steatosis=data.phantom_steatosis,
        )
    else:
        from MPUNetCore.phantom import write_lits_folder

    print(f"generating {wanted} phantom cases in {root}", file=sys.stderr)
    write_lits_folder(root, cases=wanted, seed=data.phantom_seed, overwrite=True, **options)


def cache_folder(config: Config) -> Path:
    """data.cache_dir, or output_dir/cache."""
    return Path(config.data.cache_dir or Path(config.experiment.output_dir) / "cache")


def prepare_data(
    config: Config, run: RunFolder, ctx: distributed.Context, progress: str = "bar"
) -> PreparedData:
    """Discover, check and preprocess the cases (sharded over processes), then split them.

    The split is read from the run's split.json when it exists (resume), else from data.split_file,
    else drawn from the seed; rank 0 writes split.json and data_report.json.
    """
    data = config.data
    root = data_root(config, run)
    distributed.on_main(ctx, lambda: make_phantoms(config, root))
    pairs, problems = discover_pairs(root, data.layout)
    if data.max_cases:
        pairs = pairs[: data.max_cases]
    prep = preprocessing_from_config(config)
    bar = ProgressBar("preprocessing", progress if ctx.main else "none")
    folder, _ = build_cache(
        pairs,
        cache_folder(config),
        prep,
        data.crop_margin,
        data.geometry_tolerance,
        progress=bar,
        rank=ctx.rank,
        world=ctx.world,
    )
    distributed.barrier(ctx)
    cases = {c.name: c for c in load_cached(pairs, folder)}
    bad = {c.name: c.reason for c in cases.values() if c.status != "ok"}
    short = {c.name: c.shape[0] for c in cases.values() if c.status == "ok" and c.shape[0] < data.min_slices}
    usable = sorted(n for n, c in cases.items() if c.status == "ok" and n not in short)
    if ctx.main:
        for line in problems + [f"{n}: {why}; skipped" for n, why in bad.items()]:
            print(f"warning: {line}", file=sys.stderr)
        if short:
            print(
                f"note: {len(short)} case(s) with fewer than {data.min_slices} slices around the liver "
                f"dropped: {', '.join(sorted(short))}",
                file=sys.stderr,
            )
    split = distributed.on_main(ctx, lambda: _choose_split(config, run, usable, pairs))
    missing = [n for part in SPLIT_PARTS for n in split[part] if n not in cases or cases[n].status != "ok"]
    if missing:
        raise ValueError(f"the split names cases that are not usable here: {', '.join(missing[:10])}")
    if ctx.main:
        write_json(
            run.data_report,
            {
                "root": str(root),
                "cache": str(folder),
                "pairs": len(pairs),
                "usable": len(usable),
                "problems": problems,
                "bad": bad,
                "too_few_slices": short,
                "split_sizes": {p: len(split[p]) for p in SPLIT_PARTS},
            },
        )
    distributed.barrier(ctx)
    return PreparedData({p: [cases[n] for n in split[p]] for p in SPLIT_PARTS}, split)


def _choose_split(config: Config, run: RunFolder, usable: List[str], pairs) -> Dict:
    """The run's split (rank 0): split.json if present, else data.split_file, else a new seeded one."""
    if run.split.exists():
        return load_split(run.split)
    if config.data.split_file:
        record = load_split(config.data.split_file)
    else:
        seed, sizes = config.experiment.seed, list(config.data.split)
        record = {"seed": seed, "sizes": sizes, **split_cases(usable, sizes, seed)}
    save_split(run.split, record, pairs, record.get("seed", 0), record.get("sizes", []))
    return load_split(run.split)
