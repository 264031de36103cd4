"""PyTorch DDP set-up for runs launched with `torchrun` (one process per GPU, or gloo on CPU)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, List

import torch
import torch.distributed as dist

from MPUNetCore.inference import select_device


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
