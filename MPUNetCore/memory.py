"""Memory budget of a run: estimate before allocating, refuse with the numbers, explain running out.

A header with a huge spacing (25-60 mm slices resampled to 1 mm, or 1e6 mm) or a huge size makes the
network grid, and every buffer on it, enormous. :func:`check_run_memory` estimates the peak memory of a
segmentation from the sizes alone and raises :class:`MemoryBudgetError` (a ``ValueError``: exit code 2
in the command line) when it exceeds the budget: ``--max-memory`` or, by default, the memory the
machine has available now. :func:`memory_error_message` turns a ``MemoryError`` or
``torch.OutOfMemoryError`` that happens anyway into one line naming the fix.
"""

from __future__ import annotations

import os
import re
from typing import Optional, Sequence, Union

#: Bytes of activations per window voxel and per channel of the first layer, for one window in eval
#: mode, as resident memory with the tuned allocator (``MPUNetCore.allocator``, which keeps freed
#: blocks): the full-width released MPU-Net (16 channels) measured 88 at 16 x 128 x 128 and about 85 at
#: 48 x 256 x 256 (a 512 x 512 x 400 run peaking at 5.51 GiB); 90 keeps the estimate above both.
ACTIVATION_BYTES_PER_VOXEL_CHANNEL = 90
#: Resident memory of the process before any data: Python, torch, SimpleITK and MPUNetCore loaded
#: (318 MB measured on Linux), plus thread pools and libraries' caches.
RUNTIME_BYTES = 400 * 2**20
_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


class OutOfMemory(MemoryError):
    """Memory ran out; the message is already worded for the user (see :func:`memory_error_message`)."""


class MemoryBudgetError(ValueError):
    """A run would need more memory than its budget (the message gives both numbers and the fixes)."""


def parse_memory(text: Union[str, int, float]) -> int:
    """Bytes from a size such as ``"4G"``, ``"512M"``, ``"1.5GiB"`` or a plain number of bytes.

    Units are binary (K = 1024). Raises ValueError on anything else.
    """
    if isinstance(text, (int, float)):
        value, unit = float(text), ""
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGTP]?)(I?B)?\s*", str(text).upper())
        if not match:
            raise ValueError(f"memory size {text!r} is not understood; write it like 4G, 512M or 16GiB")
        value, unit = float(match.group(1)), match.group(2)
    if not value > 0:
        raise ValueError(f"memory size {text!r} must be more than zero")
    return int(value * _UNITS[unit])


def format_bytes(n: float) -> str:
    """A byte count in binary units with three significant digits (e.g. ``"3.42 GiB"``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            break
        n /= 1024.0
    if unit == "PiB" and n >= 1024:
        return f"{n / 1024:.3g} EiB" if n < 1024**2 else f"{n:.3g} PiB"
    return f"{n:.3g} {unit}"


def available_memory() -> Optional[int]:
    """Memory the machine can give this process now (Linux MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def budget(max_memory: Union[None, str, int] = None) -> Optional[int]:
    """The budget in bytes: ``max_memory`` parsed, else :func:`available_memory` (None: unknown)."""
    return parse_memory(max_memory) if max_memory is not None else available_memory()


def _product(values: Sequence[int]) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def first_layer_channels(model) -> int:
    """Output channels of the model's first convolution (a proxy for its activation memory)."""
    for module in model.modules():
        channels = getattr(module, "out_channels", None)
        if isinstance(channels, int) and hasattr(module, "kernel_size"):
            return channels
    return 16


def model_bytes(model) -> int:
    """Bytes of a model's parameters and buffers (0 for an object without them)."""
    try:
        tensors = list(model.parameters()) + list(model.buffers())
    except AttributeError:
        return 0
    return sum(t.numel() * t.element_size() for t in tensors)


def estimate_run_bytes(
    input_shape: Sequence[int],
    network_shape: Sequence[int],
    classes: int,
    window_voxels: int,
    batch_size: int,
    base_channels: int,
    activations_on_host: bool = True,
    model_bytes: int = 0,
) -> int:
    """Peak host memory of one segmentation, estimated from sizes only (no allocation).

    The process itself (:data:`RUNTIME_BYTES`) and the model's parameters, the input as float32,
    the network-grid image (and its padded copy) and its accumulators (one per class plus the weight
    sum), the label map and the activations of one batch of windows, plus post-processing (about 6
    bytes per input voxel), counted on top because freed memory is not always reused.

    Args:
        input_shape: (z, y, x) of the input.
        network_shape: (z, y, x) of the network grid as padded for the sliding window.
        classes: output classes of the model.
        window_voxels: voxels of one network window.
        batch_size: windows per forward pass.
        base_channels: channels of the first layer (see :func:`first_layer_channels`).
        activations_on_host: count the activations (False when they live on a GPU).
        model_bytes: bytes of the model's parameters and buffers (on the host).

    Returns:
        The estimate in bytes.
    """
    n_in, n_net = _product(input_shape), _product(network_shape)
    acts = window_voxels * batch_size * base_channels * ACTIVATION_BYTES_PER_VOXEL_CHANNEL
    network_phase = n_in + 4 * (classes + 3) * n_net + (acts if activations_on_host else 0)
    # Post-processing is added, not overlapped: the allocator may keep the network phase's freed
    # memory (measured: 16 x 256 x 256 windows on 512 x 512 x 400 peaked 0.49 GiB above the network).
    return RUNTIME_BYTES + int(model_bytes) + 4 * n_in + network_phase + 6 * n_in


def check_run_memory(
    name: str,
    input_shape: Sequence[int],
    spacing: Sequence[float],
    network_shape: Sequence[int],
    network_spacing: Sequence[float],
    needed: int,
    max_memory: Union[None, str, int] = None,
    source: Optional[str] = None,
    fix: str = "",
) -> None:
    """Refuse a run whose estimated peak memory exceeds the budget.

    Args:
        name: the input, for the message.
        input_shape: (z, y, x) of the input; spacing (x, y, z) mm.
        spacing: its voxel spacing (x, y, z) in mm.
        network_shape: (z, y, x) of the network grid; network_spacing its (x, y, z) spacing.
        network_spacing: the network grid's spacing.
        needed: the estimate (:func:`estimate_run_bytes`).
        max_memory: the budget (``"4G"``, bytes) or None for the available memory.

    Raises:
        MemoryBudgetError: the estimate exceeds the budget.
    """
    limit = budget(max_memory)
    if limit is None or needed <= limit:
        return
    if source is None:
        source = f"--max-memory {format_bytes(limit)}" if max_memory is not None else "available memory"
    z, y, x = (int(v) for v in input_shape)
    nz, ny, nx = (int(v) for v in network_shape)
    raise MemoryBudgetError(
        f"{name}: the run would need about {format_bytes(needed)} of memory but the budget is "
        f"{format_bytes(limit)} ({source}): the {x} x {y} x {z} voxels of "
        + " x ".join(f"{s:.4g}" for s in spacing)
        + f" mm become a network grid of {nx} x {ny} x {nz} voxels of "
        + " x ".join(f"{s:.4g}" for s in network_spacing)
        + " mm. Check the voxel spacing in the file's header (CT slices are 0.5-10 mm apart); "
        f"if it is right, {fix}run on a machine with more memory or raise --max-memory."
    )


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``MemoryError``, ``torch.OutOfMemoryError`` and allocator failures (RuntimeError)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return type(error).__name__ == "OutOfMemoryError" or (
        isinstance(error, RuntimeError)
        and ("out of memory" in text.lower() or "DefaultCPUAllocator: can't allocate" in text)
    )


def memory_error_message(error: BaseException, what: str = "the run") -> str:
    """One line for an out-of-memory error: where it happened and the fixes."""
    if isinstance(error, OutOfMemory):
        return str(error)
    text = str(error).lower()
    gpu = any(word in text for word in ("cuda", "gpu", "mps"))
    place = "GPU" if gpu else "computer"
    fixes = "pass a smaller --batch-size (e.g. --batch-size 1)"
    fixes += ", or --device cpu to use the computer's memory instead" if gpu else ", or close other programs"
    return f"{what} ran out of {place} memory; {fixes} (--max-memory sets the budget checked before a run)."
