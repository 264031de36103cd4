"""Load weights saved by the authors' released MPU-Net code into ``MPUNet(preset="released")``.

The released training script saves ``{"net": model.state_dict(), "optimizer": ..., "epoch": ...}``;
its module names differ from ours. The table in :func:`released_key_pairs` maps their key prefixes to
ours (facts about their module names and layer order, e.g. ``encoder1.encoder_stage.0.weight`` is the
first convolution of the first encoder stage). Three modules of the released network are never used
by its ``forward`` (``up1``, ``decoder5``, ``map5``: 1,049,754 parameters); their keys are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

__all__ = ["IGNORED_PREFIXES", "load_released_checkpoint", "load_released_state_dict", "released_key_pairs"]

#: Key prefixes of the released network's unused modules.
IGNORED_PREFIXES = ("up1.", "decoder5.", "map5.")
_WRAPPER_KEYS = ("net", "state_dict", "model_state_dict", "model", "network")
_MAX_LISTED = 12


def released_key_pairs() -> List[Tuple[str, str]]:
    """(released prefix, our prefix) pairs; a key maps by replacing its matching prefix.

    Returns:
        The list of prefix pairs, covering every used module of the released network.
    """
    pairs = [(f"encoder{i}.encoder_stage.", f"encoders.{i - 1}.layers.") for i in range(1, 6)]
    pairs += [(f"decoder{i}.decoder_stage.", f"decoders.{i - 1}.layers.") for i in range(1, 5)]
    pairs += [(f"down{i}.down_conv.", f"downs.{i - 1}.layers.") for i in range(1, 6)]
    pairs += [(f"up{i}.up_conv.", f"ups.{i - 2}.layers.") for i in range(2, 5)]
    pairs += [(f"map{i}.map_conv.0.", f"heads.{i - 1}.conv.") for i in range(1, 5)]
    for i in range(1, 5):  # Att4 gates the deepest level
        for theirs, ours in (("Wx", "x_proj"), ("Wg", "g_proj"), ("psi", "psi")):
            pairs.append((f"Att{i}.{theirs}.", f"gates.{4 - i}.{ours}."))
    pairs += [(f"PCL.attn.{j}.", f"bottleneck.pre.{j}.") for j in range(3)]
    pairs += [(f"PCL.attn.{j}.", f"bottleneck.post.{j - 4}.") for j in range(4, 7)]
    for theirs, ours in (("query_conv.", "query."), ("key_conv.", "key."), ("value_conv.", "value.")):
        pairs.append((f"PCL.attn.3.{theirs}", f"bottleneck.attention.{ours}"))
    pairs.append(("PCL.attn.3.gamma", "bottleneck.attention.gamma"))
    return pairs


def _to_ours(key: str, pairs: List[Tuple[str, str]]) -> Optional[str]:
    for theirs, ours in pairs:
        if key.startswith(theirs):
            return ours + key[len(theirs) :]
    return None


def _unwrap(obj: Any) -> Mapping[str, torch.Tensor]:
    """The state dict itself, also when saved inside a checkpoint dict (e.g. under "net")."""
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(
        "expected a state dict (names -> tensors) or a checkpoint dict holding one under one of "
        f"{_WRAPPER_KEYS}; got {keys}"
    )


def _listing(names: List[str]) -> str:
    more = f" ... and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def load_released_state_dict(model: nn.Module, state_dict: Mapping[str, Any]) -> List[str]:
    """Load a state dict saved by the authors' released code into a ``"released"`` preset MPUNet.

    Accepts the plain state dict, a checkpoint dict wrapping it (``{"net": ...}`` as their training
    script saves, or "state_dict"/"model_state_dict"/"model"), and keys with a ``module.`` prefix
    (``nn.DataParallel``). Keys of the unused modules ``up1``, ``decoder5``, ``map5`` are ignored.
    Nothing is loaded unless every key matches in name and shape.

    Args:
        model: ``MPUNet(preset="released", spatial_dims=3, ...)`` with the checkpoint's in/out
            channels and widths.
        state_dict: the released weights.

    Returns:
        The checkpoint keys that were ignored (those of the unused modules).

    Raises:
        ValueError: wrong model preset, not a state dict, or missing/unexpected/mis-shaped keys
            (listed in the message).
    """
    if getattr(model, "preset", None) != "released" or getattr(model, "spatial_dims", None) != 3:
        raise ValueError(
            "released weights fit only MPUNet(preset='released', spatial_dims=3); got "
            f"{type(model).__name__} with preset={getattr(model, 'preset', None)!r}, "
            f"spatial_dims={getattr(model, 'spatial_dims', None)!r}"
        )
    source = _unwrap(state_dict)
    pairs = released_key_pairs()
    target = model.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    ignored, unexpected, mismatched = [], [], []
    for key, value in source.items():
        bare = key[len("module.") :] if key.startswith("module.") else key
        if bare.startswith(IGNORED_PREFIXES):
            ignored.append(key)
            continue
        ours = _to_ours(bare, pairs)
        if ours is None or ours not in target:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(target[ours].shape):
            mismatched.append(f"{key} {tuple(value.shape)} (model expects {tuple(target[ours].shape)})")
        else:
            mapped[ours] = value
    # BatchNorm's num_batches_tracked only matters when training with momentum=None: tolerate its absence.
    missing = [k for k in target if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing or unexpected or mismatched:
        inverse = {ours: theirs for theirs, ours in pairs}
        named = []
        for k in missing:
            prefix = next((p for p in inverse if k.startswith(p)), None)
            named.append(inverse[prefix] + k[len(prefix) :] if prefix else f"(ours) {k}")
        parts = [f"missing {len(named)}: {_listing(named)}"] if named else []
        parts += [f"unexpected {len(unexpected)}: {_listing(unexpected)}"] if unexpected else []
        parts += [f"wrong shape {len(mismatched)}: {_listing(mismatched)}"] if mismatched else []
        raise ValueError(
            "the state dict does not match the released MPU-Net: "
            + "; ".join(parts)
            + ". Use a checkpoint of the authors' MPUNet and build MPUNet(preset='released') with its "
            "in_channels/out_channels."
        )
    model.load_state_dict(mapped, strict=False)
    return ignored


def load_released_checkpoint(model: nn.Module, path: Union[str, Path]) -> List[str]:
    """Read a released checkpoint file safely (``weights_only=True``) and load it into ``model``.

    Args:
        model: a released-preset 3D MPUNet.
        path: the ``.pth`` file saved by the released training script.

    Returns:
        The ignored keys, see :func:`load_released_state_dict`.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"cannot read {path} as a weights-only PyTorch checkpoint: {exc}") from exc
    return load_released_state_dict(model, checkpoint)
