"""Run ``mpunet segment`` in a background process and turn its result into a segmentation node.

:class:`SegmentationJob` is one run, on a :class:`.background.BackgroundCommand`. It writes the input volume
node to a temporary NRRD through a detached storage node (the node itself is not touched: no storage node is
added, its file name does not change), launches ``python -m MPUNetCore segment in.nrrd -o out.nrrd --model M
--device D --progress json``, reports the JSON progress lines of its stderr as a fraction and every other
line as log text, and on success reads the label map into a NEW segmentation node (or into the output node
the caller chose). A failed run raises :class:`SegmentationFailed` carrying the process's full stderr; a
cancelled one leaves no node, no process and no temporary file. :meth:`SegmentationJob.cancel` returns at
once (the process group is stopped and reaped by a thread). A job belongs to the scene its input volume was
in: closing that scene cancels it, and a result never lands in a scene other than the one it started in.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from .advice import module_advice
from .background import BackgroundCommand
from .dependencies import background_environment, mpunetcore_root, python_executable

if TYPE_CHECKING:
    from MPUNetCore.inference.settings import InferenceSettings

ProgressCallback = Callable[[float, str], None]  # (fraction done in [0, 1], what is happening)
LogCallback = Callable[[str], None]

_RUNNING_JOBS: weakref.WeakSet[SegmentationJob] = weakref.WeakSet()


@atexit.register
def _cancel_running_jobs() -> None:  # a script that ends (or fails) mid-run must not leave it behind
    for job in list(_RUNNING_JOBS):
        job.cancel(wait=True)  # stops its process, removes its temporary folder


class SegmentationFailed(RuntimeError):
    """The background run failed; the message holds its error text.

    Attributes:
        returncode: the process's exit code (2: a user error such as a bad model path; 1: a failure).
        stderr: the process's full stderr text (progress lines included).
        stdout: its stdout text.
    """

    def __init__(self, message: str, returncode: Optional[int] = None, stderr: str = "", stdout: str = ""):
        super().__init__(message)
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout


class SegmentationCancelled(RuntimeError):
    """The run was cancelled; nothing was added to the scene."""


@dataclass(frozen=True)
class SegmentationOptions:
    """What to run: a model and the settings the user chose.

    Attributes:
        model: registry name or bundle path (card .json, weights .pt or folder); None: the default model.
        settings: ``MPUNetCore``'s inference settings (torch-free). Of these, the device, test-time
            augmentation and post-processing reach the background run (``mpunet segment`` options); the
            window, overlap and the rest are the model card's (the window and batch size made smaller
            where the memory budget needs it: ``MPUNetCore.memory_plan``).
        max_memory: the memory budget ("4G", "512M"; ``mpunet segment --max-memory``); None: the default
            (on the CPU min(4 GiB, the memory available)).
    """

    model: Optional[str] = None
    settings: InferenceSettings = field(default_factory=lambda: _settings())
    max_memory: Optional[str] = None

    @classmethod
    def create(
        cls,
        model: Optional[str] = None,
        device: str = "auto",
        tta: bool = False,
        postprocess: bool = True,
        max_memory: Optional[str] = None,
    ) -> SegmentationOptions:
        """Options from the module's controls (an empty ``max_memory`` means the default).

        Raises:
            ValueError: on a device other than auto, cpu, cuda (or gpu), cuda:N or mps, or a memory size
                that is not like 4G or 512M.
        """
        from MPUNetCore.memory import parse_memory  # torch-free

        settings = _settings(device=device, tta=bool(tta), postprocess=bool(postprocess))
        memory = str(max_memory).strip() if max_memory is not None else ""
        if memory:
            try:
                parse_memory(memory)
            except ValueError as error:
                raise ValueError(f"Memory limit: {error}") from None
        return cls(model=model or None, settings=settings, max_memory=memory or None)

    @property
    def device(self) -> str:
        """The device as ``mpunet`` expects it ("gpu" already read as "cuda")."""
        return self.settings.device

    def command(self, python: str, input_path: Path, output_path: Path) -> List[str]:
        """Return the command line of ``mpunet segment`` for these options."""
        from MPUNetCore.registry import DEFAULT_MODEL

        model = str(self.model or DEFAULT_MODEL)
        if os.path.exists(model):  # the process runs in another folder: a relative path would miss
            model = os.path.abspath(model)
        args = [python, "-m", "MPUNetCore", "segment", os.path.abspath(input_path)]
        args += ["-o", os.path.abspath(output_path)]
        args += ["--model", model, "--device", self.settings.device]
        args += ["--progress", "json"]
        if self.settings.tta:
            args.append("--tta")
        if not self.settings.postprocess:
            args.append("--no-postprocess")
        if self.max_memory:
            args += ["--max-memory", self.max_memory]
        return args


def normalized_device(device: str) -> str:
    """Return ``device`` as ``mpunet`` expects it ("gpu" -> "cuda").

    Raises:
        ValueError: on anything but auto, cpu, cuda, cuda:N, gpu or mps.
    """
    return _settings(device=device).device


def _settings(**values: Any) -> InferenceSettings:
    # imported here: the module's file imports this package before MPUNetCore is on sys.path
    from MPUNetCore.inference.settings import InferenceSettings

    return InferenceSettings(**values)


# Share of the progress bar each stage of a run takes: (start, end).
_STAGES = {"prepare": (0.0, 0.02), "download": (0.02, 0.1), "windows": (0.1, 0.95), "import": (0.95, 1.0)}


class SegmentationJob:
    """One background segmentation run (see the module docstring).

    Args:
        input_volume: the CT ``vtkMRMLScalarVolumeNode``; only read.
        options: model, device and settings.
        output_segmentation: a segmentation node to overwrite with the result; None creates a new one.
        python: background interpreter (default :func:`.dependencies.python_executable`).
        temporary_root: folder for the run's temporary folder (default: Slicer's temporary path).
        progress_callback: called as ``(fraction, message)``.
        log_callback: called with each line of output and with the job's own messages.
    """

    RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
    #: seconds the process group gets to exit after Cancel's interrupt before it is killed.
    cancel_grace = 5.0

    def __init__(
        self,
        input_volume: Any,
        options: SegmentationOptions,
        output_segmentation: Any = None,
        python: Optional[str] = None,
        temporary_root: Optional[str] = None,
        progress_callback: Optional[ProgressCallback] = None,
        log_callback: Optional[LogCallback] = None,
    ) -> None:
        _check_input(input_volume, output_segmentation)
        self.input_volume = input_volume
        self.options = options
        self.output_segmentation = output_segmentation
        self.python = python or python_executable()
        self.temporary_root = temporary_root or default_temporary_root()
        self._progress_callback = progress_callback
        self._log_callback = log_callback
        self.state = self.RUNNING
        self.segmentation_node: Any = None
        self.error: Optional[Exception] = None
        self.temp_dir: Optional[Path] = None
        self.command: Optional[BackgroundCommand] = None
        self.log_lines: List[str] = []
        self.started = time.monotonic()
        #: the scene the run belongs to (its input's); the result is only ever added there.
        self.scene: Any = input_volume.GetScene()
        self.cancel_reason = ""
        self._close_observer: Optional[int] = None

    # -- life cycle --
    def start(self) -> SegmentationJob:
        """Write the input to a temporary NRRD and launch the run; returns self."""
        import slicer

        self._progress("prepare", 0, 1, "Writing the input volume")
        self.temp_dir = Path(tempfile.mkdtemp(prefix="MPUNet-", dir=self.temporary_root))
        try:
            input_path = self.temp_dir / "input.nrrd"
            storage = slicer.vtkMRMLVolumeArchetypeStorageNode()  # detached: the input node is not touched
            storage.SetFileName(str(input_path))
            storage.SetUseCompression(0)
            if not storage.WriteData(self.input_volume):
                raise RuntimeError(f"could not write '{self.input_volume.GetName()}' to {input_path}")
            args = self.options.command(self.python, input_path, self.temp_dir / "output.nrrd")
            self._log("Running: " + " ".join(args))
            self.command = BackgroundCommand(args, env=background_environment(), cwd=str(mpunetcore_root()))
            self.command.start()
            _RUNNING_JOBS.add(self)
            if self.scene is not None:  # closing the scene cancels the run (see _on_scene_close)
                self._close_observer = self.scene.AddObserver(
                    _scene_event("StartCloseEvent"), self._on_scene_close
                )
        except BaseException:
            self._remove_temp_dir()
            raise
        self._progress("prepare", 1, 1, "Loading the model")
        return self

    def poll(self) -> bool:
        """Process new output; when the run has ended, import its result (or record its error).

        Call it regularly from the thread that owns the scene. Returns True once the job is over.
        """
        if self.state != self.RUNNING:
            return True
        assert self.command is not None, "call start() first"
        finished = self.command.done()  # checked first: once true, every line is already in the queue
        for name, line in self.command.read_lines():
            if name == "stderr" and line.startswith("{") and self._handle_event(line):
                continue
            self._log(self._in_user_words(line))
        if not finished:
            return False
        try:
            if self._scene_changed():  # a stale result: its scene was closed (or the nodes removed)
                self._cancelled("the input volume is no longer in the scene the run started in")
            else:
                self._finish(self.command.returncode)
        finally:
            self._end_observation()
            self._remove_temp_dir()
            _RUNNING_JOBS.discard(self)
        return True

    def wait(self, timeout: Optional[float] = None, interval: float = 0.05) -> Any:
        """Poll until the job is over and return the segmentation node.

        Args:
            timeout: seconds; when exceeded the run is cancelled and ``TimeoutError`` raised.
            interval: seconds between polls.

        Raises:
            SegmentationFailed: the run failed (its stderr is in the exception).
            SegmentationCancelled: the run was cancelled.
            TimeoutError: ``timeout`` elapsed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.poll():
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(wait=True)  # a script's timeout: leave nothing running behind
                raise TimeoutError(f"segmentation did not finish within {timeout} s; it was cancelled")
            time.sleep(interval)
        if self.state == self.CANCELLED:
            raise SegmentationCancelled("segmentation was cancelled")
        if self.state == self.FAILED:
            assert self.error is not None
            raise self.error
        return self.segmentation_node

    def cancel(self, wait: bool = False, reason: str = "") -> None:
        """Stop the run: the process (and its children) end, the temporary folder goes, no node is added.

        Args:
            wait: False (default): return at once; a thread interrupts, kills and reaps the process group,
                then removes the temporary folder (``self.command.wait_stopped()`` waits for that).
                True: return once all that is done.
            reason: why, for the log (default "Cancelled.").
        """
        if self.state != self.RUNNING:
            if wait and self.state == self.CANCELLED and self.command is not None:
                self.command.wait_stopped()  # an earlier Cancel's thread may still be reaping
                self._remove_temp_dir()
            return
        self._cancelled(reason or "Cancelled.", wait)

    def _cancelled(self, reason: str, wait: bool = False) -> None:
        self.state = self.CANCELLED
        self.cancel_reason = reason
        self._end_observation()
        if self.command is not None:
            self.command.read_lines()  # keep the collected output complete (without waiting)
            self.command.stop(self.cancel_grace, wait=wait, on_stopped=self._remove_temp_dir)
        else:
            self._remove_temp_dir()
        self._log(reason)

    def _on_scene_close(self, caller: Any, event: Any) -> None:
        self._cancelled("Cancelled: the scene was closed.")

    def _scene_changed(self) -> bool:
        nodes = [self.input_volume] + ([self.output_segmentation] if self.output_segmentation else [])
        return any(node.GetScene() is None or node.GetScene() is not self.scene for node in nodes)

    def _end_observation(self) -> None:
        if self._close_observer is not None and self.scene is not None:
            self.scene.RemoveObserver(self._close_observer)
        self._close_observer = None

    @property
    def stderr_text(self) -> str:
        """Everything the process wrote on stderr so far."""
        return "\n".join(self.command.stderr_lines) if self.command is not None else ""

    # -- internals --
    def _handle_event(self, line: str) -> bool:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return False
        if not isinstance(event, dict) or event.get("event") != "progress":
            return False
        task = str(event.get("task", ""))
        done, total = event.get("done") or 0, event.get("total")
        stage = "download" if task.startswith("download") else "windows"
        what = "Downloading the model" if stage == "download" else "Segmenting"
        self._progress(stage, done, total, f"{what} ({done}/{total})" if total else what)
        return True

    def _in_user_words(self, text: str) -> str:
        """``text`` with the run's temporary input file named as the volume node the user knows, and the
        command line's fixes the module has no control for said as what to do in Slicer."""
        text = module_advice(text)
        if self.temp_dir is None:
            return text
        return text.replace(str(self.temp_dir / "input.nrrd"), f"volume '{self.input_volume.GetName()}'")

    def _finish(self, returncode: Optional[int]) -> None:
        if returncode != 0:
            stderr = self.stderr_text
            details = "\n".join(line for line in self.command.stderr_lines if not line.startswith('{"event"'))
            details = self._in_user_words(details.strip()) or "(no output)"
            if returncode is not None and returncode < 0:  # POSIX: killed by a signal, e.g. out of memory
                details += f"\n(the process was killed by signal {-returncode}; was memory exhausted?)"
            self._fail(
                SegmentationFailed(
                    f"MPU-Net segmentation failed (exit code {returncode}):\n{details}",
                    returncode,
                    stderr,
                    "\n".join(self.command.stdout_lines),
                )
            )
            return
        self._progress("import", 0, 1, "Importing the result")
        node = None
        try:
            from .results import (
                read_label_map_on_volume_grid,
                replace_segmentation_content,
                segment_specs_for_model,
            )
            from .segmentation_nodes import create_segmentation_node, remove_node

            labels = read_label_map_on_volume_grid(self.temp_dir / "output.nrrd", self.input_volume)
            specs = segment_specs_for_model(self.options.model)
            node = create_segmentation_node(labels, self.input_volume, specs)
            if self.output_segmentation is not None:
                replace_segmentation_content(self.output_segmentation, node)
                remove_node(node)
                node = self.output_segmentation
        except Exception as error:  # any import problem is reported like a failed run
            if node is not None and node is not self.output_segmentation:
                remove_node(node)
            message = f"importing the MPU-Net result failed: {error}"
            self._fail(SegmentationFailed(message, 0, self.stderr_text))
            return
        self.segmentation_node = node
        self.state = self.SUCCEEDED
        self._progress("import", 1, 1, "Done")
        self._log(f"Created '{node.GetName()}' in {time.monotonic() - self.started:.1f} s.")
        if not labels.any():  # say so: empty segments look like a display problem otherwise
            names = ", ".join(spec.name for spec in specs)
            self._log(f"The model found nothing in this volume: the segments ({names}) are empty.")

    def _fail(self, error: SegmentationFailed) -> None:
        self.error = error
        self.state = self.FAILED
        self._log(str(error))

    def _progress(self, stage: str, done: float, total: Optional[float], message: str) -> None:
        if self._progress_callback is None:
            return
        start, end = _STAGES[stage]
        if not total:
            fraction = start
        elif done >= total:
            fraction = end
        else:
            fraction = start + (end - start) * max(done / total, 0.0)
        self._progress_callback(fraction, message)

    def _log(self, text: str) -> None:
        self.log_lines.append(text)
        if self._log_callback is not None:
            self._log_callback(text)

    def _remove_temp_dir(self) -> None:
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def _check_input(input_volume: Any, output_segmentation: Any) -> None:
    if input_volume is None or not input_volume.IsA("vtkMRMLScalarVolumeNode"):
        raise ValueError(f"select a CT volume (scalar volume node) as input, got {input_volume!r}")
    if input_volume.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ValueError(f"'{input_volume.GetName()}' is a label map: select the CT volume as input")
    image = input_volume.GetImageData()
    if image is None or min(image.GetDimensions()) < 1:
        raise ValueError(f"volume '{input_volume.GetName()}' has no voxels")
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"volume '{input_volume.GetName()}' is not a single-channel (grayscale) CT")
    if output_segmentation is not None and not output_segmentation.IsA("vtkMRMLSegmentationNode"):
        raise ValueError(f"the output must be a segmentation node, got {output_segmentation.GetClassName()}")


def _scene_event(name: str) -> int:
    import slicer

    return int(getattr(slicer.vtkMRMLScene, name))


def default_temporary_root() -> str:
    """Slicer's temporary folder inside the application, the system's elsewhere."""
    try:
        import slicer

        path = str(slicer.app.temporaryPath)
        if path and os.path.isdir(path):
            return path
    except (ImportError, AttributeError):
        pass
    return tempfile.gettempdir()
