"""Child Python processes that import this checkout (not an installed copy): their environment, a runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]


def child_env(**extra: str) -> Dict[str, str]:
    """This process's environment with the checkout first on PYTHONPATH and one OpenMP thread.

    Args:
        **extra: further variables (e.g. ``RANK="1"``).

    Returns:
        A new dict for ``subprocess``; ``os.environ`` is not changed.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_python(
    *args: object, cwd: Optional[Path] = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python ARGS`` (this interpreter, :func:`child_env`) and capture its output as text.

    Args:
        *args: the arguments after the interpreter (paths are turned into strings).
        cwd: the child's working folder (default: this process's).
        timeout: seconds before ``subprocess.TimeoutExpired`` fails the calling test.

    Returns:
        The finished process.
    """
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=cwd,
        timeout=timeout,
    )
