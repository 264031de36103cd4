"""A child process whose stdout and stderr lines are read in the background, and stopped as a whole.

Two reader threads put the lines on a queue; the owner drains it with :meth:`BackgroundCommand.read_lines`
from its own thread (a Qt timer in the widget, a loop in a script), so callbacks and MRML changes only ever
happen on that thread. :meth:`BackgroundCommand.stop` interrupts the whole process group (``PythonSlicer``
is a launcher that starts the real interpreter as its child: stopping only the launcher would leave the work
running), waits, then kills it. Commands still running when the interpreter exits are stopped.
"""

from __future__ import annotations

import atexit
import os
import queue
import signal
import subprocess
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

_RUNNING: weakref.WeakSet[BackgroundCommand] = weakref.WeakSet()


class BackgroundCommand:
    """A child process with its stdout and stderr read line by line in the background.

    Args:
        args: program and arguments.
        env: environment (default: this process's).
        cwd: working directory.
    """

    #: what the child reads: nothing by default; a pipe for interactive workers.
    stdin: Any = subprocess.DEVNULL

    def __init__(self, args: Sequence[str], env: Optional[Dict[str, str]] = None, cwd: Optional[str] = None):
        self.args = [str(a) for a in args]
        self.env = env
        self.cwd = cwd
        self.stdout_lines: List[str] = []
        self.stderr_lines: List[str] = []
        self._proc: Optional[subprocess.Popen] = None
        self._queue: queue.Queue[Tuple[str, Optional[str]]] = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._reaper: Optional[threading.Thread] = None
        #: set once :meth:`stop` has ended the process group and closed the streams.
        self.stopped = threading.Event()

    def start(self) -> None:
        """Start the process (in its own process group) and the two reader threads.

        Raises:
            OSError: when the program cannot be started.
        """
        options: Dict[str, Any] = {}
        if os.name == "nt":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        else:
            options["start_new_session"] = True
        self._proc = subprocess.Popen(
            self.args,
            stdin=self.stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=self.env,
            cwd=self.cwd,
            **options,
        )
        _RUNNING.add(self)
        for name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            thread = threading.Thread(target=self._read, args=(name, stream), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read(self, name: str, stream: Any) -> None:
        try:
            for line in iter(stream.readline, ""):
                self._queue.put((name, line.rstrip("\r\n")))
        finally:
            stream.close()
            self._queue.put((name, None))

    @property
    def pid(self) -> Optional[int]:
        """Process id (None before :meth:`start`)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> Optional[int]:
        """Exit code, or None while it runs (negative: killed by that signal on POSIX)."""
        return self._proc.poll() if self._proc is not None else None

    def read_lines(self) -> List[Tuple[str, str]]:
        """Return the lines read since the last call as ``(stream name, line)``, without waiting."""
        lines = []
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return lines
            if line is None:  # end of that stream
                continue
            (self.stdout_lines if name == "stdout" else self.stderr_lines).append(line)
            lines.append((name, line))

    def done(self) -> bool:
        """True once the process has exited and both streams are closed: all output is queued or read."""
        return (
            self._proc is not None
            and self._proc.poll() is not None
            and not any(thread.is_alive() for thread in self._threads)
        )

    def wait(self, timeout: Optional[float] = None) -> int:
        """Block until the process has exited and its output is read; return the exit code.

        Raises:
            subprocess.TimeoutExpired: after ``timeout`` seconds (the process keeps running).
        """
        assert self._proc is not None, "call start() first"
        self._proc.wait(timeout)
        for thread in self._threads:
            thread.join()
        self.read_lines()
        return self._proc.returncode

    def stop(
        self, grace: float = 5.0, wait: bool = True, on_stopped: Optional[Callable[[], None]] = None
    ) -> None:
        """Stop the process and its children: interrupt (Ctrl+C), wait ``grace`` seconds, then kill.

        Safe to call at any time, also after the process ended or while an earlier stop is under way.

        Args:
            grace: seconds the process group gets to exit after the interrupt before it is killed.
            wait: True: return once the group is gone. False: send the interrupt and return at once; a
                daemon thread waits, kills and reaps (see :attr:`stopped`, :meth:`wait_stopped`).
            on_stopped: called (in the reaping thread) once the process group is gone.
        """
        proc = self._proc
        if proc is None:
            if on_stopped is not None:
                on_stopped()
            self.stopped.set()
            return
        if os.name != "nt" and proc.poll() is None:
            _signal_group(proc.pid, signal.SIGINT)  # at once, also when the waiting is left to a thread
        if wait:
            self._reap(grace, on_stopped)
            return
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap, args=(grace, on_stopped), daemon=True)
            self._reaper.start()
        elif on_stopped is not None:  # a stop is under way: call back when it is done
            threading.Thread(target=lambda: (self.stopped.wait(), on_stopped()), daemon=True).start()

    def wait_stopped(self, timeout: Optional[float] = None) -> bool:
        """Block until a :meth:`stop` has finished; returns False when ``timeout`` elapsed first."""
        return self.stopped.wait(timeout)

    def _reap(self, grace: float, on_stopped: Optional[Callable[[], None]]) -> None:
        proc = self._proc
        assert proc is not None
        try:
            if os.name == "nt":
                if proc.poll() is None:
                    subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
                    if proc.poll() is None:
                        proc.kill()
                proc.wait()
            else:
                try:
                    proc.wait(grace)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.pid, signal.SIGKILL)
                    proc.wait()
                _signal_group(proc.pid, signal.SIGKILL)  # children that outlived the group leader
            for thread in self._threads:
                thread.join(timeout=grace)
        finally:
            _RUNNING.discard(self)
            try:
                if on_stopped is not None:
                    on_stopped()
            finally:
                self.stopped.set()  # after on_stopped: whoever waits sees its effect


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@atexit.register
def _stop_running_commands() -> None:  # registered first, so it runs after the jobs' cleanup
    for command in list(_RUNNING):
        command.stop(grace=1.0)
