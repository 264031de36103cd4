"""How to run a model over a volume: one frozen, validated settings type for every entry point.

The model card's ``inference`` section, the ``mpunet segment`` options, the model worker's JSON
requests, the Slicer module's options and Training's validation all describe a run with the same
:class:`InferenceSettings`; ``segment``, ``predict_network_probabilities`` and
``sliding_window_predict`` take it instead of long keyword lists.

This module imports neither torch nor numpy: the Slicer GUI process builds settings too.

Example:
    >>> settings = InferenceSettings.from_dict({"window": [16, None, None], "overlap": 0.5})
    >>> settings.replace(tta=True).blending
    <Blending.GAUSSIAN: 'gaussian'>
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

__all__ = [
    "Blending",
    "DeviceKind",
    "InferenceSettings",
    "InferenceSettingsError",
    "Layout",
    "Precision",
    "parse_device",
    "resolve_settings",
]

Window = Tuple[Optional[int], ...]
TTA = Union[bool, Tuple[Tuple[int, ...], ...]]


class InferenceSettingsError(ValueError):
    """Settings that cannot be used; the message names where they came from and the fix."""


class Blending(str, Enum):
    """How overlapping windows are weighted."""

    GAUSSIAN = "gaussian"
    CONSTANT = "constant"


class Precision(str, Enum):
    """Numeric precision of the forward pass ("auto": bf16/fp16 autocast on CUDA, float32 elsewhere)."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


class Layout(str, Enum):
    """Memory layout of the network's forward ("auto": the measured rule of ``inference.layout``)."""

    AUTO = "auto"
    CONTIGUOUS = "contiguous"
    CHANNELS_LAST = "channels_last"


class DeviceKind(str, Enum):
    """Where the network runs ("auto": CUDA, then Apple MPS, then the CPU)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    MPS = "mps"


def parse_device(device: Any) -> Tuple[DeviceKind, Optional[int]]:
    """Split a device name into its kind and CUDA index ("gpu" is "cuda"; a ``torch.device`` works too).

    Raises:
        InferenceSettingsError: on anything but auto, cpu, cuda (or gpu), cuda:N or mps.
    """
    value = str(device).strip().lower()
    kind, _, index = value.partition(":")
    kind = "cuda" if kind == "gpu" else kind
    if kind in {k.value for k in DeviceKind}:
        if not index:
            return DeviceKind(kind), None
        if kind == "cuda" and index.isdigit():
            return DeviceKind.CUDA, int(index)
    raise InferenceSettingsError(f"device must be auto, cpu, cuda (or gpu), cuda:N or mps, not {device!r}")


def _enum(kind: type, value: Any, name: str) -> Any:
    try:
        return kind(value.value if isinstance(value, Enum) else str(value).strip().lower())
    except ValueError:
        choices = ", ".join(repr(k.value) for k in kind)
        raise InferenceSettingsError(f"{name} must be one of {choices}, got {value!r}") from None


def _window(value: Any, name: str, allow_none: bool = False) -> Optional[Window]:
    """A window as a tuple; None or 0 entries mean the full extent of that axis."""
    if value is None and allow_none:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) not in (2, 3):
        raise InferenceSettingsError(f"{name} must be (D, H, W) or (H, W) sizes, got {value!r}")
    out = []
    for size in value:
        if size in (None, 0):
            out.append(None)
        elif isinstance(size, int) and not isinstance(size, bool) and size > 0:
            out.append(int(size))
        else:
            raise InferenceSettingsError(f"{name} sizes must be positive integers or null, got {value!r}")
    return tuple(out)


def _tta(value: Any) -> TTA:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    try:
        return tuple(tuple(int(a) for a in axes) for axes in value)
    except (TypeError, ValueError):
        raise InferenceSettingsError(
            f"tta must be true, false or a list of axis lists, got {value!r}"
        ) from None


@dataclass(frozen=True)
class InferenceSettings:
    """Everything that decides how a model is applied to a volume (the model and its input aside).

    Attributes:
        window: network-space window (D, H, W), multiples of ``model.input_multiple``; None entries
            (0 in JSON or TOML also) mean the full extent; (H, W) or D = 1 for a 2-D model.
        overlap: minimum overlap between neighbouring windows, in [0, 1).
        blending: weighting of overlapping windows.
        sigma_scale: gaussian sigma as a fraction of the window.
        batch_size: windows per forward pass.
        tta: mirroring test-time augmentation: True (all flips), False, or axis tuples to add.
        postprocess: keep the largest liver component and only tumours touching the liver.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" ("gpu" is read as "cuda").
        precision: autocast precision of the forward pass.
        layout: memory layout of the forward pass: "contiguous" (plain PyTorch), "channels_last"
            (channels-last tensors and oneDNN convolutions, see ``MPUNetCore.inference.layout``) or
            "auto" (the measured rule there). The same probabilities to float32 rounding.
        crop_to_body: run the network only on the in-plane bounding box of the body (everything above
            the lower HU clip, plus ``body_margin``). Off by default: the network then sees less air
            than in training, so verify on real weights first.
        body_margin: network-space voxels of air kept around the body's bounding box.
        click_window: the window for one region around a clicked point (the training patch when
            None; see ``MPUNetCore.worker.click_window``).
    """

    window: Window = (48, 256, 256)
    overlap: float = 0.25
    blending: Blending = Blending.GAUSSIAN
    sigma_scale: float = 0.125
    batch_size: int = 1
    tta: TTA = False
    postprocess: bool = True
    device: str = "auto"
    precision: Precision = Precision.AUTO
    layout: Layout = Layout.AUTO
    crop_to_body: bool = False
    body_margin: int = 8
    click_window: Optional[Window] = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("window", _window(self.window, "window"))
        put("click_window", _window(self.click_window, "click_window", allow_none=True))
        put("blending", _enum(Blending, self.blending, "blending"))
        put("precision", _enum(Precision, self.precision, "precision"))
        put("layout", _enum(Layout, self.layout, "layout"))
        kind, index = parse_device(self.device)
        put("device", kind.value if index is None else f"{kind.value}:{index}")
        put("tta", _tta(self.tta))
        for name in ("postprocess", "crop_to_body"):
            if not isinstance(getattr(self, name), bool):
                raise InferenceSettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, kind in (
            ("overlap", float),
            ("sigma_scale", float),
            ("batch_size", int),
            ("body_margin", int),
        ):
            put(name, _number(getattr(self, name), kind, name))
        if not 0.0 <= self.overlap < 1.0:
            raise InferenceSettingsError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.sigma_scale <= 0:
            raise InferenceSettingsError(f"sigma_scale must be > 0, got {self.sigma_scale}")
        if self.batch_size < 1:
            raise InferenceSettingsError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.body_margin < 0:
            raise InferenceSettingsError(f"body_margin must be >= 0, got {self.body_margin}")

    @property
    def device_kind(self) -> DeviceKind:
        """The kind of device (auto, cpu, cuda, mps), without a CUDA index."""
        return parse_device(self.device)[0]

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        """The setting names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(
        cls, data: Optional[Mapping[str, Any]], source: str = "inference settings"
    ) -> InferenceSettings:
        """Build settings from JSON/TOML data; keys left out keep their defaults.

        Args:
            data: a mapping of setting names to values (lists stand for tuples); None means {}.
            source: what the data came from (a card's path, "request 7", ...), named in errors.

        Raises:
            InferenceSettingsError: an unknown key (the valid keys and the closest match are named) or
                an invalid value, with ``source`` in the message.
        """
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise InferenceSettingsError(f"{source}: inference settings must be an object, got {data!r}")
        _check_keys(data, source)
        try:
            return cls(**dict(data))
        except InferenceSettingsError as error:
            raise InferenceSettingsError(f"{source}: {error}") from None

    def replace(self, **changes: Any) -> InferenceSettings:
        """A copy with ``changes`` applied; unknown names raise :class:`InferenceSettingsError`."""
        _check_keys(changes, "inference settings")
        return replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready data (enums as strings, tuples as lists); ``from_dict`` reads it back."""
        out: Dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[key] = value
        return out


def resolve_settings(
    settings: Optional[InferenceSettings], overrides: Mapping[str, Any]
) -> InferenceSettings:
    """``settings`` (the defaults when None) with keyword ``overrides`` applied and validated."""
    if settings is None:
        settings = InferenceSettings()
    elif not isinstance(settings, InferenceSettings):
        raise InferenceSettingsError(
            f"settings must be an InferenceSettings (or None), got {type(settings).__name__}; "
            "pass single options by keyword, e.g. window=(48, 256, 256)"
        )
    return settings.replace(**overrides) if overrides else settings


def _number(value: Any, kind: type, name: str) -> Any:
    """``value`` as a float or an int (an int must be whole; True and False are not numbers here)."""
    try:
        if isinstance(value, bool) or (kind is int and int(value) != value):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        article = "an integer" if kind is int else "a number"
        raise InferenceSettingsError(f"{name} must be {article}, got {value!r}") from None


def _check_keys(data: Mapping[str, Any], source: str) -> None:
    valid = InferenceSettings.keys()
    unknown = [str(k) for k in data if k not in valid]
    if unknown:
        hints = [difflib.get_close_matches(k, valid, n=1) for k in unknown]
        named = ", ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints)
        )
        raise InferenceSettingsError(
            f"{source}: unknown inference setting(s) {named}; valid keys: {', '.join(valid)}"
        )
