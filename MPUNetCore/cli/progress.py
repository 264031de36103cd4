"""Progress reporting for the command line: a terminal bar, or JSON lines for a parent process."""

from __future__ import annotations

import json
import sys
import time
from typing import Optional, TextIO


class ProgressBar:
    """A one-line progress bar on stderr, or one JSON object per update (`--progress json`).

    JSON lines (`{"event": "progress", "task": ..., "done": k, "total": n}`) are what the Slicer
    module reads from its background process.

    Args:
        task: what is being counted, e.g. "case-1: windows".
        mode: "bar", "json" or "none".
        stream: where to write; stderr by default.
    """

    def __init__(self, task: str, mode: str = "bar", stream: Optional[TextIO] = None) -> None:
        if mode not in ("bar", "json", "none"):
            raise ValueError(f"progress mode must be 'bar', 'json' or 'none', not {mode!r}")
        self.task, self.mode = task, mode
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def __call__(self, done: int, total: Optional[int]) -> None:
        if self.mode == "json":
            record = {"event": "progress", "task": self.task, "done": done, "total": total}
            print(json.dumps(record), file=self.stream, flush=True)
            return
        if self.mode == "none":
            return
        now = time.perf_counter()
        finished = total is not None and done >= total
        if not finished and now - self._last_draw < 0.2:  # keep redraws cheap
            return
        self._last_draw = now
        elapsed = now - self.start
        if total:
            width = 30
            filled = int(width * done / total)
            eta = elapsed / done * (total - done) if done else 0.0
            bar = "#" * filled + "." * (width - filled)
            line = f"{self.task} [{bar}] {done}/{total} {elapsed:5.1f}s eta {eta:4.0f}s"
        else:
            line = f"{self.task} {done} {elapsed:5.1f}s"
        end = "\n" if finished else ""
        print(f"\r{line}", end=end, file=self.stream, flush=True)
