"""The module's logic, Qt-free: segment a volume node in the background, compare with a reference, export.

``MPUNetSegmentationLogic`` in ``MPUNetSegmentation.py`` is this class plus Slicer's
``ScriptedLoadableModuleLogic`` (parameter node); scripts may use either. The public methods keep Slicer's
camelCase names and are the module's stable Python API (see ``MPUNetSegmentation/README.md``)::

    logic = MPUNetSegmentationLogic()
    segmentation = logic.process(volume, model="demo-phantom", device="auto")
    table = logic.compare(segmentation, referenceLabelmapOrSegmentation, volume)
    logic.exportTableToCsv(table, "/tmp/metrics.csv")
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from .background import BackgroundCommand
from .dependencies import EnvironmentReport, parse_probe_output, probe_command
from .process import (
    LogCallback,
    ProgressCallback,
    SegmentationJob,
    SegmentationOptions,
)


class MPUNetLogic:
    """Segmentation and comparison on the scene, with the model run in a background process.

    Args:
        pythonExecutable: background interpreter (default: ``PythonSlicer`` in Slicer, else this Python).
        temporaryDirectory: where each run's temporary folder goes (default: Slicer's temporary path).
    """

    def __init__(self, pythonExecutable: Optional[str] = None, temporaryDirectory: Optional[str] = None):
        self.pythonExecutable = pythonExecutable
        self.temporaryDirectory = temporaryDirectory
        self.job: Optional[SegmentationJob] = None

    # -- segmentation --
    def process(
        self,
        inputVolume: Any,
        outputSegmentation: Any = None,
        model: Optional[str] = None,
        device: str = "auto",
        tta: bool = False,
        postprocess: bool = True,
        maxMemory: Optional[str] = None,
        waitForCompletion: bool = True,
        progressCallback: Optional[ProgressCallback] = None,
        logCallback: Optional[LogCallback] = None,
    ) -> Any:
        """Segment the liver and liver tumours of a CT volume node.

        The input is written to a temporary file (the node is not modified) and ``mpunet segment`` runs in
        a background process. The result is a NEW segmentation node named "<volume> MPU-Net" (made unique)
        with one segment per model class (names, colours, standard terminology from the model card) on the
        input's voxel grid, under the input's parent transform.

        Args:
            inputVolume: ``vtkMRMLScalarVolumeNode`` holding a CT in Hounsfield units.
            outputSegmentation: a segmentation node to overwrite with the result instead of creating one.
            model: registry name or bundle path (card .json, weights .pt or folder); None: default model.
            device: "auto", "cpu", "cuda"/"gpu", "cuda:N" or "mps".
            tta: test-time augmentation by mirroring ("accurate" quality; slower).
            postprocess: keep the largest liver component and tumours inside the liver.
            maxMemory: memory budget such as "4G" or "512M" (``mpunet segment --max-memory``): the window
                and batch size are chosen to fit it. None or "": on the CPU min(4 GiB, available memory).
            waitForCompletion: True: return the node when done. False: return the running
                :class:`.process.SegmentationJob` at once; call its ``poll()`` regularly from the main
                thread (the widget uses a timer) until it returns True, then read ``segmentation_node``.
            progressCallback: called as ``(fraction in [0, 1], message)``.
            logCallback: called with each line the run prints.

        Returns:
            The segmentation node, or the job when ``waitForCompletion`` is False.

        Raises:
            ValueError: on a missing or unsuitable input, a bad device or a bad memory size.
            RuntimeError: when another run of this logic is still going.
            SegmentationFailed: the run failed; ``str(error)`` and ``error.stderr`` hold its error text.
            SegmentationCancelled: :meth:`cancel` was called while waiting.
        """
        if self.isRunning:
            raise RuntimeError("a segmentation is already running: wait for it or cancel it first")
        options = SegmentationOptions.create(model, device, tta, postprocess, maxMemory)
        job = SegmentationJob(
            inputVolume,
            options,
            output_segmentation=outputSegmentation,
            python=self.pythonExecutable,
            temporary_root=self.temporaryDirectory,
            progress_callback=progressCallback,
            log_callback=logCallback,
        )
        self.job = job
        job.start()
        if not waitForCompletion:
            return job
        return job.wait()

    @property
    def isRunning(self) -> bool:
        """True while a run started by this logic is going."""
        return self.job is not None and self.job.state == SegmentationJob.RUNNING

    def cancel(self) -> None:
        """Cancel the current run, if any: the process stops, nothing is added, temporary files go."""
        if self.job is not None:
            self.job.cancel()

    # -- environment --
    def startEnvironmentCheck(self, modules: Optional[Sequence[str]] = None) -> BackgroundCommand:
        """Start asking the background Python which packages it has and which GPU torch sees.

        Args:
            modules: the modules to try (default: ``dependencies.REQUIRED_MODULES``).

        Returns:
            The running command: poll ``done()`` (and ``read_lines()``), then :meth:`environmentReport`.
        """
        from .dependencies import background_environment, mpunetcore_root

        args = (
            probe_command(self.pythonExecutable)
            if modules is None
            else probe_command(self.pythonExecutable, modules)
        )
        command = BackgroundCommand(args, env=background_environment(), cwd=str(mpunetcore_root()))
        command.start()
        return command

    @staticmethod
    def environmentReport(command: BackgroundCommand) -> EnvironmentReport:
        """Read the report of a finished :meth:`startEnvironmentCheck` command."""
        command.read_lines()
        return parse_probe_output(
            "\n".join(command.stdout_lines), "\n".join(command.stderr_lines), command.returncode
        )

    # -- comparison --
    def compare(self, segmentation: Any, reference: Any, referenceVolume: Any, tableNode: Any = None) -> Any:
        """Compare a segmentation with an expert reference, per segment, into a table node.

        Both are brought onto ``referenceVolume``'s voxel grid (resampled by nearest neighbour where their
        geometry differs). Segments are matched by name: tumour-like names ("tumor", "lesion", ...) are the
        tumour (label 2), other segments liver (label 1); liver = labels 1 and 2 (LiTS). A label map
        reference is used with its own values (1 liver, 2 tumour).

        Args:
            segmentation: the ``vtkMRMLSegmentationNode`` to evaluate (e.g. the result of :meth:`process`).
            reference: the expert's ``vtkMRMLSegmentationNode`` or ``vtkMRMLLabelMapVolumeNode``.
            referenceVolume: the volume whose grid (and spacing, for distances and volumes) is used.
            tableNode: a table this logic made before, to refill instead of creating a new one.

        Returns:
            ``vtkMRMLTableNode``: one row per segment (Liver, Liver tumor), columns Dice, IoU, Precision,
            Recall, Specificity, Accuracy, MCC, VOE, RVD, ASSD, MSD, RMSD, HD95 (mm), volumes (mL),
            TP/FP/FN/TN; a distance is NaN where exactly one of the two masks is empty.

        Raises:
            ValueError: on missing or unsuitable nodes.
        """
        from .comparison import comparison_rows, comparison_table_node
        from .scene_arrays import volume_geometry
        from .segmentation_nodes import label_array_from_node

        if segmentation is None or not segmentation.IsA("vtkMRMLSegmentationNode"):
            raise ValueError(
                f"select the segmentation to evaluate (a segmentation node), got {segmentation!r}"
            )
        if reference is None:
            raise ValueError("select a reference: a segmentation or a label map volume")
        if referenceVolume is None or not referenceVolume.IsA("vtkMRMLVolumeNode"):
            raise ValueError("select the CT volume the segmentations belong to")
        prediction = label_array_from_node(segmentation, referenceVolume)
        expected = label_array_from_node(reference, referenceVolume)
        rows = comparison_rows(prediction, expected, volume_geometry(referenceVolume).spacing)
        name = f"{segmentation.GetName()} vs {reference.GetName()}"
        return comparison_table_node(rows, name=name, table_node=tableNode)

    @staticmethod
    def exportTableToCsv(table: Any, path: Union[str, os.PathLike[str]]) -> Path:
        """Write a table node as CSV: a header of column titles (units included), one line per row.

        Numbers are written with full precision; a missing value (NaN) is an empty field. The file is
        written whole or not at all, and never onto a file a node of the scene was loaded from.

        Args:
            table: ``vtkMRMLTableNode`` (e.g. from :meth:`compare`).
            path: the CSV file to write (replaced if it exists: the save dialog asked).

        Returns:
            The path written.

        Raises:
            ValueError: not a table, a path that is the file of a node in the scene (the CT, a reference,
                ...), or a file another run is writing.
        """
        if table is None or not table.IsA("vtkMRMLTableNode"):
            raise ValueError(f"expected a table node, got {table!r}")
        vtk_table = table.GetTable()
        columns = [vtk_table.GetColumn(index) for index in range(vtk_table.GetNumberOfColumns())]
        header = [table.GetColumnTitle(column.GetName()) or column.GetName() for column in columns]
        rows: List[List[str]] = []
        for row in range(vtk_table.GetNumberOfRows()):
            values = []
            for column in columns:
                value = column.GetValue(row)
                if isinstance(value, float):
                    values.append("" if math.isnan(value) else repr(value))
                else:
                    values.append(str(value))
            rows.append(values)
        from MPUNetCore.fileutils import atomic_output
        from MPUNetCore.output_guard import refuse_outputs_onto_inputs, reserve_output

        path = Path(path)
        refuse_outputs_onto_inputs([path], scene_files(table.GetScene()))
        with reserve_output(path), atomic_output(path, overwrite=True) as partial:
            with open(partial, "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(header)
                writer.writerows(rows)
        return path

    # -- click to segment --
    def segmentAtPoint(
        self,
        inputVolume: Any,
        point: Any,
        outputSegmentation: Any = None,
        segmentId: Optional[str] = None,
        model: Optional[str] = None,
        device: str = "auto",
        waitForCompletion: bool = True,
        timeout: Optional[float] = None,
        logCallback: Optional[LogCallback] = None,
        oneSegmentPerClick: bool = False,
    ) -> Any:
        """Segment the lesion (or liver) under a point: the model runs on one window around it.

        The first call starts a model worker (a background process that keeps the model loaded, see
        :mod:`.model_worker`); later clicks with the same model and device reuse it. The connected component
        under the point (tumour if the model says label 2 there, else liver) is merged into
        ``outputSegmentation``'s segment of that class ("Liver tumor"; made by the first such click), into
        ``segmentId``, or, with ``oneSegmentPerClick``, added as a new segment ("Liver tumor 2", ...).
        :meth:`undoLastClick` takes a click back.

        Args:
            inputVolume: the CT ``vtkMRMLScalarVolumeNode`` (only read).
            point: world RAS coordinates, or a markups node (its last control point).
            outputSegmentation: the segmentation to add to; None creates "<volume> MPU-Net" on the first find.
            segmentId: an existing segment of ``outputSegmentation`` to merge into; None: the class's segment.
            model: registry name or bundle path; None: the default model.
            device: "auto", "cpu", "cuda"/"gpu", "cuda:N" or "mps".
            waitForCompletion: True: return the result. False: return a pending click at once; call
                :meth:`pollClicks` regularly (a timer in the widget) to finish it.
            timeout: seconds to wait when ``waitForCompletion`` is True.
            logCallback: called with log lines of the worker (only used when the worker starts).
            oneSegmentPerClick: add each find as a new segment instead of merging same-class finds.

        Returns:
            :class:`.click.ClickResult` (``found`` False and ``message`` "nothing found at this point" when
            the point lies on background: then nothing changed), or a :class:`.click.PendingClick`.

        Raises:
            ValueError: unsuitable nodes, or a point outside the volume.
            RuntimeError: the model run failed (``.model_worker.WorkerFailed`` when the worker did).
        """
        segmenter = self.clickSegmenter(model, device, logCallback)
        if not waitForCompletion:
            return segmenter.submit(inputVolume, point, outputSegmentation, segmentId, oneSegmentPerClick)
        return segmenter.segment(
            inputVolume, point, outputSegmentation, segmentId, timeout, oneSegmentPerClick
        )

    def undoLastClick(self) -> Any:
        """Undo the last click that changed a segmentation: its segments are restored exactly as before.

        Returns:
            The undone :class:`.click_undo.UndoStep` (``description`` says what it was), or None when there
            is nothing to undo.
        """
        return self._clickUndo().undo()

    @property
    def canUndoClick(self) -> bool:
        """True when :meth:`undoLastClick` has a click to undo."""
        return self._clickUndo().available

    def clearClickUndo(self) -> None:
        """Forget the clicks (e.g. when a full run replaced the output segmentation)."""
        self._clickUndo().clear()

    def _clickUndo(self) -> Any:
        from .click_undo import ClickUndoStack

        if getattr(self, "_undoStack", None) is None:
            self._undoStack = ClickUndoStack()
        return self._undoStack

    def clickSegmenter(
        self, model: Optional[str] = None, device: str = "auto", logCallback: Optional[LogCallback] = None
    ) -> Any:
        """The :class:`.click.ClickSegmenter` for ``model`` on ``device``, started (and reused) on demand."""
        from .click import ClickSegmenter

        segmenter = getattr(self, "_clickSegmenter", None)
        if segmenter is not None and not segmenter.matches(model, device):
            segmenter.stop()
            segmenter = None
        if segmenter is None:
            segmenter = ClickSegmenter(
                model, device, self.pythonExecutable, self.temporaryDirectory, log_callback=logCallback
            )
            segmenter.undo_stack = self._clickUndo()  # undo survives a change of model or device
            self._clickSegmenter = segmenter
        return segmenter.start()

    def pollClicks(self) -> List[Any]:
        """Finish pending clicks (see :meth:`segmentAtPoint`); returns the finished ``ClickResult`` s."""
        segmenter = getattr(self, "_clickSegmenter", None)
        return segmenter.poll() if segmenter is not None else []

    @property
    def clicksPending(self) -> bool:
        """True while a click submitted with ``waitForCompletion=False`` is not finished."""
        segmenter = getattr(self, "_clickSegmenter", None)
        return bool(segmenter is not None and segmenter.pending)

    def stopClickSegmenter(self) -> None:
        """Stop the click worker (it is restarted by the next click)."""
        segmenter = getattr(self, "_clickSegmenter", None)
        if segmenter is not None:
            segmenter.stop()
            self._clickSegmenter = None


def scene_files(scene: Any) -> List[str]:
    """The files the nodes of ``scene`` were loaded from (or will be saved to): the module's inputs."""
    files: List[str] = []
    if scene is None:
        return files
    storage_nodes = scene.GetNodesByClass("vtkMRMLStorageNode")
    for index in range(storage_nodes.GetNumberOfItems()):
        storage = storage_nodes.GetItemAsObject(index)
        names = [storage.GetFileName()]
        names += [storage.GetNthFileName(n) for n in range(storage.GetNumberOfFileNames())]
        files.extend(name for name in names if name)
    return files
