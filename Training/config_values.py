"""Typed config keys: what each key's annotation allows, and the conversion of TOML / `--set` values.

A config section is a frozen dataclass deriving from `Section`; each field's annotation is its type
(`bool`, `int`, `float`, `str`, `Tuple[int, ...]`, `Tuple[float, ...]`, or `Optional[...]` of one of
them) and `key(default, help, choices)` gives its default, help line and allowed values. Values are
checked and converted when a section is built, so a `Config` never holds a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from functools import cache
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class ConfigError(ValueError):
    """A config that cannot be used: the message names the key and the valid choices."""


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """One config key as its annotation and `key(...)` describe it."""

    name: str
    kind: type  # bool, int, float, str, or tuple (then `item` is the element type)
    item: Optional[type]
    optional: bool  # None allowed (written "none" in TOML and on the command line)
    choices: Tuple[str, ...]
    help: str

    def describe(self) -> str:
        """The expected type in words, e.g. "list of int or none"."""
        kind = f"list of {self.item.__name__}" if self.item else self.kind.__name__
        return f"{kind}{' or none' if self.optional else ''}"


def key(default: Any, help: str, choices: Iterable[str] = ()) -> Any:
    """A config key's dataclass field: its default, help line and (for strings) allowed values."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": tuple(choices)})


@cache
def key_specs(section: type) -> Dict[str, KeySpec]:
    """`{key: KeySpec}` of a section class, in declaration order."""
    hints = typing.get_type_hints(section)
    specs: Dict[str, KeySpec] = {}
    for f in dataclasses.fields(section):
        kind, optional, item = hints[f.name], False, None
        args = typing.get_args(kind)
        if typing.get_origin(kind) is typing.Union and type(None) in args:
            optional, kind = True, next(a for a in args if a is not type(None))
        if typing.get_origin(kind) is tuple:
            kind, item = tuple, typing.get_args(kind)[0]
        specs[f.name] = KeySpec(f.name, kind, item, optional, f.metadata["choices"], f.metadata["help"])
    return specs


class Section:
    """Base of the config sections (frozen dataclasses): values are converted to the keys' types.

    Subclasses set `NAME`, the section's name in TOML (`[train]`) and in `--set train.lr=...`.
    """

    NAME = ""

    def __post_init__(self) -> None:
        for name, spec in key_specs(type(self)).items():
            value = convert(spec, f"{self.NAME}.{name}", getattr(self, name), type(self).__name__)
            object.__setattr__(self, name, value)

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        """The section's keys, in order."""
        return tuple(key_specs(cls))

    def to_dict(self) -> Dict[str, Any]:
        """`{key: value}` with TOML/JSON types (tuples as lists)."""
        return {name: _plain(getattr(self, name)) for name in self.keys()}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def convert(spec: KeySpec, name: str, value: Any, source: str) -> Any:
    """Check and convert one value to its key's type.

    Strings (from `--set`) are parsed: `true`/`false`, numbers, lists as `[1, 2]` or `1,2`, `none`.

    Raises:
        ConfigError: one line naming the source, the key, the expected type and the key's help.
    """
    if spec.optional and (value is None or (isinstance(value, str) and value.lower() == "none")):
        return None
    try:
        if spec.kind is tuple:
            value = tuple(_item(spec.item or str, v) for v in _sequence(value))
        else:
            value = _item(spec.kind, value)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"{source}: {name} = {value!r} is invalid ({error}); expected {spec.describe()}: {spec.help}"
        ) from None
    if spec.choices and value not in spec.choices:
        raise ConfigError(f"{source}: {name} = {value!r} is not one of {', '.join(spec.choices)}")
    return value


def _sequence(value: Any) -> Sequence[Any]:
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text.startswith("[") else [v for v in text.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)):
        raise TypeError("expected a list such as [1, 2, 3]")
    return value


def _item(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(f"{value!r} is not an integer")
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        return float(value)
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def did_you_mean(word: str, valid: Iterable[str], template: str = "{}") -> str:
    """The hint "; did you mean X?" for the closest valid name (X in ``template``), or ""."""
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {template.format(close[0])}?" if close else ""
