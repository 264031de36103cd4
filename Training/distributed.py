"""PyTorch DDP set-up for runs launched with `torchrun` (one process per GPU, or gloo on CPU)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, List, TypeVar

import torch
import torch.distributed as dist

from MPUNetCore.inference import select_device

T = TypeVar("T")


class StoppedByMainProcess(ValueError):
    """Rank 0 refused the run and printed why; this process stops with the same exit code, silently."""

    #: the command line prints nothing for it (rank 0's message is the one line the user sees)
    said_by_rank_zero = True


@dataclass
class Context:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True in a multi-process run."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """True on the process that writes files and logs (rank 0)."""
        return self.rank == 0


def setup(device: str = "auto") -> Context:
    """Join the process group that `torchrun` describes (WORLD_SIZE, RANK, LOCAL_RANK), if any.

    CUDA runs use NCCL with one GPU per local rank; CPU runs use gloo. The timeout is long because
    rank 0 may preprocess data or validate while the others wait.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    chosen = select_device(device)
    if chosen.type == "cuda" and world > 1:
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=6))
    return Context(rank, world, local_rank, chosen)


def cleanup(ctx: Context) -> None:
    """Leave the process group."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    """Wait for every process."""
    if ctx.enabled:
        dist.barrier()


def sum_values(ctx: Context, values: List[float]) -> List[float]:
    """Element-wise sum of `values` over the processes (float64)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    if ctx.device.type == "cuda":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def gather_all(ctx: Context, value: Any) -> List[Any]:
    """Every process's `value` (picklable), in rank order, on every process."""
    if not ctx.enabled:
        return [value]
    values: List[Any] = [None] * ctx.world
    dist.all_gather_object(values, value)
    return values


def broadcast(ctx: Context, value: Any) -> Any:
    """Rank 0's `value` on every process."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(ctx: Context, work: Callable[[], T]) -> T:
    """Run `work` on rank 0 only and give every process its result, or its refusal.

    Rank-0-only work followed by a collective call (a barrier) leaves the other processes waiting
    until the group's timeout when rank 0 raises; here the outcome is broadcast first, so that a bad
    config under `torchrun` ends on every process at once.

    Args:
        ctx: this process's place in the run.
        work: what rank 0 does; its result must be picklable.

    Returns:
        Rank 0's result, on every process.

    Raises:
        Exception: on rank 0, whatever `work` raised; on the others :class:`StoppedByMainProcess`.
    """
    if not ctx.enabled:
        return work()
    result, failure, error = None, None, None
    if ctx.main:
        try:
            result = work()
        except Exception as caught:  # every process must hear of it, whatever it is
            error, failure = caught, f"rank 0 stopped the run: {caught}"
    result, failure = broadcast(ctx, (result, failure))
    if error is not None:
        raise error
    if failure is not None:
        raise StoppedByMainProcess(failure)
    return result
