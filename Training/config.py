"""Experiment configs: TOML files with typed, validated sections and `--set section.key=value` overrides.

A config has the sections of `SCHEMA`; every key has a default, so a config file only lists what
differs. Optional keys (default `None`) are left out of a file or written as `"none"`.
The resolved config (defaults + file + overrides) is saved in the run folder and read back by
`evaluate`, `export` and `report`, so a run folder is self-describing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib

from MPUNetCore.fileutils import atomic_output
from MPUNetCore.inference.settings import Blending, Precision
from MPUNetCore.networks.registry import NETWORKS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key and the valid choices."""


@dataclass(frozen=True)
class Field:
    """One config key: its default, its type (`item` for list elements), the choices, a help line."""

    default: Any
    kind: type
    help: str = ""
    choices: Tuple[str, ...] = ()
    item: Optional[type] = None
    optional: bool = False


def _f(
    default: Any,
    help: str = "",
    choices: Iterable[str] = (),
    item: Optional[type] = None,
    kind: Optional[type] = None,
    optional: bool = False,
) -> Field:
    kind = kind or (list if isinstance(default, list) else type(default))
    return Field(default, kind, help, tuple(choices), item, optional=optional or default is None)


SCHEMA: Dict[str, Dict[str, Field]] = {
    "experiment": {
        "name": _f("run", "run name: the run folder is output_dir/name"),
        "output_dir": _f("runs", "folder of the run folders (and of the default cache)"),
        "seed": _f(0, "seed of the split, the sampling, augmentation and initialisation"),
        "description": _f("", "free text, copied into the model card"),
    },
    "data": {
        "root": _f("", "LiTS folder (volume-N/segmentation-N) or MSD task folder (imagesTr/labelsTr)"),
        "layout": _f("auto", "data layout", ("auto", "lits", "msd")),
        "task": _f(
            "liver", "liver: 2 classes (liver incl. tumour); liver_tumor: 3 classes", ("liver", "liver_tumor")
        ),
        "split": _f([88.0, 22.0, 20.0], "relative sizes of the train/val/test split", item=float),
        "split_file": _f("", "reuse the split.json of another run (same cases, same split)"),
        "cache_dir": _f("", "preprocessed-array cache (default: output_dir/cache)"),
        "min_slices": _f(48, "drop scans with fewer slices around the liver (network space)"),
        "crop_margin": _f(20, "slices kept above and below the liver (network space)"),
        "geometry_tolerance": _f(1e-3, "largest origin/spacing difference (mm) of a valid image/label pair"),
        "max_cases": _f(0, "use only the first N cases by name (0: all)"),
        "phantom_cases": _f(0, "generate N phantom cases into the run folder when root is empty"),
        "phantom_seed": _f(0, "seed of the generated phantoms"),
        "phantom_shape": _f([], "phantom array size (z, y, x); empty: the generator's default", item=int),
        "phantom_generator": _f(
            "legacy",
            "anatomical: MPUNetCore.phantoms (anatomy, contrast phases, scanner protocols); "
            "legacy: the geometric MPUNetCore.phantom of the demo model 0.2.0",
            ("legacy", "anatomical"),
        ),
        "phantom_synthseg": _f(0.0, "anatomical phantoms: fraction with randomised soft-tissue HU"),
        "phantom_slabs": _f(0.0, "anatomical phantoms: fraction with only 3-12 slices"),
    },
    "preprocessing": {
        "hu_window": _f([-200.0, 200.0], "HU clip window (lower, upper)", item=float),
        "scale": _f(200.0, "divisor applied after clipping"),
        "inplane_factor": _f(0.5, "in-plane resampling factor (0.5: 512 -> 256)"),
        "target_spacing": _f(
            None, "in-plane (x, y) spacing in mm; overrides inplane_factor", item=float, kind=list
        ),
        "slice_spacing": _f(1.0, "slice spacing in mm ('none' keeps the slices)", optional=True),
    },
    "model": {
        "network": _f("MPUNet", "network (MPUNetCore.networks.registry)", tuple(NETWORKS)),
        "preset": _f("released", "MPUNet preset", NETWORKS["MPUNet"].presets),
        "channels": _f(
            None, "encoder widths (MPUNet: 5, UNet: 4); none: the network's default", item=int, kind=list
        ),
        "dropout": _f(None, "MPUNet decoder dropout; none: the preset's", kind=float),
        "elu_alpha": _f(None, "MPUNet ELU alpha of the downsamplings; none: the preset's", kind=float),
        "fusion": _f(
            None,
            "MPUNet fusion of the four heads: mean (released), learned (paper); none: the preset's",
            kind=str,
        ),
        "final_channels": _f(None, "UNet last decoder width; none: the default", kind=int),
    },
    "loss": {
        "alpha": _f(0.3, "Tversky weight of false positives"),
        "beta": _f(0.7, "Tversky weight of false negatives"),
        "ce_weight": _f(1.0, "lambda: weight of the deep-supervised cross-entropy"),
        "class_weights": _f("none", "cross-entropy class weights", ("none", "balanced")),
        "class_weight_values": _f(
            [], "cross-entropy weight per class, background first (overrides class_weights)", item=float
        ),
        "tversky_on": _f(
            "auto",
            "auto: the network's own prediction (mean of the heads, or the last output)",
            ("auto", "mean", "last", "each"),
        ),
        "include_background": _f(False, "include the background in the Tversky average"),
        "smooth": _f(1e-5, "Tversky smoothing (numerator and denominator)"),
        "batch": _f(False, "Tversky over the whole batch instead of per patch"),
    },
    "train": {
        "epochs": _f(600, "number of epochs"),
        "batch_size": _f(1, "patches per step and process"),
        "patch": _f([48, 256, 256], "training patch (D, H, W) in network voxels", item=int),
        "samples_per_epoch": _f(0, "patches per epoch (0: one per training case)"),
        "foreground_prob": _f(0.5, "probability that a patch is centred on a foreground voxel"),
        "tumor_prob": _f(0.5, "liver_tumor: share of those foreground patches centred on a tumour"),
        "optimizer": _f("adam", "optimiser", ("adam", "adamw", "sgd")),
        "lr": _f(1e-4, "initial learning rate"),
        "weight_decay": _f(0.0, "weight decay"),
        "scheduler": _f(
            "step", "learning-rate schedule, stepped per epoch", ("step", "cosine", "poly", "none")
        ),
        "step_size": _f(100, "step scheduler: epochs between decays"),
        "gamma": _f(0.5, "step scheduler: decay factor"),
        "grad_clip": _f(12.0, "gradient-norm clipping (0: off)"),
        "amp": _f(
            "auto",
            "autocast: auto = bfloat16/float16 on CUDA, float32 on CPU",
            tuple(p.value for p in Precision),
        ),
        "device": _f("auto", "auto, cpu, cuda, cuda:N"),
        "channels_last": _f(False, "channels-last memory format (see benchmarks/bench_train.py)"),
        "workers": _f(0, "data-loader worker processes"),
        "threads": _f(0, "torch CPU threads (0: torch's default)"),
        "val_every": _f(1, "validate every N epochs (and after the last)"),
        "best_metric": _f("liver_dice", "validation metric that picks the best model (<class>_<metric>)"),
        "deterministic": _f(False, "deterministic cuDNN algorithms (slower on GPU)"),
    },
    "augment": {
        "flip_axes": _f([0, 1, 2], "array axes (z, y, x) that may be flipped", item=int),
        "flip_prob": _f(0.5, "probability of a flip, per axis"),
        "rotate_degrees": _f(10.0, "largest in-plane rotation in degrees"),
        "rotate_prob": _f(0.2, "probability of a rotation"),
        "intensity_prob": _f(0.3, "probability of an intensity change"),
        "intensity_scale": _f(0.1, "largest relative intensity scaling"),
        "intensity_shift": _f(0.1, "largest intensity shift (network units)"),
        "noise_std": _f(0.03, "largest Gaussian noise std (network units)"),
    },
    "inference": {
        "window": _f([48, 256, 256], "sliding window (D, H, W); 0 = the full extent", item=int),
        "overlap": _f(0.25, "overlap of neighbouring windows"),
        "blending": _f("gaussian", "window blending", tuple(b.value for b in Blending)),
        "batch_size": _f(1, "windows per forward pass"),
        "postprocess": _f(True, "largest liver component, tumours inside the liver"),
        "tta": _f(False, "mirroring test-time augmentation in evaluate"),
        "max_val_cases": _f(0, "validate on the first N validation cases only (0: all)"),
    },
}

Config = Dict[str, Dict[str, Any]]


def defaults() -> Config:
    """The default config (every key of `SCHEMA`)."""
    return {sec: {key: _copy(f.default) for key, f in fields.items()} for sec, fields in SCHEMA.items()}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _coerce(section: str, key: str, value: Any, source: str) -> Any:
    """Check and convert one value to its field's type; ConfigError names the key and the fix."""
    field = SCHEMA[section][key]
    name = f"{section}.{key}"
    if field.optional and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return None
    kind = field.kind
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in (
                "true",
                "yes",
                "on",
                "1",
                "false",
                "no",
                "off",
                "0",
            ):
                value = value.lower() in ("true", "yes", "on", "1")
            if not isinstance(value, bool):
                raise TypeError("expected true or false")
        elif kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError("expected an integer")
            value = int(value)
        elif kind is float:
            if isinstance(value, bool):
                raise TypeError("expected a number")
            value = float(value)
        elif kind is str:
            if not isinstance(value, str):
                raise TypeError("expected a string")
        elif kind is list:
            if isinstance(value, str):
                text = value.strip()
                value = (
                    json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
                )
            if not isinstance(value, (list, tuple)):
                raise TypeError("expected a list such as [1, 2, 3]")
            item = field.item or str
            value = [_item(item, v) for v in value]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {name} = {value!r} is invalid ({error}); {_describe(field)}") from None
    if field.choices and value not in field.choices:
        raise ConfigError(f"{source}: {name} = {value!r} is not one of {', '.join(field.choices)}")
    return value


def _item(item: type, value: Any) -> Any:
    if item is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"{value!r} is not an integer")
        return int(value)
    if item is float:
        return float(value)
    return str(value)


def _describe(field: Field) -> str:
    kind = f"list of {field.item.__name__}" if field.kind is list and field.item else field.kind.__name__
    extra = " or none" if field.optional else ""
    return f"expected {kind}{extra}: {field.help}"


def merge(config: Config, updates: Dict[str, Any], source: str) -> Config:
    """Apply `{section: {key: value}}` to `config` after validation; returns `config`."""
    for section, values in updates.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}]; valid sections: {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table of key = value lines")
        for key, value in values.items():
            if key not in SCHEMA[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; valid keys of [{section}]: "
                    f"{', '.join(SCHEMA[section])}"
                )
            config[section][key] = _coerce(section, key, value, source)
    return config


def parse_override(text: str) -> Tuple[str, str, str]:
    """Split `section.key=value` into its three parts."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: write section.key=value, e.g. --set train.epochs=10")
    dotted, value = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    return section, key, value.strip()


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then a TOML file, then `--set` overrides, validated.

    Args:
        path: a TOML file, or the name of a bundled config (`phantom_demo` or `phantom_demo.toml`).
        overrides: `section.key=value` strings; values are typed by the key's type (lists as
            `[1, 2]` or `1,2`; optional keys accept `none`).

    Returns:
        The resolved config `{section: {key: value}}`.

    Raises:
        ConfigError: unreadable file, unknown section/key, wrong type or choice, inconsistent values.
    """
    config = defaults()
    if path is not None:
        file = resolve_config_path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read the config {file}: {error}") from None
        merge(config, data, str(file))
    for text in overrides:
        section, key, value = parse_override(text)
        merge(config, {section: {key: value}}, f"--set {text}")
    check_consistency(config)
    return config


def resolve_config_path(path: Union[str, Path]) -> Path:
    """A config file path, or the bundled config of that name in `Training/configs/`."""
    file = Path(path)
    if file.exists():
        return file
    for candidate in (CONFIG_DIR / file.name, CONFIG_DIR / f"{file.name}.toml"):
        if candidate.exists():
            return candidate
    bundled = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise ConfigError(f"config {path} not found (neither a file nor a bundled config: {bundled})")


def check_consistency(config: Config) -> None:
    """Checks that involve several keys or ranges; ConfigError says what to change."""

    def need(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

    data, train, prep, inf = config["data"], config["train"], config["preprocessing"], config["inference"]
    split = data["split"]
    need(
        len(split) == 3 and min(split) >= 0 and split[0] > 0 and split[1] > 0,
        f"data.split = {split}: give three sizes (train, val, test), train and val > 0",
    )
    need(
        len(train["patch"]) == 3 and min(train["patch"]) > 0,
        "train.patch must be three positive sizes (D, H, W)",
    )
    need(len(inf["window"]) == 3 and min(inf["window"]) >= 0, "inference.window must be three sizes >= 0")
    need(0 <= inf["overlap"] < 1, "inference.overlap must be in [0, 1)")
    need(
        len(prep["hu_window"]) == 2 and prep["hu_window"][0] < prep["hu_window"][1],
        "preprocessing.hu_window must be [lower, upper] with lower < upper",
    )
    ts = prep["target_spacing"]
    need(ts is None or (len(ts) == 2 and min(ts) > 0), "preprocessing.target_spacing must be [x, y] mm > 0")
    for key in ("epochs", "batch_size", "val_every", "step_size"):
        need(train[key] >= 1, f"train.{key} must be at least 1")
    need(train["lr"] > 0, "train.lr must be > 0")
    need(0 <= train["foreground_prob"] <= 1, "train.foreground_prob must be in [0, 1]")
    need(0 <= train["tumor_prob"] <= 1, "train.tumor_prob must be in [0, 1]")
    need(config["loss"]["smooth"] >= 0, "loss.smooth must be >= 0")
    need(config["model"]["fusion"] in (None, "mean", "learned"), "model.fusion must be mean, learned or none")
    weights = config["loss"]["class_weight_values"]
    need(
        not weights or (len(weights) == num_classes(config) and min(weights) >= 0),
        f"loss.class_weight_values needs {num_classes(config)} weights >= 0 (background first) for "
        f"data.task = {data['task']!r}",
    )
    need(all(a in (0, 1, 2) for a in config["augment"]["flip_axes"]), "augment.flip_axes holds axes 0, 1, 2")
    need(data["min_slices"] >= 1 and data["crop_margin"] >= 0, "data.min_slices >= 1, data.crop_margin >= 0")
    classes = ("liver", "tumor") if data["task"] == "liver_tumor" else ("liver",)
    metric = train["best_metric"]
    need(
        metric == "mean_dice" or metric in {f"{c}_dice" for c in classes},
        f"train.best_metric = {metric!r}: use mean_dice or one of {', '.join(c + '_dice' for c in classes)}",
    )
    need(
        bool(data["root"]) or data["phantom_cases"] > 0,
        "data.root is empty: set it to your LiTS/MSD folder (--set data.root=PATH) or set data.phantom_cases",
    )


def to_toml(config: Config) -> str:
    """The config as TOML text (None written as "none"), readable by `load_config`."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def save_config(config: Config, path: Union[str, Path]) -> Path:
    """Write the resolved config atomically (replacing an older one)."""
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(to_toml(config), encoding="utf-8")
    return Path(path)


def classes_of(config: Config) -> Dict[str, Tuple[int, ...]]:
    """Evaluation classes of the task: label values that form each class's binary mask."""
    if config["data"]["task"] == "liver_tumor":
        return {"liver": (1, 2), "tumor": (2,)}
    return {"liver": (1,)}


def num_classes(config: Config) -> int:
    """Network outputs of the task (background included)."""
    return 3 if config["data"]["task"] == "liver_tumor" else 2
