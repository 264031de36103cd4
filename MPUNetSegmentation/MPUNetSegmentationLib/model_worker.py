"""The Slicer side of a persistent model worker (``python -m MPUNetCore.worker``), for fast repeated runs.

Click-to-segment sends one small request per click. Loading torch and the model takes seconds, so it is
done once, in a background process that stays alive between clicks; the Slicer process itself never
imports torch (background §6). The worker's protocol is documented in ``MPUNetCore/worker.py``: JSON lines on
its stdin and stdout, log text on stderr.

:class:`ModelWorkerClient` starts the worker, sends requests and collects answers without blocking: call
:meth:`ModelWorkerClient.poll` from the thread that owns the scene (a Qt timer in the widget, a loop in
scripts) or block in :meth:`ModelWorkerClient.wait_for`. :meth:`ModelWorkerClient.stop` ends the whole
process group, as :class:`.background.BackgroundCommand` does for a segmentation run.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional

from .background import BackgroundCommand
from .dependencies import background_environment, mpunetcore_root, python_executable

LogCallback = Callable[[str], None]


class WorkerFailed(RuntimeError):
    """The worker could not start (e.g. a bad model) or ended unexpectedly; the message says why.

    Attributes:
        stderr: everything the worker wrote on stderr.
    """

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


class _InteractiveCommand(BackgroundCommand):
    """A :class:`BackgroundCommand` whose stdin is a pipe, so that requests can be written to it."""

    stdin = subprocess.PIPE

    def send_line(self, text: str) -> None:
        """Write one line to the process's stdin.

        Raises:
            BrokenPipeError: when the process has ended.
        """
        assert self._proc is not None and self._proc.stdin is not None, "call start() first"
        self._proc.stdin.write(text + "\n")
        self._proc.stdin.flush()


class ModelWorkerClient:
    """One running ``python -m MPUNetCore.worker`` process and the answers it sent.

    Args:
        model: registry name or bundle path; None: the default model.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        python: interpreter (default :func:`.dependencies.python_executable`: ``PythonSlicer`` in Slicer).
        log_callback: called with every stderr line of the worker and with the client's own messages.
    """

    def __init__(
        self,
        model: Optional[str] = None,
        device: str = "auto",
        python: Optional[str] = None,
        log_callback: Optional[LogCallback] = None,
    ) -> None:
        self.model = model
        self.device = device
        self.python = python or python_executable()
        self.log_callback = log_callback
        self.info: Optional[Dict[str, Any]] = None  # the worker's "ready" event
        self.answers: Dict[int, Dict[str, Any]] = {}
        self.error: Optional[WorkerFailed] = None
        self._command: Optional[_InteractiveCommand] = None
        self._next_id = 1

    @property
    def args(self) -> List[str]:
        """The worker's command line."""
        args = [self.python, "-m", "MPUNetCore.worker", "--device", self.device]
        model = str(self.model) if self.model else None
        if model and os.path.exists(model):  # the worker runs in another folder: keep the path valid there
            model = os.path.abspath(model)
        return args + (["--model", model] if model else [])

    def start(self) -> ModelWorkerClient:
        """Launch the worker (again, if it ended); it loads the model in the background. Returns self."""
        if self._command is not None and self._command.done():  # ended (failed or killed): start afresh
            self.stop()
        if self._command is None:
            self.error, self.answers = None, {}
            self._log("Starting the model worker: " + " ".join(self.args))
            self._command = _InteractiveCommand(
                self.args, env=background_environment(), cwd=str(mpunetcore_root())
            )
            self._command.start()
        return self

    @property
    def ready(self) -> bool:
        """True once the model is loaded and requests are answered."""
        self.poll()
        return self.info is not None

    @property
    def alive(self) -> bool:
        """True while the worker process runs."""
        return self._command is not None and self._command.returncode is None

    def poll(self) -> List[Dict[str, Any]]:
        """Read what the worker sent since the last call; returns its "done"/"error" answers to requests.

        Raises:
            WorkerFailed: the worker could not load the model, or it ended while requests were pending.
        """
        if self._command is None:
            return []
        finished = self._command.done()
        answers = []
        for name, line in self._command.read_lines():
            event = _parse(line) if name == "stdout" else None
            if event is None:
                self._log(line)
            elif event.get("event") == "ready":
                self.info = event
                self._log(
                    f"Model '{event.get('model')}' loaded on {event.get('device')} "
                    f"in {event.get('seconds')} s."
                )
            elif event.get("id") is None and event.get("event") == "error":
                self.error = WorkerFailed(
                    f"the model worker failed: {event.get('message')}", self.stderr_text
                )
            elif isinstance(event.get("id"), int):
                self.answers[event["id"]] = event
                answers.append(event)
        if finished and self.error is None and self._command is not None:
            code = self._command.returncode
            if code != 0 or self.info is None:
                details = "\n".join(self._command.stderr_lines[-20:]).strip() or "(no output)"
                self.error = WorkerFailed(
                    f"the model worker ended (exit code {code}):\n{details}", self.stderr_text
                )
        if self.error is not None:
            raise self.error
        return answers

    def request(self, op: str, **fields: Any) -> int:
        """Send a request and return its id (see ``MPUNetCore/worker.py`` for the operations).

        Raises:
            WorkerFailed: the worker is not running.
        """
        if self._command is None:
            self.start()
        request_id = self._next_id
        self._next_id += 1
        try:
            self._command.send_line(json.dumps({"id": request_id, "op": op, **fields}))
        except (BrokenPipeError, OSError, ValueError) as error:
            self.poll()  # raises the worker's own error if it has one
            raise WorkerFailed(f"the model worker is not running ({error})", self.stderr_text) from None
        return request_id

    def wait_for(
        self, request_id: int, timeout: Optional[float] = None, interval: float = 0.01
    ) -> Dict[str, Any]:
        """Block until request ``request_id`` is answered and return the answer.

        Raises:
            TimeoutError: ``timeout`` seconds elapsed (the worker keeps running).
            WorkerFailed: the worker failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while request_id not in self.answers:
            self.poll()
            if request_id in self.answers:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the model worker did not answer within {timeout} s")
            time.sleep(interval)
        return self.answers.pop(request_id)

    def stop(self, wait: bool = False, on_stopped: Optional[Callable[[], None]] = None) -> None:
        """Ask the worker to quit and stop its process group; safe to call at any time.

        Args:
            wait: False (default): return at once (a thread gives the worker two seconds, then kills and
                reaps it). True: return once it is gone.
            on_stopped: called once the worker's process group is gone (in the reaping thread).
        """
        command, self._command = self._command, None
        self.info = None
        if command is None:
            if on_stopped is not None:
                on_stopped()
            return
        try:
            if command.returncode is None:
                command.send_line(json.dumps({"op": "quit"}))
        except (OSError, ValueError):
            pass
        command.stop(grace=2.0, wait=wait, on_stopped=on_stopped)

    @property
    def stderr_text(self) -> str:
        """Everything the worker wrote on stderr so far."""
        return "\n".join(self._command.stderr_lines) if self._command is not None else ""

    def _log(self, text: str) -> None:
        if self.log_callback is not None:
            self.log_callback(text)


def _parse(line: str) -> Optional[Dict[str, Any]]:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and "event" in event else None
