"""Run code written for Slicer's embedded Python under plain Python with the ``slicer-core`` wheel.

Inside the 3D Slicer application :func:`ensure_slicer` does nothing. Outside it (pytest, the headless
batch script), it builds what the application would otherwise provide (background §2):

* ``slicer.mrmlScene``: a real ``vtkMRMLScene``;
* ``slicer.modules.<name>.logic()``: the real module logics (volumes, segmentations, colors,
  terminologies, subjecthierarchy, units, models, tables, transforms, markups, texts, sequences, plots),
  each registered with a ``vtkSlicerApplicationLogic`` like the application's module manager does;
* ``slicer.app``: a small stand-in whose ``coreIOManager()`` offers ``fileType``,
  ``fileWriterFileType``, ``loadNodes`` and ``saveNodes`` backed by those logics and by the nodes'
  storage nodes, so that ``slicer.util.loadVolume``/``loadSegmentation``/``loadLabelVolume``/
  ``loadModel``/``loadTable``/``loadTransform``/``loadMarkups``/``saveNode`` run unchanged.

Facts this relies on, found by trying the wheel: every ``slicer.util`` load/save goes through
``slicer.app.coreIOManager()``; a VTK logic object that Python stops referencing is deleted and later
calls through ``GetModuleLogic`` crash or fail, so every object created here is kept in one module-level
:class:`HeadlessSlicer`; the wheel ships no colour files and no terminology files, so a generic label
colour table is written to a private "share" folder (label map display nodes need one) and the
terminologies logic gets no scene (it would only log errors for the missing default contexts);
segment colours must therefore always be set explicitly.
"""

from __future__ import annotations

import atexit
import colorsys
import os
import shutil
import sys
import tempfile
import types
from typing import Any, Dict, Optional

from .headless_io import HeadlessIOManager

# (attribute under slicer.modules, module name for vtkSlicerApplicationLogic.SetModuleLogic, logic class)
# Order follows dependencies: colours before volumes, subject hierarchy before segmentations.
_MODULE_LOGICS = (
    ("colors", "Colors", "vtkSlicerColorLogic"),
    ("subjecthierarchy", "SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
    ("units", "Units", "vtkSlicerUnitsLogic"),
    ("terminologies", "Terminologies", "vtkSlicerTerminologiesModuleLogic"),
    ("volumes", "Volumes", "vtkSlicerVolumesLogic"),
    ("segmentations", "Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("models", "Models", "vtkSlicerModelsLogic"),
    ("tables", "Tables", "vtkSlicerTablesLogic"),
    ("transforms", "Transforms", "vtkSlicerTransformLogic"),
    ("markups", "Markups", "vtkSlicerMarkupsLogic"),
    ("texts", "Texts", "vtkSlicerTextsLogic"),
    ("sequences", "Sequences", "vtkSlicerSequencesLogic"),
    ("plots", "Plots", "vtkSlicerPlotsLogic"),
)

# Logics that must not see the scene: they would try to load data files the wheel does not ship.
_NO_SCENE = {"terminologies"}

_STATE: Optional[HeadlessSlicer] = None


def is_real_slicer() -> bool:
    """Tell whether this interpreter runs inside the 3D Slicer application.

    Returns:
        True when ``slicer.app`` and ``slicer.mrmlScene`` exist and were not made by this module.
    """
    slicer = sys.modules.get("slicer")
    if slicer is None:
        return False
    app = getattr(slicer, "app", None)
    return app is not None and hasattr(slicer, "mrmlScene") and not isinstance(app, HeadlessApplication)


def ensure_slicer() -> Optional[HeadlessSlicer]:
    """Make ``slicer.mrmlScene``, ``slicer.modules.<name>.logic()`` and ``slicer.app`` usable.

    Safe to call any number of times: the first call outside Slicer builds everything, later calls return
    the same objects. Inside the Slicer application nothing is touched.

    Returns:
        The :class:`HeadlessSlicer` holding the scene, logics and stand-in application, or None when
        running inside the real Slicer application.

    Raises:
        ImportError: when the ``slicer-core`` wheel (``pip install slicer-core==5.13.31053.0 vtk==9.6.2``)
            is not installed.
    """
    global _STATE
    if _STATE is not None:
        return _STATE
    try:
        import slicer
    except ImportError as error:
        raise ImportError(
            "Slicer's Python package is missing: run inside 3D Slicer or install the slicer-core wheel "
            "(pip install slicer-core==5.13.31053.0 vtk==9.6.2)"
        ) from error
    if is_real_slicer():
        return None
    if not hasattr(slicer, "vtkMRMLScene"):
        raise ImportError(
            "the 'slicer' package has no MRML classes: install the slicer-core wheel "
            "(pip install slicer-core==5.13.31053.0 vtk==9.6.2) or run inside 3D Slicer"
        )
    _STATE = HeadlessSlicer(slicer)
    return _STATE


def clear_scene() -> None:
    """Remove every node a test or batch job added, keeping the default colour tables and singletons.

    Does nothing inside the real application (a user's scene is never cleared by this project).
    """
    if _STATE is not None:
        _STATE.clear()


class HeadlessSlicer:
    """Everything :func:`ensure_slicer` creates, kept alive for the life of the process.

    Attributes:
        scene: the ``vtkMRMLScene`` also published as ``slicer.mrmlScene``.
        app_logic: the ``vtkSlicerApplicationLogic`` the module logics are registered with.
        logics: module logics by ``slicer.modules`` attribute name (e.g. ``"volumes"``).
        app: the :class:`HeadlessApplication` published as ``slicer.app``.
        home_dir: private folder used as the application's home/share directory.
    """

    def __init__(self, slicer: Any) -> None:
        self.home_dir = tempfile.mkdtemp(prefix="mpunet-slicer-home-")
        atexit.register(shutil.rmtree, self.home_dir, True)
        _write_generic_colors(os.path.join(self.home_dir, "share", "ColorFiles"))

        self.scene = slicer.vtkMRMLScene()
        self.app_logic = slicer.vtkSlicerApplicationLogic()
        self.app_logic.SetHomeDirectory(self.home_dir)
        self.app_logic.SetShareDirectory("share")
        self.app_logic.SetTemporaryPath(self.home_dir)
        self.app_logic.SetMRMLScene(self.scene)

        self.logics: Dict[str, Any] = {}
        self.modules = types.SimpleNamespace()
        for attribute, module_name, class_name in _MODULE_LOGICS:
            logic_class = getattr(slicer, class_name, None)
            if logic_class is None:  # not in this wheel
                continue
            logic = logic_class()
            logic.SetMRMLApplicationLogic(self.app_logic)
            module_share = os.path.join(self.home_dir, "share", "qt-loadable-modules", module_name)
            if hasattr(logic, "SetModuleShareDirectory"):
                logic.SetModuleShareDirectory(module_share)
            if attribute not in _NO_SCENE:
                logic.SetMRMLScene(self.scene)
            self.app_logic.SetModuleLogic(module_name, logic)
            if attribute == "colors":
                self.app_logic.SetColorLogic(logic)
            self.logics[attribute] = logic
            setattr(self.modules, attribute, _HeadlessModule(module_name, logic))

        self.io_manager = HeadlessIOManager(self.scene, self.logics)
        self.app = HeadlessApplication(self)
        slicer.mrmlScene = self.scene
        slicer.app = self.app
        slicer.modules = self.modules

    def clear(self) -> None:
        """Clear the scene like ``slicer.mrmlScene.Clear(False)`` does in Slicer's own tests."""
        self.scene.Clear(False)


class _HeadlessModule:
    """What ``slicer.modules.<name>`` offers code that only needs the logic (``.logic()``, ``.name``)."""

    def __init__(self, name: str, logic: Any) -> None:
        self.name = name
        self.title = name
        self._logic = logic

    def logic(self) -> Any:
        """Return the module's VTK logic (kept alive by the owning :class:`HeadlessSlicer`)."""
        return self._logic


class _CommandOptions:
    """The part of ``qSlicerCoreCommandOptions`` that ``slicer.util.exit`` touches."""

    runPythonAndExit = False
    noMainWindow = True
    testingEnabled = True


class HeadlessApplication:
    """A stand-in for ``slicer.app`` (``qSlicerApplication``) with what headless code needs.

    ``testingEnabled()`` is True, as in Slicer's testing mode, for code that skips dialogs when it is set
    (``slicer.util``'s ``*Display`` functions themselves import ``qt`` and cannot run headless), and
    ``exit(status)`` raises ``SystemExit(status)`` so that a batch script's ``slicer.util.exit(code)``
    ends plain Python with that exit code as it ends the application.
    """

    applicationName = "Slicer (headless, slicer-core)"

    def __init__(self, state: HeadlessSlicer) -> None:
        from .slicer_compat import wheel_version

        self._state = state
        # the installed wheel's release, so that version guards behave as in that Slicer
        self.majorVersion, self.minorVersion = wheel_version()
        self._command_options = _CommandOptions()
        self.temporaryPath = state.home_dir

    def coreIOManager(self) -> HeadlessIOManager:
        """Return the IO manager that ``slicer.util.load*``/``save*`` call."""
        return self._state.io_manager

    ioManager = coreIOManager

    def applicationLogic(self) -> Any:
        """Return the ``vtkSlicerApplicationLogic``."""
        return self._state.app_logic

    def mrmlScene(self) -> Any:
        """Return the scene (same object as ``slicer.mrmlScene``)."""
        return self._state.scene

    def commandOptions(self) -> _CommandOptions:
        """Return the (fixed) command options."""
        return self._command_options

    def testingEnabled(self) -> bool:
        """Headless runs never show dialogs: behave as Slicer does in testing mode."""
        return True

    def processEvents(self, *args: Any) -> None:
        """No event loop headless: nothing to process."""

    def pauseRender(self) -> None:
        """No views headless: nothing to pause."""

    def resumeRender(self) -> None:
        """No views headless: nothing to resume."""

    def layoutManager(self) -> None:
        """No views headless."""
        return None

    def exit(self, status: int = 0) -> None:
        """End the process with ``status`` (``slicer.util.exit`` calls this)."""
        raise SystemExit(status)


def _write_generic_colors(folder: str) -> None:
    """Write ``GenericColors.txt``: the label colour table a new label map display node refers to.

    The real application ships this file; the wheel does not. This one has distinct, evenly spread
    hues (index 0 transparent black), which is enough for display nodes to be valid.
    """
    os.makedirs(folder, exist_ok=True)
    lines = [
        "# Generic label colours written by MPUNetSegmentationLib.headless (slicer-core has none)",
        "0 background 0 0 0 0",
    ]
    for index in range(1, 256):
        hue = (index * 0.618033988749895) % 1.0
        red, green, blue = colorsys.hsv_to_rgb(hue, 0.65, 0.95)
        lines.append(f"{index} label_{index} {round(red * 255)} {round(green * 255)} {round(blue * 255)} 255")
    with open(os.path.join(folder, "GenericColors.txt"), "w", encoding="ascii") as stream:
        stream.write("\n".join(lines) + "\n")
