"""Repeat statistics and machine description for the interleaved benchmarks (issue 14, item 6).

A figure from one run on a shared machine says little: benchmarks run each variant several times,
interleaved, and report the median with the spread ``(max - min) / median``; a spread above
:data:`SPREAD_LIMIT` marks the figure as unstable. The machine line names the CPU, the cores, the
threads the benchmark used and the load averages, so that a reader can tell a quiet run from a busy one.
"""

from __future__ import annotations

import os
import platform
import statistics
from typing import Dict, List, Sequence, TypeVar

T = TypeVar("T")
#: A median whose spread exceeds this fraction is flagged.
SPREAD_LIMIT = 0.10


def spread(values: Sequence[float]) -> float:
    """``(max - min) / median`` of ``values`` (0 for a single value or a zero median)."""
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def describe(values: Sequence[float], digits: int = 1) -> Dict[str, float]:
    """Median, minimum, maximum, spread and whether the spread is above the limit."""
    s = spread(values)
    return {
        "median": round(statistics.median(values), digits + 2),
        "min": min(values),
        "max": max(values),
        "spread": s,
        "unstable": s > SPREAD_LIMIT,
        "n": len(values),
    }


def text(values: Sequence[float], unit: str = "s") -> str:
    """``'61.2 s (58.0-66.1, 13 %, SPREAD>10%)'`` for a table cell."""
    d = describe(values)
    flag = ", SPREAD>10%" if d["unstable"] else ""
    return f"{d['median']:.1f} {unit} ({d['min']:.1f}-{d['max']:.1f}, {d['spread'] * 100:.0f} %{flag})"


def rotations(items: Sequence[T], repeats: int) -> List[List[T]]:
    """``repeats`` orders of ``items``, each starting one later (no variant always runs first or last)."""
    n = len(items)
    return [[items[(r + k) % n] for k in range(n)] for r in range(repeats)] if n else []


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load() -> str:
    """The 1/5/15-minute load averages, or 'n/a' where the platform has none."""
    try:
        return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except (OSError, AttributeError):
        return "n/a"


def machine(threads: int) -> str:
    """One line: CPU model, cores, the benchmark's threads, glibc, load averages now."""
    libc = " ".join(platform.libc_ver()) or "libc ?"
    return f"CPU {cpu_model()}, {os.cpu_count()} cores, {threads} threads, {libc}, load average {load()}"
