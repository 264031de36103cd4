"""Memory-allocator set-up for the processes that run the network (Linux with glibc only).

glibc's ``malloc`` serves every block above a dynamic threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` on free. A 3D network allocates and frees activations of
hundreds of MB per layer and window, so each forward pays for millions of page faults in the kernel:
on the project's 2-core machine one forward of the demo model on a 48 x 256 x 256 window spent 8.4 s
of 10 s in system time (issue 14; ``benchmarks/bench_allocator.py`` measures it). Two glibc tunables
(read by glibc when a process starts, hence the environment variable and the re-execution) keep those
blocks in the heap instead, where freed memory is reused without faults:

* ``glibc.malloc.mmap_threshold=4294967296``: blocks up to 4 GiB come from the heap, not ``mmap``;
* ``glibc.malloc.trim_threshold=17179869184``: free memory at the top of the heap is kept (up to
  16 GiB) instead of being returned to the system after each large free.

The cost is resident memory: freed blocks stay mapped, so the peak RSS is higher (measured in
``benchmarks/README.md``). Nothing else changes: the same kernels compute the same numbers.

Where it applies: the ``mpunet`` command re-executes itself once with the variable set
(:func:`reexec_with_tuned_allocator`), and every child process the project starts gets it
(:func:`allocator_environment`: the Slicer module's background run and click worker, the batch
script's worker, training re-executes like ``mpunet``). ``MPUNET_NO_ALLOCATOR_TUNING=1`` turns it
off; a ``GLIBC_TUNABLES`` that already names a malloc setting is left as the user set it.

macOS and Windows: nothing is done. Their allocators do not take these settings (``GLIBC_TUNABLES``
is a glibc variable); macOS's ``malloc`` keeps large freed regions for reuse by itself, and the
Windows heap has no per-process switch that an environment variable could set. musl-based Linux
(Alpine) is left alone as well.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Dict, List, Mapping, Optional

__all__ = [
    "GLIBC_TUNABLES",
    "OPT_OUT",
    "allocator_environment",
    "applies",
    "reexec_with_tuned_allocator",
]

#: The glibc tunables set for processes that run the network.
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"
#: Set to 1 to leave the allocator alone.
OPT_OUT = "MPUNET_NO_ALLOCATOR_TUNING"
#: Set in the tuned environment, so that a process re-executes at most once.
MARKER = "MPUNET_ALLOCATOR_TUNED"


def _is_glibc() -> bool:
    """True on Linux with glibc (the only C library whose allocator reads ``GLIBC_TUNABLES``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError, AttributeError):
        return platform.libc_ver()[0] == "glibc"


def applies(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether the tuning applies: Linux with glibc, and not turned off in ``env`` (default: ours)."""
    env = os.environ if env is None else env
    return _is_glibc() and env.get(OPT_OUT, "").strip().lower() not in ("1", "true", "yes", "on")


def allocator_environment(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """A copy of ``env`` (default: this process's) with the allocator tunables added where they apply.

    Args:
        env: the environment a child process would get.

    Returns:
        The environment with ``GLIBC_TUNABLES`` set (appended to one that names no malloc setting)
        and the marker that stops a re-execution; ``env`` unchanged (copied) where it does not apply.
    """
    out = dict(os.environ if env is None else env)
    if not applies(out):
        return out
    current = out.get("GLIBC_TUNABLES", "")
    if "glibc.malloc." not in current:
        out["GLIBC_TUNABLES"] = f"{current}:{GLIBC_TUNABLES}" if current else GLIBC_TUNABLES
    out[MARKER] = "1"
    return out


def _command_line() -> Optional[List[str]]:
    """The command that started this interpreter, or None when it cannot be repeated."""
    orig = getattr(sys, "orig_argv", None)  # Python 3.10+: exactly what was run, -c and -m included
    if orig:
        return [sys.executable, *orig[1:]]
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name:  # Python 3.9, started with -m
        name = spec.name[: -len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return [sys.executable, "-m", name, *sys.argv[1:]]
    if not sys.argv or sys.argv[0] in ("", "-c"):  # Python 3.9, a -c string: not known here
        return None
    return [sys.executable, *sys.argv]


def reexec_with_tuned_allocator() -> None:
    """Replace this process by itself with the tuned environment, once; return if it does not apply.

    Call it first thing in a command's entry point, before any work. It does nothing when the tuning
    does not apply (not glibc, opted out), when this process already carries the marker (it is the
    re-executed one, or a child started with :func:`allocator_environment`), or when the command
    cannot be re-executed (no interpreter path, interactive session).
    """
    if not applies() or os.environ.get(MARKER) or not sys.executable:
        return
    if getattr(sys, "ps1", None) is not None or sys.flags.interactive:
        return
    command = _command_line()
    if command is None or len(command) < 2:
        return
    env = allocator_environment()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, command, env)
    except OSError:  # cannot re-execute: go on with the default allocator
        return
