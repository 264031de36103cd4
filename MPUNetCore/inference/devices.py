"""Device and numeric-precision selection for inference."""

from __future__ import annotations

import contextlib
from typing import ContextManager, Optional, Union

import torch

DeviceLike = Union[str, torch.device]
_PRECISIONS = {"auto", "float32", "bfloat16", "float16"}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(name: Optional[DeviceLike] = "auto") -> torch.device:
    """Resolve a device name.

    Args:
        name: "auto" (or None): CUDA if available, then Apple MPS, then CPU; or a torch device
            string such as "cpu", "cuda", "cuda:1", "mps"; or a ``torch.device``.

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: for an unknown device name or a device that is not available here.
    """
    if name is None or (isinstance(name, str) and name.strip().lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name.strip().lower() if isinstance(name, str) else name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {name!r} requested but this PyTorch build has no usable CUDA; use 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r} requested but Apple MPS is not available; use 'cpu'")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Map "auto" | "float32" | "bfloat16" | "float16" to the autocast dtype for ``device``.

    "auto" is bfloat16 on CUDA devices that support it, float16 on other CUDA devices, and float32
    on CPU and MPS (CPUs without native bf16 run it emulated, slower than float32).
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(_PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, precision)


def autocast_context(device: torch.device, dtype: torch.dtype) -> ContextManager[object]:
    """``torch.autocast`` for reduced precision, or a no-op context for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
