"""Click to segment: run the model on one window around a point and add the lesion (or liver) under it.

A :class:`ClickSegmenter` keeps one model worker (:mod:`.model_worker`) alive, so only the first click pays
for starting torch and loading the model. Each click:

1. maps the point (world RAS, or a markups node's control point) to a voxel of the input volume;
2. cuts the box of input voxels that one network window covers around it (:func:`.click_roi.click_box`;
   the window is the model's input size, i.e. its training patch when the card records it, see
   ``MPUNetCore.worker.click_window``) and writes it to a temporary NRRD with its exact geometry (the
   volume node is not modified);
3. lets the worker segment that box (no post-processing: a lesion must not be dropped for lying outside
   the largest liver piece of a partial view);
4. takes the connected component under the point (:func:`.click_roi.component_at`): label 2 under the
   point selects a tumour, label 1 the liver (liver = labels 1 and 2, as LiTS); background means
   "nothing found at this point" and nothing changes;
5. merges it into the output segmentation's segment of that class (the segment named as the class in the
   model card, e.g. "Liver tumor"; created on the first find), into a chosen segment, or, with
   ``one_segment_per_click``, adds it as a new segment ("Liver tumor", "Liver tumor 2", ...; names,
   colours and terminology from the model card).

Every click that changed a segmentation can be undone (:meth:`ClickSegmenter.undo`, see
:mod:`.click_undo`). A click whose volume or segmentation left the scene while the model ran (the scene was
closed) is dropped: its result never lands in another scene.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .click_roi import NOTHING_FOUND, Box, click_box, component_at, open_faces
from .click_undo import ClickUndoStack, UndoStep
from .model_worker import LogCallback, ModelWorkerClient
from .process import default_temporary_root, normalized_device


@dataclass
class ClickResult:
    """The outcome of one click.

    Attributes:
        found: False when the point lies on background (then nothing was changed).
        message: what happened, for the user (``"nothing found at this point"`` when not found).
        segmentation_node: the segmentation the component was added to (None when not found).
        segment_id: ID of the new or merged segment (None when not found).
        segment_name: its name.
        class_name: "tumor" or "liver" (None when not found).
        voxel_count: voxels added (the component's size).
        volume_ml: the component's volume in millilitres.
        touches_border: the component reaches the edge of the window the model saw (it may continue).
        box: the input-grid box the model ran on.
        seconds: wall time of the click, from request to scene update.
        model_seconds: time the worker spent segmenting the box.
    """

    found: bool
    message: str
    segmentation_node: Any = None
    segment_id: Optional[str] = None
    segment_name: Optional[str] = None
    class_name: Optional[str] = None
    voxel_count: int = 0
    volume_ml: float = 0.0
    touches_border: bool = False
    box: Optional[Box] = None
    seconds: float = 0.0
    model_seconds: float = 0.0


@dataclass
class PendingClick:
    """A click waiting for the worker (see :meth:`ClickSegmenter.submit`)."""

    volume: Any
    index: Tuple[int, int, int]
    segmentation: Any
    segment_id: Optional[str]
    started: float
    one_segment_per_click: bool = False
    request_id: Optional[int] = None
    box: Optional[Box] = None
    files: Tuple[Path, Path] = (Path(), Path())
    result: Optional[ClickResult] = None


def point_to_index(volume: Any, point: Any, point_index: int = -1) -> Tuple[int, int, int]:
    """The ``(z, y, x)`` voxel of ``volume`` (array order of ``slicer.util.arrayFromVolume``) at a point.

    Args:
        volume: the ``vtkMRMLScalarVolumeNode``.
        point: world RAS coordinates (three numbers) or a markups node (its control point ``point_index``).
        point_index: which control point of a markups node (default: the last one placed).

    Returns:
        The voxel index, rounded to the nearest voxel centre; parent transforms of the volume applied.

    Raises:
        ValueError: an empty markups node, or a point outside the volume.
    """
    import slicer
    import vtk

    if hasattr(point, "GetNumberOfControlPoints"):
        count = point.GetNumberOfControlPoints()
        if count == 0:
            raise ValueError(f"'{point.GetName()}' has no control point: place a point first")
        position = [0.0, 0.0, 0.0]
        point.GetNthControlPointPositionWorld(point_index % count, position)
    else:
        position = [float(v) for v in point]
        if len(position) != 3:
            raise ValueError(f"a point needs three RAS coordinates, got {point!r}")
    world_to_local = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        None, volume.GetParentTransformNode(), world_to_local
    )
    local = world_to_local.TransformPoint(position)
    ras_to_ijk = vtk.vtkMatrix4x4()
    volume.GetRASToIJKMatrix(ras_to_ijk)
    i, j, k, _ = ras_to_ijk.MultiplyPoint([*local, 1.0])
    index = tuple(int(np.floor(v + 0.5)) for v in (k, j, i))
    dims = volume.GetImageData().GetDimensions()
    if not all(0 <= a < n for a, n in zip(index, dims[::-1])):
        raise ValueError(
            f"the point R {position[0]:.1f}, A {position[1]:.1f}, S {position[2]:.1f} lies outside the "
            f"volume '{volume.GetName()}': place it on the CT"
        )
    return index  # type: ignore[return-value]


class ClickSegmenter:
    """Click-to-segment with one persistent model worker (see the module docstring).

    Args:
        model: registry name or bundle path; None: the default model.
        device: "auto", "cpu", "cuda"/"gpu", "cuda:N" or "mps".
        python: interpreter of the worker (default: ``PythonSlicer`` in Slicer, else this Python).
        temporary_root: where the temporary folder for crops goes (default: Slicer's temporary path).
        log_callback: called with log lines (worker output, timings).
    """

    def __init__(
        self,
        model: Optional[str] = None,
        device: str = "auto",
        python: Optional[str] = None,
        temporary_root: Optional[str] = None,
        log_callback: Optional[LogCallback] = None,
    ) -> None:
        self.model = model or None
        self.device = normalized_device(device)
        self.worker = ModelWorkerClient(self.model, self.device, python, log_callback)
        self.temporary_root = temporary_root or default_temporary_root()
        self.log_callback = log_callback
        self.pending: List[PendingClick] = []
        self.undo_stack = ClickUndoStack()
        self._temp_dir: Optional[Path] = None
        self._count = 0

    def start(self) -> ClickSegmenter:
        """Start the worker now (model loading happens in the background); returns self."""
        self.worker.start()
        return self

    def stop(self) -> None:
        """Stop the worker (without waiting) and drop pending clicks; their files go once it is gone."""
        folder, self._temp_dir = self._temp_dir, None
        self.pending = []
        remove = None if folder is None else lambda: shutil.rmtree(folder, ignore_errors=True)
        self.worker.stop(on_stopped=remove)

    def matches(self, model: Optional[str], device: str) -> bool:
        """True when this segmenter runs ``model`` on ``device`` (so it can be reused)."""
        return self.model == (model or None) and self.device == normalized_device(device)

    def submit(
        self,
        volume: Any,
        point: Any,
        segmentation: Any = None,
        segment_id: Optional[str] = None,
        one_segment_per_click: bool = False,
    ) -> PendingClick:
        """Queue a click; :meth:`poll` finishes it. Arguments as :meth:`segment`.

        Raises:
            ValueError: on an unsuitable volume, segmentation or point.
        """
        _check_nodes(volume, segmentation, segment_id)
        index = point_to_index(volume, point)
        click = PendingClick(
            volume, index, segmentation, segment_id or None, time.monotonic(), bool(one_segment_per_click)
        )
        self.start()
        self.pending.append(click)
        return click

    def poll(self) -> List[ClickResult]:
        """Send queued clicks once the model is ready and apply finished ones to the scene.

        Call it from the thread that owns the scene. Returns the results finished since the last call.

        Raises:
            .model_worker.WorkerFailed: the worker failed (pending clicks are dropped).
        """
        try:
            answers = {answer["id"]: answer for answer in self.worker.poll()}
        except Exception:
            self.pending = []
            raise
        finished = []
        for click in list(self.pending):
            if click.request_id is None and self.worker.info is not None:
                try:
                    self._send(click)
                except Exception:  # e.g. the crop cannot be written: this click is over
                    self.pending.remove(click)
                    raise
            if click.request_id is None:
                continue
            answer = answers.get(click.request_id) or self.worker.answers.get(click.request_id)
            if answer is None:
                continue
            self.worker.answers.pop(click.request_id, None)
            self.pending.remove(click)
            try:
                if _left_scene(click):  # the scene was closed while the model ran: drop the result
                    self._log("A click's result was dropped: its volume is no longer in the scene.")
                    continue
                click.result = self._finish(click, answer)
            finally:
                for path in click.files:
                    if path.name:
                        path.unlink(missing_ok=True)
            finished.append(click.result)
        return finished

    def segment(
        self,
        volume: Any,
        point: Any,
        segmentation: Any = None,
        segment_id: Optional[str] = None,
        timeout: Optional[float] = None,
        one_segment_per_click: bool = False,
    ) -> ClickResult:
        """Segment what lies under a point, and wait for the result.

        Args:
            volume: the CT ``vtkMRMLScalarVolumeNode`` (only read).
            point: world RAS coordinates or a markups node (its last control point).
            segmentation: the segmentation node to add to; None creates "<volume> MPU-Net" on the first find.
            segment_id: a segment of ``segmentation`` to merge the component into; None: the segment of the
                clicked class (see the module docstring).
            timeout: seconds to wait (the first click includes loading the model).
            one_segment_per_click: without ``segment_id``, add every find as a new segment instead of
                merging it into its class's segment.

        Returns:
            The :class:`ClickResult`; ``found`` is False (and nothing changed) on background.

        Raises:
            ValueError: on unsuitable nodes or a point outside the volume.
            RuntimeError: the model run for this click failed (message from the worker).
            TimeoutError: ``timeout`` elapsed.
        """
        click = self.submit(volume, point, segmentation, segment_id, one_segment_per_click)
        deadline = None if timeout is None else time.monotonic() + timeout
        while click.result is None:
            self.poll()
            if click.result is not None:
                break
            if click not in self.pending:  # dropped: the scene was closed
                return ClickResult(False, "the volume left the scene before the model answered")
            if deadline is not None and time.monotonic() > deadline:
                self.pending = [c for c in self.pending if c is not click]
                raise TimeoutError(f"click-to-segment did not finish within {timeout} s")
            time.sleep(0.01)
        return click.result

    def undo(self) -> Optional[UndoStep]:
        """Undo the last click that changed a segmentation (see :mod:`.click_undo`); None if there is none."""
        return self.undo_stack.undo()

    # -- internals --
    def _send(self, click: PendingClick) -> None:
        import SimpleITK as sitk

        from .scene_arrays import array_from_volume_node

        info = self.worker.info or {}
        array, geometry = array_from_volume_node(click.volume, copy=False)
        window = info.get("click_window") or info["window"]  # the model's input size (training patch)
        box = click_box(click.index, array.shape, geometry.spacing, window, info["preprocessing"])
        if self._temp_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="MPUNet-click-", dir=self.temporary_root))
        self._count += 1
        number = self._count
        crop_path, label_path = (
            self._temp_dir / f"crop-{number}.nrrd",
            self._temp_dir / f"labels-{number}.nrrd",
        )
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[box.slices]))
        image.SetSpacing(geometry.spacing)
        image.SetOrigin(tuple(float(v) for v in (geometry.ijk_to_lps() @ [*box.start[::-1], 1.0])[:3]))
        image.SetDirection(geometry.direction)
        sitk.WriteImage(image, str(crop_path))
        click.box, click.files = box, (crop_path, label_path)
        click.request_id = self.worker.request(
            "segment", input=str(crop_path), output=str(label_path), window=list(window)
        )

    def _finish(self, click: PendingClick, answer: Dict[str, Any]) -> ClickResult:
        import SimpleITK as sitk

        if answer.get("event") != "done":
            raise RuntimeError(f"the model run for this click failed: {answer.get('message')}")
        box = click.box
        assert box is not None
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(click.files[1])))
        if labels.shape != box.shape:
            raise RuntimeError(f"the model returned labels of shape {labels.shape} for a box of {box.shape}")
        dims = click.volume.GetImageData().GetDimensions()[::-1]
        local = tuple(i - s for i, s in zip(click.index, box.start))
        component = component_at(labels, local, open_faces=open_faces(box, dims))
        timing = dict(box=box, model_seconds=float(answer.get("seconds", 0.0)))
        if component is None:
            result = ClickResult(False, NOTHING_FOUND, **timing)
        else:
            result = self._apply(click, box, component, timing)
        result.seconds = time.monotonic() - click.started
        self._log(f"{result.message} ({result.seconds:.2f} s, model {result.model_seconds:.2f} s)")
        return result

    def _apply(self, click: PendingClick, box: Box, component: Any, timing: Dict[str, Any]) -> ClickResult:
        from .click_nodes import add_component, class_specs

        spec = class_specs(self.worker.info or {})[component.label]
        target = click.segment_id
        if target is None and not click.one_segment_per_click and click.segmentation is not None:
            target = class_segment_id(click.segmentation, spec.name)  # same class: one segment
        self.undo_stack.before_change(click.segmentation)
        node, segment_id, name = add_component(
            click.volume, box, component.mask, click.segmentation, target, spec
        )
        spacing = click.volume.GetSpacing()
        volume_ml = component.voxel_count * float(np.prod(spacing)) / 1000.0
        verb = "merged into" if target else "added as"
        message = f"{component.class_name}: {volume_ml:.2f} mL {verb} '{name}'"
        self.undo_stack.record(node, click.segmentation is None, message)
        if component.touches_border:
            message += " (it reaches the edge of the region the model saw and may continue beyond it)"
        return ClickResult(
            True,
            message,
            node,
            segment_id,
            name,
            component.class_name,
            component.voxel_count,
            volume_ml,
            component.touches_border,
            **timing,
        )

    def _log(self, text: str) -> None:
        if self.log_callback is not None:
            self.log_callback(text)


def class_segment_id(segmentation_node: Any, name: str) -> Optional[str]:
    """The ID of the first segment of ``segmentation_node`` named ``name`` (a class's segment), or None."""
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if segmentation.GetNthSegment(index).GetName() == name:
            return segmentation.GetNthSegmentID(index)
    return None


def _left_scene(click: PendingClick) -> bool:
    nodes = [click.volume] + ([click.segmentation] if click.segmentation is not None else [])
    return any(node.GetScene() is None for node in nodes)


def _check_nodes(volume: Any, segmentation: Any, segment_id: Optional[str]) -> None:
    if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"select a CT volume (scalar volume node) to click on, got {volume!r}")
    if volume.GetImageData() is None:
        raise ValueError(f"volume '{volume.GetName()}' has no voxels")
    if segmentation is not None and not segmentation.IsA("vtkMRMLSegmentationNode"):
        raise ValueError(f"the output must be a segmentation node, got {segmentation.GetClassName()}")
    if segment_id:
        if segmentation is None:
            raise ValueError("a segment to merge into needs its segmentation node")
        if segmentation.GetSegmentation().GetSegment(segment_id) is None:
            raise ValueError(f"segmentation '{segmentation.GetName()}' has no segment with ID '{segment_id}'")
