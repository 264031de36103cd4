"""Where a run's time and memory go: a per-stage profile (``mpunet segment --profile``).

Code marks its stages with :func:`stage`; they are recorded only while a :class:`Profiler` is active
(``with Profiler() as prof:``), so the marks cost one context-variable look-up when profiling is off.
A stage entered several times (the network forward, once per window) adds up. Per stage it records
wall seconds, user and system CPU seconds of the whole process (all threads, ``getrusage``), minor and
major page faults, and the peak resident memory reached inside the stage: on Linux the peak is reset
at each stage entry by writing ``5`` to ``/proc/self/clear_refs`` and read back from ``VmHWM``; where
that is not possible (macOS, Windows, a kernel refusing the reset) the process's peak so far
(``ru_maxrss``) is reported and :attr:`Profiler.peak_exact` is False. Time between stages is listed as
``other``, so the shares add up to one.

Example:
    >>> with Profiler() as prof:
    ...     with stage("read"):
    ...         data = list(range(1000))
    >>> [s.name for s in prof.stages()][:1]
    ['read']
"""

from __future__ import annotations

import contextlib
import contextvars
import resource
import sys
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional

__all__ = ["Profiler", "StageRecord", "stage"]

_ACTIVE: contextvars.ContextVar[Optional[Profiler]] = contextvars.ContextVar("mpunet_profiler", default=None)
_NULL = contextlib.nullcontext()
_KIB = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS


@dataclass
class StageRecord:
    """Totals of one stage.

    Attributes:
        name: the stage's name.
        seconds: wall time.
        user: user CPU seconds of the process (all threads).
        system: system CPU seconds of the process.
        minor_faults: minor page faults.
        major_faults: major page faults.
        peak_rss: peak resident memory inside the stage, bytes (see the module docstring).
        calls: how many times the stage was entered.
        share: ``seconds`` over the profile's total wall time (set by :meth:`Profiler.stages`).
    """

    name: str
    seconds: float = 0.0
    user: float = 0.0
    system: float = 0.0
    minor_faults: int = 0
    major_faults: int = 0
    peak_rss: int = 0
    calls: int = 0
    share: float = 0.0


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss(exact: bool) -> int:
    """Peak resident bytes since the last reset (exact) or over the process's life."""
    if exact:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * _KIB


class Profiler:
    """Collects :func:`stage` records while active (a context manager; not re-entrant).

    Attributes:
        peak_exact: whether peaks are per stage (Linux ``clear_refs``) or the process's peak so far.
    """

    def __init__(self) -> None:
        self._records: Dict[str, StageRecord] = {}
        self._start = self._end = 0.0
        self._usage0: Optional[resource.struct_rusage] = None
        self._usage1: Optional[resource.struct_rusage] = None
        self._token: Optional[contextvars.Token] = None
        self.peak_exact = _reset_peak()

    def __enter__(self) -> Profiler:
        self._token = _ACTIVE.set(self)
        self._usage0 = resource.getrusage(resource.RUSAGE_SELF)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = time.perf_counter()
        self._usage1 = resource.getrusage(resource.RUSAGE_SELF)
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    @contextlib.contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        if self.peak_exact:
            _reset_peak()
        u0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        try:
            yield
        finally:
            t1, u1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
            rec = self._records.setdefault(name, StageRecord(name))
            rec.seconds += t1 - t0
            rec.user += u1.ru_utime - u0.ru_utime
            rec.system += u1.ru_stime - u0.ru_stime
            rec.minor_faults += u1.ru_minflt - u0.ru_minflt
            rec.major_faults += u1.ru_majflt - u0.ru_majflt
            rec.peak_rss = max(rec.peak_rss, _peak_rss(self.peak_exact))
            rec.calls += 1

    def total_seconds(self) -> float:
        """Wall time from entering the profiler to leaving it (or to now, while active)."""
        end = self._end if self._end else time.perf_counter()
        return max(end - self._start, 0.0)

    def stages(self) -> List[StageRecord]:
        """Stage records in first-entered order, then ``other`` (time and CPU outside every stage)."""
        total = self.total_seconds()
        records = list(self._records.values())
        u0 = self._usage0
        u1 = self._usage1 or resource.getrusage(resource.RUSAGE_SELF)
        other = StageRecord("other", calls=1)
        other.seconds = max(total - sum(r.seconds for r in records), 0.0)
        if u0 is not None:
            other.user = max(u1.ru_utime - u0.ru_utime - sum(r.user for r in records), 0.0)
            other.system = max(u1.ru_stime - u0.ru_stime - sum(r.system for r in records), 0.0)
            other.minor_faults = max(u1.ru_minflt - u0.ru_minflt - sum(r.minor_faults for r in records), 0)
            other.major_faults = max(u1.ru_majflt - u0.ru_majflt - sum(r.major_faults for r in records), 0)
        records.append(other)
        denominator = sum(r.seconds for r in records) or 1.0
        for r in records:
            r.share = r.seconds / denominator
        return records

    def peak_rss(self) -> int:
        """Peak resident bytes over the profile (the largest stage peak; the process's if unknown)."""
        peaks = [r.peak_rss for r in self._records.values()]
        return max(peaks) if peaks else _peak_rss(False)

    def table(self) -> str:
        """The profile as a text table (one line per stage, then the total)."""
        rows = self.stages()
        peak_kind = "peak RSS" if self.peak_exact else "max RSS so far"
        lines = [
            f"{'stage':<26}{'seconds':>9}{'share':>7}{'user s':>9}{'sys s':>8}{'faults':>10}{peak_kind:>16}"
        ]
        for r in rows:
            peak = f"{r.peak_rss / 2**30:.2f} GiB" if r.peak_rss else "-"
            name = r.name if r.calls <= 1 else f"{r.name} (x{r.calls})"
            lines.append(
                f"{name:<26}{r.seconds:>9.2f}{r.share:>7.1%}{r.user:>9.2f}{r.system:>8.2f}"
                f"{r.minor_faults + r.major_faults:>10d}{peak:>16}"
            )
        user, system = sum(r.user for r in rows), sum(r.system for r in rows)
        faults = sum(r.minor_faults + r.major_faults for r in rows)
        lines.append(
            f"{'total':<26}{self.total_seconds():>9.2f}{1:>7.0%}{user:>9.2f}{system:>8.2f}{faults:>10d}"
            f"{self.peak_rss() / 2**30:>12.2f} GiB"
        )
        return "\n".join(lines)


def stage(name: str) -> contextlib.AbstractContextManager:
    """Context manager that records ``name`` in the active :class:`Profiler` (a no-op without one)."""
    prof = _ACTIVE.get()
    return _NULL if prof is None else prof._stage(name)
