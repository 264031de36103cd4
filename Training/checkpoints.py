"""Checkpoint files that a crash, a kill or a full disk can never leave missing or unreadable.

A checkpoint is written to a temporary file beside it and moved into place only when complete. Before
that move, the checkpoint it replaces is kept as ``<name>.prev.pt`` (a hard link, so no extra disk and
no moment without a complete ``<name>.pt``). A damaged checkpoint is reported in one line naming the
file and, when there is one, the previous good checkpoint and how to resume from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import torch

from MPUNetCore.fileutils import atomic_output


def previous_path(path: Path) -> Path:
    """Where the checkpoint replaced by the last save of ``path`` is kept (last.pt: last.prev.pt)."""
    path = Path(path)
    return path.with_name(path.stem + ".prev" + path.suffix)


def _keep_previous(path: Path) -> None:
    """Make ``<name>.prev.pt`` the current ``path`` (atomically; ``path`` itself stays in place)."""
    if not path.exists():
        return
    prev = previous_path(path)
    staging = prev.with_name("." + prev.name + ".tmp")
    try:
        if staging.exists():
            staging.unlink()
        os.link(path, staging)  # same file, second name: costs no space
    except OSError:  # file systems without hard links: keep a copy instead
        import shutil

        shutil.copy2(path, staging)
    os.replace(staging, prev)


def save_checkpoint(path: Path, state: Dict[str, Any]) -> None:
    """Write ``state`` atomically; the checkpoint it replaces stays on disk as ``<name>.prev.pt``.

    A failure while writing (a full disk, a kill) leaves both the current and the previous checkpoint
    untouched and no partial file.
    """
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(state, tmp)
        _keep_previous(path)


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """A checkpoint written by `save_checkpoint` (tensors and plain data only).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is truncated or damaged; the message names the previous good checkpoint
            when there is one and says how to resume from it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damage
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        prev = previous_path(path)
        hint = (
            f" The previous checkpoint {prev} is kept: to continue from it, replace the damaged file with it "
            f"(mv '{prev}' '{path}') and run train --resume again."
            if prev.exists()
            else " No earlier checkpoint is kept beside it: start the run again (train --overwrite)."
        )
        raise ValueError(
            f"checkpoint {path} is truncated or damaged ({reason[:160]}): it cannot be loaded.{hint}"
        ) from None
