"""Cases split over the processes of a ``torchrun`` launch (one process per GPU, or per CPU share).

``torchrun --nproc_per_node=N -m MPUNetCore segment FOLDER -o OUT`` starts N copies of the command
with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set (and ``--nnodes``/``--rdzv-endpoint`` spread them over
nodes). Each process takes every ``WORLD_SIZE``-th case starting at its rank, runs it exactly as a
single process would, and the failures are gathered on every process over a gloo group (small Python
objects only, so gloo serves CUDA runs too) so that rank 0 prints one merged list and every process
exits with the same code. Without ``WORLD_SIZE`` > 1 nothing here starts a group.

Importing this module does not import torch, so the Slicer batch script (whose process stays
torch-free) reads its share here and runs the gather and the device choice in its background
interpreter: ``python -m MPUNetCore.ranks gather`` (a JSON value on stdin, the JSON list of every rank's
value on stdout) and ``python -m MPUNetCore.ranks device NAME``. Its per-case ``mpunet segment`` children
get :func:`single_process_environment`, so that each runs its one case alone.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, TypeVar

__all__ = ["Ranks", "current_ranks", "single_process_environment"]

T = TypeVar("T")
#: What torchrun sets in each process it starts (and children would inherit).
TORCHRUN_VARIABLES = (
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
    "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT",
)  # fmt: skip
#: A rank may wait this long for the others to finish their cases before the group gives up.
GATHER_TIMEOUT = datetime.timedelta(hours=24)


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` launch.

    Attributes:
        rank: global rank (0 for a plain run).
        world: number of processes (1 for a plain run).
        local_rank: rank on this node (picks the GPU).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes share the work."""
        return self.world > 1

    def share(self, items: Sequence[T]) -> List[T]:
        """This process's items: every ``world``-th one, starting at ``rank`` (all of them when alone)."""
        return list(items[self.rank :: self.world])

    def device(self, name: str) -> str:
        """The device for ``name`` in this process: ``cuda`` becomes ``cuda:LOCAL_RANK`` when split."""
        if self.enabled and name in ("auto", "cuda"):
            try:
                import torch

                if torch.cuda.is_available():
                    return f"cuda:{self.local_rank % max(torch.cuda.device_count(), 1)}"
            except ImportError:
                pass
        return name

    def gather(self, value: Any) -> List[Any]:
        """Every process's picklable ``value``, in rank order (``[value]`` when alone)."""
        if not self.enabled:
            return [value]
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
        values: List[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        """Leave the process group, if one was started."""
        if self.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    text = env.get(key, "")
    try:
        return int(text) if text.strip() else default
    except ValueError:
        raise ValueError(f"{key}={text!r} is not an integer; unset it or launch with torchrun") from None


def current_ranks(env: Optional[Mapping[str, str]] = None) -> Ranks:
    """The :class:`Ranks` that ``torchrun``'s environment variables describe (default: ours).

    Raises:
        ValueError: inconsistent values (a rank outside ``[0, WORLD_SIZE)``).
    """
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", 1)
    rank = _int(env, "RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world} do not fit together; launch with torchrun")
    return Ranks(rank, world, _int(env, "LOCAL_RANK", rank))


def single_process_environment(env: Mapping[str, str]) -> Dict[str, str]:
    """A copy of ``env`` without torchrun's variables: a child started with it is a plain single process."""
    return {k: v for k, v in env.items() if k not in TORCHRUN_VARIABLES and not k.startswith("TORCHELASTIC_")}


def main(argv: Sequence[str]) -> int:
    """``gather``: a JSON value on stdin, every rank's in a JSON list out; ``device NAME``: the device."""
    ranks = current_ranks()
    if list(argv[:1]) == ["gather"] and len(argv) == 1:
        try:
            print(json.dumps(ranks.gather(json.loads(sys.stdin.read()))))
        finally:
            ranks.close()
        return 0
    if list(argv[:1]) == ["device"] and len(argv) == 2:
        print(ranks.device(argv[1]))
        return 0
    print("usage: python -m MPUNetCore.ranks gather < value.json | device NAME", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
