"""Model bundles: a weights file plus a JSON model card that says how to build and use the network.

A bundle is two files side by side::

    my-model.json   the model card: architecture, classes, preprocessing, inference window,
                    training data, reported metrics, version, and the weights' SHA-256
    my-model.pt     the weights: a plain state dict saved with `torch.save`

Weights are always loaded with `weights_only=True`, so a bundle cannot run code; the SHA-256 in the
card is checked before the weights are read.
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from MPUNetCore.fileutils import atomic_output, check_writable, sha256_of
from MPUNetCore.model_card import (  # noqa: F401  (re-exported: the card is half of the bundle API)
    CARD_FORMAT,
    BundleError,
    ModelCard,
    SegmentClass,
    card_path_for,
    read_card,
)
from MPUNetCore.model_card import weights_path as checked_weights_path
from MPUNetCore.networks.registry import build_network  # noqa: F401  (re-exported for bundle users)


@dataclass
class Bundle:
    """A loaded bundle: its card, the network in eval mode, and where the card lies."""

    card: ModelCard
    model: nn.Module
    path: Optional[Path] = None


def load_bundle(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Bundle:
    """Load a bundle: check the card, the weights' checksum, and that weights fit the network.

    Args:
        path: the card (.json), the weights (.pt) or a folder holding one bundle.
        device: where to put the network.

    Returns:
        The card and the network in eval mode on `device`.

    Raises:
        BundleError: a missing, corrupt, tampered or mismatched card or weights file.
    """
    card_path = card_path_for(path)
    card = read_card(card_path)
    weights_path = checked_weights_path(card, card_path)  # before anything is opened or hashed
    expected = card.weights.get("sha256")
    if expected and sha256_of(weights_path) != expected:
        raise BundleError(
            f"{weights_path} does not match the SHA-256 in {card_path.name}: the file is corrupt or was "
            "replaced; download or export the model again"
        )
    state = read_weights(weights_path)
    try:
        model = build_network(card.architecture)
    except ValueError as error:
        raise BundleError(f"{card_path}: the architecture cannot be built by this version: {error}") from None
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong_shape:
        details = "; ".join(
            f"{label}: {', '.join(keys[:8])}{' …' if len(keys) > 8 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong_shape),
            )
            if keys
        )
        raise BundleError(
            f"the weights {weights_path} do not fit the architecture in {card_path.name} ({details})"
        )
    model.load_state_dict(state)
    return Bundle(card=card, model=model.to(device).eval(), path=card_path)


def read_weights(path: Path) -> Dict[str, Any]:
    """Read a weights file with `weights_only=True`: tensors and plain containers, never other objects.

    Returns:
        The state dict (a nested `{"state_dict": ...}` is unwrapped).

    Raises:
        BundleError: the file holds other Python objects (it may be unsafe and is not opened further),
            it is not a PyTorch weights file at all (damaged, truncated, another format), or it holds
            no state dict.
    """
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols; the error below says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False: never pass that on
        raise BundleError(
            f"{path} is not a plain weights file: it holds Python objects (or pickle instructions) that a "
            "safe load refuses, which could run code when opened, so it may be unsafe and was not loaded. "
            "Use weights exported by `python -m Training export` or downloaded with `mpunet models download`"
        ) from None
    except Exception:  # torch raises RuntimeError, EOFError, KeyError, IndexError ... for damaged files
        raise BundleError(
            f"cannot read the weights {path}: it is not a PyTorch weights file, or it is damaged or "
            "truncated; export or download the model again"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BundleError(
            f"{path} holds no state dict (a mapping of parameter names to tensors); export or download "
            "the model again"
        )
    return state


def save_bundle(
    model: nn.Module, card: ModelCard, card_path: Union[str, Path], overwrite: bool = False
) -> Path:
    """Write the weights and the card (weights first, both atomically); fills `card.weights`.

    Args:
        model: the trained network.
        card: its card; `weights` is filled in here (file name, SHA-256, size).
        card_path: where the card goes; the weights go beside it with the suffix `.pt`.
        overwrite: whether existing files may be replaced.

    Returns:
        The card's path.
    """
    card_path = Path(card_path)
    weights_path = card_path.with_suffix(".pt")
    for path in (card_path, weights_path):  # refuse before writing anything
        check_writable(path, overwrite)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_output(weights_path, overwrite) as tmp:
        torch.save(state, tmp)
        card.weights = {"file": weights_path.name, "sha256": sha256_of(tmp), "size": tmp.stat().st_size}
    with atomic_output(card_path, overwrite) as tmp:
        tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")
    return card_path
