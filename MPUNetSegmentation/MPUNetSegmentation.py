import enum
import logging
import os
import pathlib
from typing import Optional, Union

import qt
import slicer
import vtk
from MPUNetSegmentationLib.dependencies import ensure_mpunetcore_importable
from MPUNetSegmentationLib.environment_gate import EnvironmentGate
from MPUNetSegmentationLib.logic import MPUNetLogic
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
    vtkMRMLTableNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

ensure_mpunetcore_importable()  # a source checkout keeps MPUNetCore one folder up

from MPUNetCore.registry import DEFAULT_MODEL  # noqa: E402  (torch-free)


class MPUNetSegmentation(ScriptedLoadableModule):
    """Liver and liver-tumour segmentation of CT with MPU-Net, and comparison with an expert segmentation."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MPU-Net Liver Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["MPUNet developers"]
        self.parent.helpText = _(
            "Segments the liver and liver tumours in a CT volume with MPU-Net, running the network in a "
            "background process (progress, log, Cancel), and compares the result with an expert segmentation "
            "(Dice, IoU, surface distances, volumes; exportable as CSV). Research use only, not for clinical "
            'use. See the <a href="https://github.com/mpunet/SlicerMPUNet/blob/main/'
            'MPUNetSegmentation/README.md">module documentation</a>.'
        )
        self.parent.acknowledgementText = _(
            "MPU-Net: Z. Yu and S. Han, '3D Medical Image Segmentation based on multi-scale MPU-Net'. "
            "The module follows 3D Slicer's scripted-module template by Jean-Christophe Fillion-Robin "
            "(Kitware), Andras Lasso (PerkLab) and Steve Pieper (Isomics)."
        )


class Device(enum.Enum):
    AUTO = "auto"
    GPU = "cuda"
    CPU = "cpu"

    def label(self):
        return {"auto": _("Automatic (GPU if available)"), "cuda": _("GPU (CUDA)"), "cpu": _("CPU")}[
            self.value
        ]


class Quality(enum.Enum):
    FAST = "fast"
    ACCURATE = "accurate"

    def label(self):
        return {"fast": _("Fast"), "accurate": _("Accurate (test-time augmentation, ~8x slower)")}[self.value]


@parameterNodeWrapper
class MPUNetSegmentationParameterNode:
    """The module's settings, saved with the scene. ``model`` is a registry name, "" for ``modelPath``."""

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = DEFAULT_MODEL
    # str, not pathlib.Path: the wrapper's default Path() shows as "." in the path box; the box is synced
    # by hand (_onModelPathChanged), as Slicer's ctkPathLineEdit connector only represents pathlib.Path
    modelPath: str = ""
    device: Device = Device.AUTO
    quality: Quality = Quality.FAST
    postprocess: bool = True
    maxMemory: str = ""  # memory budget such as "4G" ("": on the CPU min(4 GiB, available memory))
    outputSegmentation: vtkMRMLSegmentationNode
    show3D: bool = False
    reference: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]  # None: nothing chosen
    comparisonTable: vtkMRMLTableNode
    oneSegmentPerClick: bool = False  # click to segment: a new segment per find instead of one per class


class MPUNetSegmentationWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The GUI: binds the .ui to the parameter node and forwards work to the logic (no torch here)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self.gate = None
        self._shownError = None
        self.tools = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MPUNetSegmentation.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MPUNetSegmentationLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._onTimer)
        self._fillModelComboBox()
        # Apply waits for the (cached) environment check and installs with consent, all from the timer
        log = self.ui.logTextEdit.appendPlainText
        self.gate = EnvironmentGate(self.logic, slicer.util.confirmOkCancelDisplay, log_callback=log)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelComboBox.currentIndexChanged.connect(self._onModelChosen)
        self.ui.modelPathLineEdit.currentPathChanged.connect(self._onModelPathChanged)
        self.ui.applyButton.clicked.connect(self.onApplyButton)
        self.ui.cancelButton.clicked.connect(self.onCancelButton)
        self.ui.compareButton.clicked.connect(self.onCompareButton)
        self.ui.exportCsvButton.clicked.connect(self.onExportCsvButton)
        self.ui.show3DButton.toggled.connect(self._onShow3D)
        from MPUNetSegmentationGui.tools_section import ToolsSection  # click to segment, review

        self.tools = ToolsSection(self)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.tools.cleanup()
        self.gate.cancel()
        self.logic.cancel()  # returns at once: the process group is reaped by a thread
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()
        self.tools.installShortcuts()  # Ctrl+Z: undo the last click; Ctrl+Shift+C: click mode on/off
        if self.gate.report is None and not self.gate.busy:  # ask the background Python once, lazily
            self.ui.deviceInfoLabel.text = _("Checking PyTorch and GPU...")
            self.gate.check()
            self._timer.start()

    def exit(self) -> None:
        self.tools.removeShortcuts()
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        # a run cancels itself when its scene closes (SegmentationJob observes it); nothing waits for Apply
        self.gate.pending = None
        self.tools.onSceneStartClose()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, inputParameterNode: Optional[MPUNetSegmentationParameterNode]) -> None:
        if self._parameterNode:
            if self._parameterNodeGuiTag is not None:
                self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # widgets with a "SlicerParameterName" property in the .ui are connected here
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._updateGui()

    # -- GUI state --
    def _fillModelComboBox(self) -> None:
        from MPUNetCore.registry import available_models

        try:
            models = available_models()
        except ValueError as error:
            logging.warning(f"MPU-Net model registry: {error}")
            models = {}
        for name, entry in models.items():
            self.ui.modelComboBox.addItem(name, name)
            self.ui.modelComboBox.setItemData(
                self.ui.modelComboBox.count - 1, entry.description, qt.Qt.ToolTipRole
            )
        self.ui.modelComboBox.addItem(_("Model file..."), "")

    def _onModelChosen(self, index: int) -> None:
        if self._parameterNode:
            self._parameterNode.model = self.ui.modelComboBox.itemData(index) or ""

    def _onModelPathChanged(self, path: str) -> None:
        if self._parameterNode and self._parameterNode.modelPath != path:
            self._parameterNode.modelPath = path

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        running = self.logic is not None and self.logic.isRunning
        if p:
            index = self.ui.modelComboBox.findData(p.model)
            self.ui.modelComboBox.setCurrentIndex(index if index >= 0 else self.ui.modelComboBox.count - 1)
        localFile = bool(p) and not p.model
        self.ui.modelPathLineEdit.enabled = localFile
        if p and self.ui.modelPathLineEdit.currentPath != p.modelPath:
            self.ui.modelPathLineEdit.currentPath = p.modelPath
        modelOk = bool(p) and (bool(p.model) or os.path.isfile(p.modelPath))
        self.ui.applyButton.enabled = bool(p and p.inputVolume and modelOk) and not running
        self.ui.applyButton.toolTip = (
            _("Segment the input volume") if p and p.inputVolume else _("Select a volume")
        )
        waiting = self.gate is not None and (self.gate.pending is not None or self.gate.install is not None)
        self.ui.applyButton.enabled = self.ui.applyButton.enabled and not waiting
        self.ui.cancelButton.enabled = running or waiting
        self.ui.compareButton.enabled = bool(p and p.inputVolume and p.outputSegmentation and p.reference)
        self.ui.exportCsvButton.enabled = bool(p and p.comparisonTable)
        if self.tools is not None:
            self.tools.updateState()

    def _onShow3D(self, checked: bool) -> None:
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        if segmentation:
            if checked:
                segmentation.CreateClosedSurfaceRepresentation()
            else:
                segmentation.RemoveClosedSurfaceRepresentation()

    # -- segmentation --
    def onApplyButton(self) -> None:
        p = self._parameterNode
        arguments = dict(
            inputVolume=p.inputVolume,
            outputSegmentation=p.outputSegmentation,
            model=p.model or p.modelPath,
            device=p.device.value,
            tta=p.quality == Quality.ACCURATE,
            postprocess=p.postprocess,
            maxMemory=p.maxMemory or None,
        )
        self.ui.logTextEdit.clear()
        self.ui.progressBar.value = 0
        if not self.gate.when_ready(lambda: self._startRun(arguments)):
            self.ui.statusLabel.text = _("Checking PyTorch and GPU...")  # the timer starts the run
        self._timer.start()
        self._updateGui()

    def _startRun(self, arguments) -> None:
        with slicer.util.tryWithErrorDisplay(_("Failed to start MPU-Net."), waitCursor=True):
            self._job = self.logic.process(
                **arguments,
                waitForCompletion=False,
                progressCallback=self._onProgress,
                logCallback=self.ui.logTextEdit.appendPlainText,
            )
            self._timer.start()
        self._updateGui()

    def onCancelButton(self) -> None:
        self.gate.cancel()  # a waiting Apply, an installation: stopped without waiting
        self.logic.cancel()
        self.ui.progressBar.setRange(0, 100)
        self.ui.statusLabel.text = _("Cancelled.")
        self._updateGui()

    def _onProgress(self, fraction: float, message: str) -> None:
        self.ui.progressBar.value = int(round(100 * fraction))
        self.ui.statusLabel.text = message

    def _onTimer(self) -> None:
        hadReport = self.gate.report
        self.gate.poll()
        if self.gate.report is not None and self.gate.report is not hadReport:
            self.ui.deviceInfoLabel.text = self.gate.report.device_summary()
        elif self.gate.check_error:
            self.ui.deviceInfoLabel.text = self.gate.check_error.splitlines()[0]
        installing = self.gate.install is not None
        self.ui.progressBar.setRange(0, 0 if installing else 100)  # busy bar while pip works
        if installing:
            self.ui.statusLabel.text = _("Installing {what}: {line}").format(
                what=self.gate.install.description, line=self.gate.install.last_line[:80]
            )
        if self.gate.error and self.gate.error is not self._shownError:
            self._shownError = self.gate.error
            self.ui.statusLabel.text = _("Failed: see the log.")
            slicer.util.errorDisplay(self.gate.error.splitlines()[0], detailedText=self.gate.error)
        if self._job is not None and self._job.poll():
            job, self._job = self._job, None
            self._showResult(job)
        if self._job is None and not self.gate.busy:
            self._timer.stop()
        self._updateGui()

    def _showResult(self, job) -> None:
        self._updateGui()
        if job.state == job.SUCCEEDED and self._parameterNode:
            self.logic.clearClickUndo()  # the clicks' states no longer describe this segmentation
            self._parameterNode.outputSegmentation = job.segmentation_node
            job.segmentation_node.GetDisplayNode().SetVisibility(True)
            slicer.util.setSliceViewerLayers(background=job.input_volume, fit=True)
            self._onShow3D(self._parameterNode.show3D)
        elif job.state == job.FAILED:
            self.ui.statusLabel.text = _("Failed: see the log.")
            slicer.util.errorDisplay(str(job.error).splitlines()[0], detailedText=str(job.error))

    # -- comparison --
    def onCompareButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Comparison failed."), waitCursor=True):
            table = self.logic.compare(p.outputSegmentation, p.reference, p.inputVolume, p.comparisonTable)
            p.comparisonTable = table
            self.ui.comparisonTableView.setMRMLTableNode(table)

    def onExportCsvButton(self) -> None:
        table = self._parameterNode.comparisonTable
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Export metrics"), f"{table.GetName()}.csv", _("CSV files (*.csv)")
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                self.logic.exportTableToCsv(table, path)


class MPUNetSegmentationLogic(ScriptedLoadableModuleLogic, MPUNetLogic):
    """The module's logic: :class:`MPUNetSegmentationLib.logic.MPUNetLogic` with a parameter node.

    ``process(inputVolume, outputSegmentation=None, model=None, device="auto", tta=False,
    postprocess=True, waitForCompletion=True, progressCallback=None, logCallback=None)``,
    ``cancel()``, ``compare(segmentation, reference, referenceVolume)`` and
    ``exportTableToCsv(table, path)``: see MPUNetSegmentation/README.md.
    """

    def __init__(self, pythonExecutable=None, temporaryDirectory=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        MPUNetLogic.__init__(self, pythonExecutable, temporaryDirectory)

    def getParameterNode(self):
        return MPUNetSegmentationParameterNode(super().getParameterNode())


class MPUNetSegmentationTest(ScriptedLoadableModuleTest):
    """In Slicer: phantom, comparison, CSV table and review always; inference when PyTorch is importable.

    The steps live in ``MPUNetSegmentationLib/self_test.py`` (pytest runs them headless, with and without
    torch). Without torch (as on the extension build machines) inference is skipped and the reason logged.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_MPUNetSegmentation()

    def test_MPUNetSegmentation(self):
        from MPUNetSegmentationLib.self_test import SelfTest

        folder = pathlib.Path(slicer.app.temporaryPath) / "MPUNetSegmentationTest"
        results = SelfTest(MPUNetSegmentationLogic(), folder, display=self.delayDisplay).run()
        logging.info(f"MPU-Net self-test: {results}")
        self.delayDisplay("Test passed")
