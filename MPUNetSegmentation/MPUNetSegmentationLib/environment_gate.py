"""Run work once the background Python has what MPU-Net needs, without ever waiting on the GUI thread.

The widget's Apply does not know yet whether torch is installed: that is asked of the background interpreter
(:meth:`.logic.MPUNetLogic.startEnvironmentCheck`, a second or two, more when torch is imported for the
first time). :class:`EnvironmentGate` holds the action until the answer is there, offers to install what
is missing (the user's consent through ``confirm``), installs it in the background
(:class:`.install.InstallJob`), asks again, and then runs the action, all from :meth:`EnvironmentGate.poll`,
which the widget's timer calls.
The report is cached: later actions run at once. :meth:`EnvironmentGate.cancel` returns at once.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from .dependencies import EnvironmentReport, ensure_dependencies
from .install import InstallJob

Action = Callable[[], None]


class EnvironmentGate:
    """Holds an action until the background Python is ready (see the module docstring).

    Args:
        logic: the module logic (``startEnvironmentCheck``, ``environmentReport``, ``pythonExecutable``).
        confirm: asked with a message before installing; returns True to go ahead.
        log_callback: receives the installation's output.
        modules: modules to check (default: ``dependencies.REQUIRED_MODULES``).
        pytorch_utils_available: override the detection of the PyTorch extension (None: detect).
    """

    def __init__(
        self,
        logic: Any,
        confirm: Callable[[str], bool],
        log_callback: Optional[Callable[[str], None]] = None,
        modules: Optional[Sequence[str]] = None,
        pytorch_utils_available: Optional[bool] = None,
    ) -> None:
        self.logic = logic
        self.confirm = confirm
        self.log_callback = log_callback
        self.modules = modules
        self.pytorch_utils_available = pytorch_utils_available
        self.report: Optional[EnvironmentReport] = None  # cached until an installation changes things
        self.error: Optional[str] = None  # the last failure that ended a waiting action, for the user
        self.check_error: Optional[str] = None  # why the last check gave no report
        self.probe: Any = None
        self.install: Optional[InstallJob] = None
        self.pending: Optional[Action] = None
        self._installed = False

    @property
    def busy(self) -> bool:
        """True while checking or installing (the widget keeps polling and offers Cancel)."""
        return self.probe is not None or self.install is not None

    def check(self) -> None:
        """Start asking the background Python (unless asking already, or the answer is known)."""
        if self.probe is None and self.report is None and self.install is None:
            args = {} if self.modules is None else {"modules": self.modules}
            self.probe = self.logic.startEnvironmentCheck(**args)

    def when_ready(self, action: Action) -> bool:
        """Run ``action`` now if the environment is known to be ready, else once it is (from :meth:`poll`).

        Returns:
            True when the action ran now; False when it waits (a newer action replaces a waiting one).
        """
        if self.report is not None and self.report.ok:
            action()
            return True
        self.pending, self.error = action, None
        if self.report is not None and self.install is None:  # known to lack something: offer it again
            self._offer_install(self.report)
        self.check()
        return False

    def poll(self) -> None:
        """Advance: read the probe's answer, run the installation, run the waiting action when ready.

        Errors are not raised: they end the waiting action and are kept in :attr:`error`.
        """
        if self.install is not None and self.install.poll():
            install, self.install = self.install, None
            if install.state == install.SUCCEEDED:
                self._installed = True
                self.check()  # ask again: the action runs if everything imports now
            else:
                self._fail(install.error or "the installation was cancelled")
        if self.probe is not None:
            if not self.probe.done():
                self.probe.read_lines()
                return
            probe, self.probe = self.probe, None
            try:
                self.report, self.check_error = self.logic.environmentReport(probe), None
            except RuntimeError as error:
                self.check_error = str(error)
                if self.pending is not None:  # an Apply waited for this answer: tell the user
                    self._fail(self.check_error)
                return
            if self.pending is not None:
                if self.report.ok:
                    action, self.pending = self.pending, None
                    action()
                elif self._installed:
                    lacking = [*self.report.missing, *self.report.outdated]  # outdated: too old
                    self._fail("still missing or too old after the installation: " + ", ".join(lacking))
                else:
                    self._offer_install(self.report)

    def cancel(self) -> None:
        """Drop the waiting action and stop an installation or a check under way; returns at once."""
        self.pending = None
        if self.install is not None:
            self.install.cancel()
            self.install = None
        if self.probe is not None:
            self.probe.stop(wait=False)
            self.probe = None

    def _offer_install(self, report: EnvironmentReport) -> None:
        try:
            agreed = ensure_dependencies(
                report,
                self.confirm,
                install=self._start_install,
                pytorch_utils_available=self.pytorch_utils_available,
            )
        except RuntimeError as error:
            self._fail(str(error))
            return
        if not agreed:
            self.pending = None

    def _start_install(self, steps: Sequence[Any]) -> None:
        self.report, self._installed = None, False
        self.install = InstallJob(steps, self.logic.pythonExecutable, self.log_callback).start()

    def _fail(self, message: str) -> None:
        self.pending, self.error = None, message
        if self.log_callback is not None:
            self.log_callback(message)
