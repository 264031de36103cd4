"""Install Python packages into the background interpreter without blocking: pip in a background process.

``slicer.util.pip_install`` and the PyTorch extension's ``PyTorchUtilsLogic.installTorch`` (which runs
``light-the-torch``) wait for pip on the GUI thread: a multi-gigabyte torch download freezes Slicer for
minutes, with no way to stop it. :class:`InstallJob` runs the same commands (``PythonSlicer -m pip install``,
and for torch with the PyTorch extension present ``PythonSlicer -m light_the_torch install``, which picks
the CUDA build that fits the driver, as PyTorchUtils does) in a :class:`.background.BackgroundCommand`, one
after the other: every output line goes to the log as it comes, and :meth:`InstallJob.cancel` returns at
once and stops pip (its process group is reaped by a thread).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from .background import BackgroundCommand
from .dependencies import InstallStep, background_environment, mpunetcore_root, python_executable

LIGHT_THE_TORCH = "light-the-torch>=0.5"  # the version range PyTorchUtils installs


def install_commands(steps: Sequence[InstallStep], python: str) -> List[List[str]]:
    """The command lines that perform ``steps`` with ``python`` (see the module docstring)."""
    commands: List[List[str]] = []
    for step in steps:
        if step.how == "pytorchutils":
            commands.append([python, "-m", "pip", "install", LIGHT_THE_TORCH])
            commands.append([python, "-m", "light_the_torch", "install", step.requirement])
        else:
            commands.append([python, "-m", "pip", "install", step.requirement])
    return commands


class InstallJob:
    """Installs packages in background processes, one command after the other.

    Args:
        steps: what to install (``dependencies.install_plan``).
        python: the interpreter to install into (default: the background interpreter, ``PythonSlicer``).
        log_callback: called with every output line, and with the command lines.
    """

    RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"

    def __init__(
        self,
        steps: Sequence[InstallStep],
        python: Optional[str] = None,
        log_callback: Optional[Callable[[str], None]] = None,
    ) -> None:
        self.steps = list(steps)
        self.commands = install_commands(self.steps, python or python_executable())
        self.log_callback = log_callback
        self.state = self.RUNNING
        self.error: Optional[str] = None
        self.last_line = ""
        self.command: Optional[BackgroundCommand] = None
        self._next = 0

    @property
    def description(self) -> str:
        """What is being installed, e.g. "torch>=2.0"."""
        return ", ".join(step.requirement for step in self.steps)

    def start(self) -> InstallJob:
        """Start the first command; returns self.

        Raises:
            OSError: the interpreter cannot be started.
        """
        self._start_next()
        return self

    def poll(self) -> bool:
        """Pass new output to the log and start the next command when one ends; True once the job is over."""
        if self.state != self.RUNNING:
            return True
        assert self.command is not None, "call start() first"
        finished = self.command.done()
        for _, line in self.command.read_lines():
            if line.strip():
                self.last_line = line.strip()
            self._log(line)
        if not finished:
            return False
        code = self.command.returncode
        if code != 0:
            details = "\n".join(self.command.stderr_lines[-15:]).strip() or self.last_line or "(no output)"
            self.error = f"installing {self.description} failed (exit code {code}):\n{details}"
            self.state = self.FAILED
            self._log(self.error)
            return True
        if self._next < len(self.commands):
            self._start_next()
            return False
        self.state = self.SUCCEEDED
        self._log(f"Installed {self.description}.")
        return True

    def cancel(self) -> None:
        """Stop the installation at once (a thread reaps pip's process group); pip may leave it half done."""
        if self.state != self.RUNNING:
            return
        self.state = self.CANCELLED
        if self.command is not None:
            self.command.read_lines()
            self.command.stop(grace=5.0, wait=False)
        self._log(f"Installation of {self.description} cancelled.")

    def _start_next(self) -> None:
        args = self.commands[self._next]
        self._next += 1
        self._log("Running: " + " ".join(args))
        self.command = BackgroundCommand(args, env=background_environment(), cwd=str(mpunetcore_root()))
        self.command.start()

    def _log(self, text: str) -> None:
        if self.log_callback is not None:
            self.log_callback(text)
