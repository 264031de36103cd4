"""Model cards: the JSON half of a model bundle, readable without torch (the Slicer GUI reads it).

See `MPUNetCore.bundle` for what a bundle is and for loading the weights.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

from MPUNetCore import __version__
from MPUNetCore.inference.settings import InferenceSettings, InferenceSettingsError
from MPUNetCore.networks.registry import network_spec

CARD_FORMAT = "mpunet-model-card"
CARD_FORMAT_VERSION = 1


class BundleError(ValueError):
    """A model bundle that cannot be used: the message names the file and the fix."""


@dataclass
class SegmentClass:
    """One output class of a model: its label value, display name and RGB colour in [0, 1]."""

    value: int
    name: str
    color: List[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])


@dataclass
class ModelCard:
    """The JSON model card of a bundle (see the module docstring)."""

    name: str
    architecture: Dict[str, Any]
    classes: List[SegmentClass]
    preprocessing: Dict[str, Any]
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    version: str = "0.0.0"
    description: str = ""
    intended_use: str = "Research use only; not for clinical use."
    training: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    weights: Dict[str, Any] = field(default_factory=dict)
    license: str = ""
    mpunet_version: str = __version__

    def __post_init__(self) -> None:
        if not isinstance(self.inference, InferenceSettings):  # a JSON-style dict
            self.inference = _inference_settings(self.inference, f"model card {self.name!r}")

    def to_dict(self) -> Dict[str, Any]:
        """The card as JSON-ready data, with the format tag first."""
        data: Dict[str, Any] = {"format": CARD_FORMAT, "format_version": CARD_FORMAT_VERSION}
        for key, value in self.__dict__.items():
            if key == "classes":
                value = [c.__dict__ for c in value]
            elif key == "inference":
                value = value.to_dict()
            data[key] = value
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "model card") -> ModelCard:
        """Validate and build a card; every problem is a `BundleError` naming `source`."""
        if data.get("format") != CARD_FORMAT:
            raise BundleError(f"{source} is not an MPUNet model card (missing 'format': '{CARD_FORMAT}')")
        if int(data.get("format_version", 0)) > CARD_FORMAT_VERSION:
            raise BundleError(
                f"{source} uses card format {data['format_version']}, newer than this MPUNet "
                f"({__version__}) understands ({CARD_FORMAT_VERSION}); upgrade mpunet-slicer"
            )
        missing = [k for k in ("name", "architecture", "classes", "preprocessing") if k not in data]
        if missing:
            raise BundleError(f"{source} lacks the field(s) {', '.join(missing)}")
        arch = data["architecture"]
        try:
            network_spec(arch.get("network"), source).check(arch, source)
        except ValueError as error:
            raise BundleError(str(error)) from None
        try:
            classes = [
                SegmentClass(int(c["value"]), str(c["name"]), list(c.get("color", [0.5] * 3)))
                for c in data["classes"]
            ]
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{source}: each class needs a 'value' and a 'name' ({error})") from None
        if sorted(c.value for c in classes) != list(range(len(classes))):
            raise BundleError(f"{source}: class values must be 0..{len(classes) - 1}, one each")
        if int(arch.get("out_channels", len(classes))) != len(classes):
            raise BundleError(
                f"{source}: the network has {arch.get('out_channels')} outputs but the card lists "
                f"{len(classes)} classes"
            )
        known = set(cls.__dataclass_fields__)
        fields = {k: v for k, v in data.items() if k in known and k not in ("classes", "inference")}
        inference = _inference_settings(data.get("inference"), source)
        return cls(classes=classes, inference=inference, **fields)


def _inference_settings(data: Any, source: str) -> InferenceSettings:
    """The card's ``inference`` section as settings; a bad one is a `BundleError` naming ``source``."""
    try:
        return InferenceSettings.from_dict(data, source=f"{source}: 'inference'")
    except InferenceSettingsError as error:
        raise BundleError(str(error)) from None


def card_path_for(path: Union[str, Path]) -> Path:
    """The card of a bundle given as its card, its weights file or its folder."""
    path = Path(path)
    if path.is_dir():
        cards = sorted(path.glob("*.json"))
        if len(cards) != 1:
            raise BundleError(f"{path} must hold exactly one model card (*.json); found {len(cards)}")
        return cards[0]
    if path.suffix == ".json":
        return path
    return path.with_suffix(".json")


def read_card(path: Union[str, Path]) -> ModelCard:
    """Read and validate a model card (the bundle may be given as card, weights or folder)."""
    card_path = card_path_for(path)
    if not card_path.exists():
        raise BundleError(f"no model card at {card_path}; a bundle is a .json card beside its .pt weights")
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"cannot read the model card {card_path}: {error}") from None
    return ModelCard.from_dict(data, source=str(card_path))


def weights_path(card: ModelCard, card_path: Union[str, Path]) -> Path:
    """The weights file a card names, checked to be a plain file inside the card's own folder.

    Checked before anything is opened or hashed: the name must be a bare file name (no folder, no
    `..`, not absolute), and the file must be a regular file whose real location (after symbolic links)
    is in the card's folder. A card can therefore never make the loader read a file elsewhere.

    Args:
        card: the model card.
        card_path: where the card lies.

    Returns:
        The weights' path.

    Raises:
        BundleError: naming the card, the problem and the fix.
    """
    card_path = Path(card_path)
    name = card.weights.get("file") if isinstance(card.weights, dict) else None
    fix = (
        f'put the weights beside the card and name them by file name only, e.g. "file": "{card_path.stem}.pt"'
    )
    if not isinstance(name, str) or not name.strip():
        raise BundleError(f'{card_path} names no weights file in "weights"; {fix}')
    bare = name not in (".", "..") and "/" not in name and "\\" not in name and ":" not in name
    if not bare or Path(name).is_absolute() or Path(name).name != name:
        raise BundleError(
            f"{card_path} names the weights {name!r}, which is not a plain file name in the card's folder; "
            f"weights are only read from beside their card: {fix}"
        )
    path = card_path.parent / name
    folder = card_path.parent.resolve()
    if path.is_symlink() and path.resolve().parent != folder:
        raise BundleError(
            f"the weights {path} named by {card_path} are a link to {path.resolve()}, outside the card's "
            f"folder; copy the weights file itself beside the card"
        )
    if not path.exists():
        raise BundleError(f"the weights {path} named by {card_path} are missing; put them beside the card")
    if not stat.S_ISREG(path.stat().st_mode):
        raise BundleError(f"the weights {path} named by {card_path} are not a regular file; {fix}")
    return path
