"""Experiment configs: TOML files with typed, validated sections and `--set section.key=value` overrides.

`Config` is one frozen dataclass of frozen sections (`config_sections`): `config.train.lr`. Every key
has a default, so a config file only lists what differs. `load_config` builds it from the defaults, a
TOML file and `--set` overrides, refusing unknown sections or keys (with the closest valid name) and
values of the wrong type in one line. The resolved config (`to_toml`) is saved in the run folder and
read back by `--resume`, `evaluate`, `export` and `report`, so a run folder is self-describing.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib

from MPUNetCore.fileutils import atomic_output

from .config_sections import (
    AugmentConfig,
    DataConfig,
    ExperimentConfig,
    InferenceConfig,
    LossConfig,
    ModelConfig,
    PreprocessingConfig,
    TrainConfig,
)
from .config_values import ConfigError, Section, convert, did_you_mean, key_specs

__all__ = [
    "CONFIG_DIR", "AugmentConfig", "Config", "ConfigError", "DataConfig", "ExperimentConfig",
    "InferenceConfig", "LossConfig", "ModelConfig", "PreprocessingConfig", "TrainConfig", "check_consistency",
    "classes_of", "load_config", "num_classes", "parse_override", "resolve_config_path", "save_config",
    "to_toml", "Section",
]  # fmt: skip

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class Config:
    """A whole experiment config: one typed section per TOML table."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self) -> None:
        for name, kind in self.section_types().items():
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"Config.{name} must be {kind.__name__}, not {getattr(self, name)!r}")

    @staticmethod
    def section_types() -> Dict[str, type]:
        """`{section name: section class}` in file order."""
        return {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> Config:
        """The defaults updated with `{section: {key: value}}` (e.g. parsed TOML), validated per key."""
        return cls().merged(data, source)

    def merged(self, updates: Mapping[str, Any], source: str) -> Config:
        """A copy with `{section: {key: value}}` applied; ConfigError names ``source`` and the key.

        Raises:
            ConfigError: unknown section or key (with the valid names and the closest one), a section
                that is not a table, or a value of the wrong type or not among the key's choices.
        """
        kinds = self.section_types()
        sections: Dict[str, Dict[str, Any]] = {}
        for section, values in updates.items():
            if section not in kinds:
                raise ConfigError(
                    f"{source}: unknown section [{section}]; valid sections: {', '.join(kinds)}"
                    + did_you_mean(section, kinds, "[{}]")
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{source}: [{section}] must be a table of key = value lines")
            specs = key_specs(kinds[section])
            target = sections.setdefault(section, {n: getattr(getattr(self, section), n) for n in specs})
            for name, value in values.items():
                if name not in specs:
                    raise ConfigError(
                        f"{source}: unknown key {section}.{name}; valid keys of [{section}]: "
                        f"{', '.join(specs)}" + did_you_mean(name, specs, f"{section}.{{}}")
                    )
                target[name] = convert(specs[name], f"{section}.{name}", value, source)
        return dataclasses.replace(self, **{s: kinds[s](**values) for s, values in sections.items()})

    def with_overrides(self, overrides: Sequence[str]) -> Config:
        """A copy with `section.key=value` strings (`--set`) applied, each named in its error."""
        config = self
        for text in overrides:
            section, name, value = parse_override(text)
            config = config.merged({section: {name: value}}, f"--set {text}")
        return config

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """`{section: {key: value}}` with TOML/JSON types (lists, None), in file order."""
        return {name: getattr(self, name).to_dict() for name in self.section_types()}


def parse_override(text: str) -> Tuple[str, str, str]:
    """Split `section.key=value` into its three parts."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"--set {text!r}: write section.key=value, e.g. --set train.epochs=10")
    dotted, value = text.split("=", 1)
    section, name = dotted.strip().split(".", 1)
    return section, name, value.strip()


def load_config(path: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults, then a TOML file, then `--set` overrides, validated.

    Args:
        path: a TOML file, or the name of a bundled config (`phantom_demo` or `phantom_demo.toml`).
        overrides: `section.key=value` strings; values are typed by the key's type (lists as
            `[1, 2]` or `1,2`; optional keys accept `none`).

    Returns:
        The resolved config.

    Raises:
        ConfigError: unreadable file, unknown section/key, wrong type or choice, inconsistent values.
    """
    config = Config()
    if path is not None:
        file = resolve_config_path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read the config {file}: {error}") from None
        config = config.merged(data, str(file))
    config = config.with_overrides(overrides)
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

    data, train, prep, inf = config.data, config.train, config.preprocessing, config.inference
    split = list(data.split)
    need(
        len(split) == 3 and min(split) >= 0 and split[0] > 0 and split[1] > 0,
        f"data.split = {split}: give three sizes (train, val, test), train and val > 0",
    )
    need(len(train.patch) == 3 and min(train.patch) > 0, "train.patch must be three positive sizes (D, H, W)")
    need(len(inf.window) == 3 and min(inf.window) >= 0, "inference.window must be three sizes >= 0")
    need(0 <= inf.overlap < 1, "inference.overlap must be in [0, 1)")
    need(
        len(prep.hu_window) == 2 and prep.hu_window[0] < prep.hu_window[1],
        "preprocessing.hu_window must be [lower, upper] with lower < upper",
    )
    ts = prep.target_spacing
    need(ts is None or (len(ts) == 2 and min(ts) > 0), "preprocessing.target_spacing must be [x, y] mm > 0")
    for name in ("epochs", "batch_size", "val_every", "step_size"):
        need(getattr(train, name) >= 1, f"train.{name} must be at least 1")
    need(train.lr > 0, "train.lr must be > 0")
    need(0 <= train.foreground_prob <= 1, "train.foreground_prob must be in [0, 1]")
    need(0 <= train.tumor_prob <= 1, "train.tumor_prob must be in [0, 1]")
    need(config.loss.smooth >= 0, "loss.smooth must be >= 0")
    need(config.model.fusion in (None, "mean", "learned"), "model.fusion must be mean, learned or none")
    weights = config.loss.class_weight_values
    need(
        not weights or (len(weights) == num_classes(config) and min(weights) >= 0),
        f"loss.class_weight_values needs {num_classes(config)} weights >= 0 (background first) for "
        f"data.task = {data.task!r}",
    )
    need(all(a in (0, 1, 2) for a in config.augment.flip_axes), "augment.flip_axes holds axes 0, 1, 2")
    need(data.min_slices >= 1 and data.crop_margin >= 0, "data.min_slices >= 1, data.crop_margin >= 0")
    classes = tuple(classes_of(config))
    metric = train.best_metric
    need(
        metric == "mean_dice" or metric in {f"{c}_dice" for c in classes},
        f"train.best_metric = {metric!r}: use mean_dice or one of {', '.join(c + '_dice' for c in classes)}",
    )
    need(
        bool(data.root) or data.phantom_cases > 0,
        "data.root is empty: set it to your LiTS/MSD folder (--set data.root=PATH) or set data.phantom_cases",
    )


def to_toml(config: Config) -> str:
    """The config as TOML text (None written as "none"), readable by `load_config`."""
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        for name, value in values.items():
            lines.append(f"{name} = {_toml_value(value)}")
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
    if config.data.task == "liver_tumor":
        return {"liver": (1, 2), "tumor": (2,)}
    return {"liver": (1,)}


def num_classes(config: Config) -> int:
    """Network outputs of the task (background included)."""
    return 3 if config.data.task == "liver_tumor" else 2
