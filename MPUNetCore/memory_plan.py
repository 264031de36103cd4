"""Fit a segmentation into a memory budget by choosing its window and batch size.

The activations of one batch of windows are most of a CPU run's peak (the full-width released model
at 48 x 256 x 256 needs about 4 GiB for them alone), and they are the one part a run can choose: the
input, the network-grid image, the accumulators and the label map are fixed by the scan. So before a
run :func:`plan_memory` walks from the card's window and batch size towards smaller ones and takes the
first whose estimated peak (:func:`MPUNetCore.memory.estimate_run_bytes`) fits the budget:

1. the batch size down to 1 (same labels: windows are independent);
2. the window's depth, one ``input_multiple`` step at a time, down to 16 slices (or the card's depth);
3. the in-plane size, the larger side first, down to 64 x 64.

Each step is no larger than the one before in every axis, so a bigger budget never gives a smaller
window. A window the planner leaves alone gives exactly the labels of a run without planning; a
shrunk window changes where the windows meet (the network sees less context), so the run says so in a
warning line (measured label differences: ``benchmarks/README.md``).

Budget: ``--max-memory`` when given. Otherwise, on the CPU, min(4 GiB, the memory available now): the
4 GiB target applies when the smallest window can meet it; a scan whose fixed buffers alone exceed it
runs against the available memory instead (with the card's window when that fits), as before. When
the network runs on a GPU its activations live there, so only the host buffers are checked against
the available memory and the window is not changed.

Settings the user gave explicitly (``--window``, ``--batch-size``) are kept: a run that cannot fit
with them is refused, naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Iterator, List, Optional, Sequence, Tuple, Union

from .memory import (
    MemoryBudgetError,
    available_memory,
    check_run_memory,
    estimate_run_bytes,
    first_layer_channels,
    format_bytes,
    model_bytes,
    parse_memory,
)

__all__ = ["DEFAULT_CPU_BUDGET", "MIN_WINDOW", "MemoryPlan", "fit_settings", "plan_memory", "resolve_window"]

#: The default CPU budget (issue 14: a 512 x 512 x 400 CT with the full-width model in 4 GiB).
DEFAULT_CPU_BUDGET = 4 * 2**30
#: The smallest window the planner goes down to (depth, height, width), before rounding to the
#: model's input multiple; a card window already smaller is not enlarged.
MIN_WINDOW = (16, 64, 64)

Window3 = Tuple[int, int, int]


@dataclass(frozen=True)
class MemoryPlan:
    """The window and batch size chosen for a budget.

    Attributes:
        window: the (D, H, W) window, full extents resolved.
        batch_size: windows per forward pass.
        estimate: estimated peak memory of the run with them, bytes.
        budget: the budget planned against (None: unknown, nothing was changed).
        fits: the estimate is within the budget (False: even the smallest candidate is over).
        changed: the window or batch size differ from those asked for.
    """

    window: Window3
    batch_size: int
    estimate: int
    budget: Optional[int]
    fits: bool
    changed: bool


def resolve_window(window: Optional[Sequence[Optional[int]]], grid: Sequence[int], multiple: int) -> Window3:
    """(D, H, W) of a settings window: None/0 entries become the grid's extent rounded up to ``multiple``.

    A 2-entry window (a 2-D model) gets depth 1.
    """
    sizes = list(window)[-3:] if window is not None else [None, None, None]
    while len(sizes) < 3:
        sizes.insert(0, 1)
    out = [
        -(-int(full) // multiple) * multiple if size in (None, 0) else int(size)
        for size, full in zip(sizes, grid)
    ]
    return out[0], out[1], out[2]


def _floor(value: int, multiple: int, start: int) -> int:
    """The smallest size the planner goes to: ``value`` rounded up to ``multiple``, never above ``start``."""
    return min(start, max(multiple, -(-value // multiple) * multiple))


def candidates(start: Window3, multiple: int, minimum: Sequence[int] = MIN_WINDOW) -> Iterator[Window3]:
    """Windows from ``start`` down to the minimum: depth first, then the larger in-plane side.

    Each window is no larger than the previous one in every axis.
    """
    d, h, w = start
    yield d, h, w
    low_d = d if d == 1 else _floor(int(minimum[0]), multiple, d)  # a 2-D model keeps depth 1
    while d - multiple >= low_d:
        d -= multiple
        yield d, h, w
    low_h, low_w = _floor(int(minimum[1]), multiple, h), _floor(int(minimum[2]), multiple, w)
    while h - multiple >= low_h or w - multiple >= low_w:
        if h >= w and h - multiple >= low_h or w - multiple < low_w:
            h -= multiple
        else:
            w -= multiple
        yield d, h, w


def plan_memory(
    input_shape: Sequence[int],
    network_shape: Sequence[int],
    classes: int,
    base_channels: int,
    window: Optional[Sequence[Optional[int]]],
    batch_size: int,
    budget: Optional[int],
    multiple: int = 8,
    activations_on_host: bool = True,
    keep: Collection[str] = (),
    minimum: Sequence[int] = MIN_WINDOW,
    weights: int = 0,
) -> MemoryPlan:
    """The largest window and batch size (in the order of the module docstring) that fit ``budget``.

    Args:
        input_shape: (z, y, x) of the input.
        network_shape: (z, y, x) of the network grid (before the sliding window pads it).
        classes: output classes of the model.
        base_channels: channels of the model's first layer (activation memory scales with it).
        window: the window asked for (None entries: full extent).
        batch_size: the batch size asked for.
        budget: bytes; None: unknown (the request is returned unchanged).
        multiple: the model's input multiple (window sizes stay multiples of it).
        activations_on_host: False when the network runs on a GPU (nothing to shrink then).
        keep: setting names not to change: "window", "batch_size".
        minimum: the smallest window to try.
        weights: bytes of the model's parameters (on the host when the network runs on the CPU).

    Returns:
        The plan; ``fits`` is False when even the smallest candidate is over the budget.
    """
    start = resolve_window(window, network_shape, multiple)

    def estimate(win: Window3, batch: int) -> int:
        padded = tuple(max(int(g), int(v)) for g, v in zip(network_shape, win))
        return estimate_run_bytes(
            input_shape,
            padded,
            classes,
            win[0] * win[1] * win[2],
            batch,
            base_channels,
            activations_on_host,
            weights if activations_on_host else 0,
        )

    steps: List[Tuple[Window3, int]] = [(start, int(batch_size))]
    if activations_on_host and "batch_size" not in keep and batch_size > 1:
        steps.append((start, 1))
    if activations_on_host and "window" not in keep:
        steps += [(win, steps[-1][1]) for win in list(candidates(start, multiple, minimum))[1:]]
    for win, batch in steps:
        needed = estimate(win, batch)
        if budget is None or needed <= budget:
            break
    changed = (win, batch) != steps[0]
    return MemoryPlan(win, batch, needed, budget, budget is None or needed <= budget, changed)


def fit_settings(
    volume: Any,
    model: Any,
    preprocessing: Any,
    settings: Any,
    max_memory: Union[None, str, int] = None,
    keep: Collection[str] = (),
    warn: Optional[Any] = None,
) -> Any:
    """``settings`` with the window and batch size planned for the budget (see the module docstring).

    Args:
        volume: the CT (:class:`MPUNetCore.volume_io.Volume`: shape, spacing, path or name).
        model: the network (first-layer width, output classes, input multiple).
        preprocessing: the card's :class:`Preprocessing` (it decides the network grid).
        settings: the run's :class:`InferenceSettings`.
        max_memory: the budget ("4G", bytes); None: the default of the module docstring.
        keep: setting names the user chose explicitly ("window", "batch_size"): never changed.
        warn: called with one line when the window or batch size is changed.

    Returns:
        The settings to run with (the same object when nothing changed).

    Raises:
        MemoryBudgetError: even the smallest window allowed does not fit.
    """
    from .inference.preprocessing import plan_transform

    name = str(volume.path) if getattr(volume, "path", None) is not None else (volume.name or "the volume")
    transform = plan_transform(volume.shape, volume.spacing, preprocessing)
    on_host = _device_kind(settings.device) not in ("cuda", "mps")
    multiple = int(getattr(model, "input_multiple", 8) or 1)

    def plan(limit: Optional[int]) -> MemoryPlan:
        return plan_memory(
            volume.shape,
            transform.network_shape,
            int(getattr(model, "out_channels", 0) or 3),
            first_layer_channels(model),
            settings.window,
            settings.batch_size,
            limit,
            multiple,
            on_host,
            keep,
            weights=model_bytes(model),
        )

    available = available_memory()
    if max_memory is not None:
        limit: Optional[int] = parse_memory(max_memory)
        source = f"--max-memory {format_bytes(limit)}"
    elif on_host:
        limit = DEFAULT_CPU_BUDGET if available is None else min(DEFAULT_CPU_BUDGET, available)
        source = "default budget: min(4 GiB, available memory)"
    else:
        limit, source = available, "available memory"
    chosen = plan(limit)
    if not chosen.fits and max_memory is None and on_host and available is not None and available > limit:
        limit, source = available, "available memory: the 4 GiB default cannot be met"
        chosen = plan(limit)
    if not chosen.fits:
        given = [f"--{k.replace('_', '-')}" for k in ("window", "batch_size") if k in keep]
        fix = (
            f"pass a smaller {' or '.join(given)} (or leave {'them' if len(given) > 1 else 'it'} out to let "
            "the window be chosen for the budget), "
            if given
            else ""
        )
        check_run_memory(
            name,
            volume.shape,
            volume.spacing,
            transform.network_shape,
            transform.network_spacing,
            chosen.estimate,
            limit,
            source=source,
            fix=fix,
        )
        raise MemoryBudgetError(f"{name}: the run does not fit the memory budget")  # not reached
    if not chosen.changed:
        return settings
    window: Tuple[Optional[int], ...] = chosen.window
    if len(settings.window) == 2:
        window = chosen.window[1:]
    if warn is not None:
        asked = " x ".join(str(v) for v in resolve_window(settings.window, transform.network_shape, multiple))
        warn(
            f"window {asked} (batch {settings.batch_size}) would need more than the memory budget of "
            f"{format_bytes(limit or 0)} ({source}); running with window "
            f"{' x '.join(str(v) for v in chosen.window)} (batch {chosen.batch_size}), estimated peak "
            f"{format_bytes(chosen.estimate)}. Labels can differ slightly from the larger window's; "
            "pass --max-memory to set the budget"
        )
    return settings.replace(window=window, batch_size=chosen.batch_size)


def _device_kind(device: str) -> str:
    """The kind ("cpu", "cuda" or "mps") of a settings device; "auto" is resolved as the run would."""
    kind = str(device).split(":")[0]
    if kind != "auto":
        return kind
    from .inference.devices import select_device

    return select_device("auto").type
