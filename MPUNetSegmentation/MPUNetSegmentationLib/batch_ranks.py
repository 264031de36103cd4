"""The batch script under ``torchrun``: this process's share of the cases, and the merged report.

``torchrun --nproc_per_node=N mpunet_batch.py ...`` (plain Python) or ``torchrun --nproc_per_node=N
--no-python Slicer --no-main-window --python-script mpunet_batch.py -- ...`` starts N batch processes
with ``RANK``/``WORLD_SIZE`` set. Each takes every ``WORLD_SIZE``-th case (``MPUNetCore.ranks``, as
``mpunet segment FOLDER`` does). The batch process stays torch-free, so what needs torch.distributed
runs in the background interpreter, which inherits torchrun's variables: the device of this rank
(``cuda`` -> ``cuda:LOCAL_RANK``) and the gather of every rank's report over gloo, after which rank 0
holds the merged report and writes the metrics table once.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from MPUNetCore.ranks import Ranks, current_ranks


@dataclass(frozen=True)
class BatchRanks:
    """This batch process's place in a torchrun launch, with the interpreter that talks to the others."""

    ranks: Ranks
    python: str

    @classmethod
    def current(cls, python: Optional[str] = None) -> BatchRanks:
        """The ranks torchrun's variables describe; ``python`` runs the helpers (default: background)."""
        from .dependencies import python_executable

        return cls(current_ranks(), python or python_executable())

    @property
    def enabled(self) -> bool:
        return self.ranks.enabled

    def log_name(self, name: str) -> str:
        """``name`` for rank 0 (or a plain run), ``stem.rank-R.log`` for the other ranks."""
        stem, dot, suffix = name.rpartition(".")
        return name if self.ranks.rank == 0 else f"{stem}.rank-{self.ranks.rank}{dot}{suffix}"

    def device(self, name: str) -> str:
        """The device of this rank for ``name`` (only ``auto``/``cuda`` change, and only when split)."""
        if not self.enabled or name not in ("auto", "cuda"):
            return name
        return self._helper(["device", name]).strip()

    def gather(self, value: Any) -> List[Any]:
        """Every rank's JSON-able ``value`` in rank order (``[value]`` alone); every rank must call it."""
        if not self.enabled:
            return [value]
        return json.loads(self._helper(["gather"], json.dumps(value)).strip().splitlines()[-1])

    def _helper(self, args: Sequence[str], stdin: str = "") -> str:
        from .dependencies import background_environment, mpunetcore_root

        command = [self.python, "-m", "MPUNetCore.ranks", *args]
        done = subprocess.run(
            command, input=stdin, capture_output=True, text=True,
            env=background_environment(), cwd=str(mpunetcore_root()),
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(
                f"rank {self.ranks.rank}: {' '.join(command[1:])} failed: {done.stderr.strip()}"
            )
        return done.stdout


def merge(parts: Sequence[Dict[str, List[Any]]], order: Sequence[str]) -> Dict[str, List[Any]]:
    """The ranks' ``{"done": [name], "kept": [name], "failed": [[name, reason]]}`` as one, in case order."""
    position = {name: index for index, name in enumerate(order)}

    def key(item: Any) -> int:
        return position.get(item if isinstance(item, str) else item[0], len(order))

    keys = ("done", "kept", "failed")
    return {k: sorted((item for part in parts for item in part.get(k, [])), key=key) for k in keys}
