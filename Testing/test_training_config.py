"""The typed training config: TOML + `--set` -> frozen `Config` -> TOML, and its one-line refusals.

References: the shipped TOML files themselves (read with `tomllib`), the dataclass defaults, and a
run folder's config.toml saved by the dict-based config before it became typed (its bytes).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9/3.10
    import tomli as tomllib

from Training.cli import main
from Training.config import (
    CONFIG_DIR,
    AugmentConfig,
    Config,
    ConfigError,
    TrainConfig,
    load_config,
    save_config,
    to_toml,
)
from Training.config_values import key_specs

SHIPPED = sorted(CONFIG_DIR.glob("*.toml"))
SAVED_BEFORE = Path(__file__).parent / "data" / "training" / "config_saved_before_typed_config.toml"


def _plain(value: Any) -> Any:
    """A TOML value as the config holds it in `to_dict` ("none" is None)."""
    return None if isinstance(value, str) and value.lower() == "none" else value


def _overrides(path: Path):
    has_root = tomllib.loads(path.read_text(encoding="utf-8"))["data"].get("root")
    return [] if has_root else [f"data.root={path.parent}"]


def test_there_are_shipped_configs():
    assert {p.stem for p in SHIPPED} >= {"phantom_demo", "lits_unet", "lits_mpunet_released"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_toml_to_config_to_dict_is_the_file_with_the_defaults_filled_in(path):
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    config = Config.from_dict(data, str(path))
    result = config.to_dict()
    assert list(result) == [f.name for f in dataclasses.fields(Config)]
    for section, values in result.items():
        written = data.get(section, {})
        for field in dataclasses.fields(type(getattr(config, section))):
            expected = _plain(written[field.name]) if field.name in written else field.default
            expected = list(expected) if isinstance(expected, tuple) else expected
            assert values[field.name] == expected, f"{section}.{field.name}"
            assert type(values[field.name]) is not tuple  # TOML/JSON types only
    assert Config.from_dict(tomllib.loads(to_toml(config))) == config  # the saved text reads back the same


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_shipped_config_loads_with_every_value_of_its_keys_type(path):
    config = load_config(path.stem, _overrides(path))
    for section in Config.section_types():
        values = getattr(config, section)
        for name, spec in key_specs(type(values)).items():
            value = getattr(values, name)
            if value is None:
                assert spec.optional, f"{section}.{name}"
            elif spec.kind is tuple:
                assert isinstance(value, tuple) and all(type(v) is spec.item for v in value), name
            else:
                assert type(value) is spec.kind, f"{section}.{name}"


def test_a_config_saved_before_the_typed_config_loads_and_saves_the_same_bytes(tmp_path):
    config = load_config(SAVED_BEFORE)
    assert config.train.epochs == 50 and config.model.channels == (8, 16, 32, 48, 64)
    assert config.model.dropout is None and config.augment.flip_axes == ()
    # the same bytes, plus the keys added since, at their defaults (which keep the old behaviour)
    added_since = {
        "slice_spacing = 3.0\n": "slice_spacing = 3.0\nantialias = false\n",
        "phantom_slabs = 0.1\n": "phantom_slabs = 0.1\nphantom_steatosis = 0.0\nphantom_recess = []\n",
    }
    expected = SAVED_BEFORE.read_text(encoding="utf-8")
    for line, with_new_keys in added_since.items():
        assert expected.count(line) == 1
        expected = expected.replace(line, with_new_keys)
    assert save_config(config, tmp_path / "config.toml").read_text(encoding="utf-8") == expected


def test_the_config_is_frozen_and_built_sections_are_checked():
    config = load_config("phantom_demo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train = TrainConfig()  # type: ignore[misc]
    assert dataclasses.replace(config.train, epochs="3").epochs == 3  # converted like a --set value
    with pytest.raises(ConfigError, match=r"train.epochs = 'three' is invalid .*expected int"):
        dataclasses.replace(config.train, epochs="three")
    with pytest.raises(ConfigError, match="Config.augment must be AugmentConfig, not"):
        Config(augment={"flip_prob": 0.0})  # type: ignore[arg-type]
    changed = config.merged({"augment": {"flip_prob": 0.0}}, "test")
    assert changed.augment == AugmentConfig(**{**config.augment.to_dict(), "flip_prob": 0.0})
    assert config.augment.flip_prob == 0.5 and changed.train is config.train


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=0.1", "--set train.lrr=0.1: unknown key train.lrr; valid keys of [train]: epochs, "),
        ("train.lrr=0.1", "; did you mean train.lr?"),
        ("trian.lr=0.1", "--set trian.lr=0.1: unknown section [trian]; valid sections: experiment, data, "),
        ("trian.lr=0.1", "; did you mean [train]?"),
        ("train.lr=fast", "train.lr = 'fast' is invalid (could not convert string to float: 'fast'); "
         "expected float: initial learning rate"),
        ("train.patch=16,32,x", "train.patch = '16,32,x' is invalid"),
        ("train.patch=16,32,x", "expected list of int: training patch"),
        ("model.channels=[8, 16.5]", "expected list of int or none"),
        ("train.deterministic=maybe", "train.deterministic = 'maybe' is invalid (expected true or false)"),
        ("train.optimizer=lion", "train.optimizer = 'lion' is not one of adam, adamw, sgd"),
        ("train.lr", "--set 'train.lr': write section.key=value"),
    ],
)  # fmt: skip
def test_bad_overrides_are_one_line_naming_the_override_and_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("phantom_demo", [override])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_misspelt_key_in_a_file_names_the_file_and_the_closest_key(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[data]\nphantom_cases = 2\n\n[train]\nepochs = 3\nbatchsize = 4\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert text.startswith(f"{path}: unknown key train.batchsize; valid keys of [train]: epochs, batch_size")
    assert text.endswith("; did you mean train.batch_size?")
    path.write_text("[data]\nphantom_cases = 2\n\n[train]\nepochs = 2.5\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{path}: train.epochs = 2.5 is invalid .*expected int"):
        load_config(path)
    path.write_text("[data]\nphantom_cases = 2\n\n[train]\nepochs = [3]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{path}: train.epochs = \\[3\\] is invalid"):
        load_config(path)


def test_the_command_line_refuses_an_unknown_key_in_one_line_and_writes_nothing(capsys, tmp_path):
    run = tmp_path / "run"
    code = main(["train", "--config", "phantom_demo", "--set", "train.epoch=1", "--run-dir", str(run)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("mpunet-train train: error: --set train.epoch=1: unknown key train.epoch")
    assert lines[0].endswith("did you mean train.epochs?")
    assert not run.exists()
