"""Snapshots of a folder tree, for tests that must prove a refused run wrote nothing and changed nothing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Union


def snapshot(root: Union[str, Path]) -> Dict[str, str]:
    """Every entry under `root`: files by SHA-256 of their bytes, other entries by kind (links: target).

    Args:
        root: the folder to record (links are recorded, not followed).

    Returns:
        ``{relative path: description}``; two equal snapshots mean nothing was added, removed or changed.
    """
    root = Path(root)
    entries: Dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[key] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                entries[key] = "folder"
            elif not path.is_file():  # a pipe or device: reading it could block
                entries[key] = "special file"
            else:
                entries[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def user_words(text: str) -> bool:
    """True when a message shows no Python API wording (keyword arguments, torch's unpickling advice)."""
    return not any(word in text for word in ("=True", "=False", "weights_only", "Traceback"))
