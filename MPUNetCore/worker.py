"""A persistent model worker: load a model once, then segment one volume per request (JSON lines).

Interactive tools (Slicer's click-to-segment) send many small requests; starting a process, importing
torch and loading the model for each would cost seconds every time. This worker does that once::

    python -m MPUNetCore.worker --model demo-phantom --device auto

Protocol: one JSON object per line. The worker writes to **stdout** only protocol lines; log text goes
to stderr.

* On start-up, after loading the model: ``{"event": "ready", "model": name, "device": "cpu",
  "classes": [...], "window": [D, H, W or null], "click_window": [...], "preprocessing": {...},
  "input_multiple": 8, "seconds": load time}``; a model that cannot be loaded ends the process with
  ``{"event": "error", "message": ...}`` and exit code 2.
* Request ``{"id": 7, "op": "segment", "input": "crop.nrrd", "output": "labels.nrrd", "tta": false,
  "postprocess": false, "window": [D, H, W]}``: the volume file is segmented with the card's preprocessing
  and inference settings (see ``MPUNetCore.inference.InferenceSettings``; TTA and post-processing off
  unless asked for), any setting the request names replacing the card's, and the label map is written
  with exactly its geometry. An unknown setting is an error that names the valid ones. Answer
  ``{"event": "done", "id": 7, "seconds": s, "shape": [z, y, x]}``, or
  ``{"event": "error", "id": 7, "message": ...}`` (the worker keeps serving).
* ``{"op": "quit"}`` or the end of stdin ends the worker with exit code 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO

if TYPE_CHECKING:
    from MPUNetCore.inference.settings import InferenceSettings


_REQUEST_FIELDS = ("id", "op", "input", "output")


def _send(stream: TextIO, **event: Any) -> None:
    stream.write(json.dumps(event) + "\n")
    stream.flush()


def _window(card: Any) -> List[Optional[int]]:
    """The network-space window of a card (None entries: the full extent of that axis)."""
    return list(card.inference.window)


def click_window(card: Any) -> List[Optional[int]]:
    """The window for one region around a point: the input size the model was trained on, if known.

    In order: the card's ``inference.click_window``; the training patch (``training.config.train.patch``,
    as ``mpunet-train`` records it); else the whole-volume window (:func:`_window`).
    """
    explicit = card.inference.click_window
    if explicit:
        return list(explicit)
    config = card.training.get("config") if isinstance(card.training, dict) else None
    patch = (config or {}).get("train", {}).get("patch") if isinstance(config, dict) else None
    if (
        isinstance(patch, (list, tuple))
        and len(patch) == 3
        and all(isinstance(v, int) and v > 0 for v in patch)
    ):
        return [int(v) for v in patch]
    return _window(card)


class ModelWorker:
    """Serve segmentation requests with one loaded bundle (see the module docstring).

    Args:
        model: registry name or bundle path; None: the default model.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        out: where protocol lines go (default stdout).
    """

    def __init__(self, model: Optional[str], device: str = "auto", out: Optional[TextIO] = None) -> None:
        from MPUNetCore.bundle import load_bundle
        from MPUNetCore.inference import Preprocessing, select_device
        from MPUNetCore.registry import resolve_model

        self.out = out or sys.stdout
        start = time.perf_counter()
        self.device = select_device(device)
        self.bundle = load_bundle(resolve_model(model), device=self.device)
        self.card = self.bundle.card
        self.preprocessing = Preprocessing.from_dict(self.card.preprocessing)
        self.window = _window(self.card)
        # requests run with the card's settings on the loaded device, without TTA or post-processing
        self.settings = self.card.inference.replace(device=str(self.device), tta=False, postprocess=False)
        self.load_seconds = time.perf_counter() - start

    def ready_event(self) -> Dict[str, Any]:
        """The start-up line: what the client needs to plan a region for this model."""
        return {
            "event": "ready",
            "model": self.card.name,
            "device": str(self.device),
            "classes": [c.__dict__ for c in self.card.classes],
            "window": self.window,
            "click_window": click_window(self.card),
            "preprocessing": self.preprocessing.to_dict(),
            "input_multiple": int(getattr(self.bundle.model, "input_multiple", 8) or 1),
            "seconds": round(self.load_seconds, 3),
        }

    def segment(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """Segment ``request["input"]`` into ``request["output"]``; returns the "done" event.

        Raises:
            ValueError: a missing field or an unreadable input.
        """
        from MPUNetCore.ct_checks import replace_nonfinite
        from MPUNetCore.inference import segment
        from MPUNetCore.volume_io import read_volume, write_label_map

        for key in ("input", "output"):
            if not request.get(key):
                raise ValueError(f"a segment request needs '{key}' (a file path)")
        settings = self.request_settings(request)
        start = time.perf_counter()
        volume = read_volume(request["input"])
        replace_nonfinite(volume.array, str(volume.path), None)  # NaN/Inf refused as in `mpunet segment`
        labels = segment(volume.array, volume.spacing, self.bundle.model, self.preprocessing, settings)
        write_label_map(labels, volume, request["output"], overwrite=True)
        seconds = time.perf_counter() - start
        return {
            "event": "done",
            "id": request.get("id"),
            "seconds": round(seconds, 3),
            "shape": list(labels.shape),
        }

    def request_settings(self, request: Dict[str, Any]) -> InferenceSettings:
        """The worker's settings with those a request names (every key but id, op, input and output).

        Raises:
            InferenceSettingsError: an unknown setting (the valid ones are named) or a bad value.
        """
        from MPUNetCore.inference.settings import InferenceSettings

        given = {k: v for k, v in request.items() if k not in _REQUEST_FIELDS and v is not None}
        return InferenceSettings.from_dict(
            {**self.settings.to_dict(), **given}, source=f"request {request.get('id')!r}"
        )

    def serve(self, stream: TextIO) -> int:
        """Answer requests from ``stream`` until "quit" or its end; returns the exit code (0)."""
        _send(self.out, **self.ready_event())
        for line in iter(stream.readline, ""):
            line = line.strip()
            if not line:
                continue
            request_id = None
            try:
                request = json.loads(line)
                if not isinstance(request, dict):
                    raise ValueError("a request must be a JSON object")
                request_id = request.get("id")
                op = request.get("op")
                if op == "quit":
                    break
                if op != "segment":
                    raise ValueError(f"unknown op {op!r}; known: segment, quit")
                _send(self.out, **self.segment(request))
            except Exception as error:  # one bad request must not end the worker
                from MPUNetCore.memory import is_out_of_memory, memory_error_message

                if is_out_of_memory(error):
                    message = memory_error_message(error, "this region")
                elif isinstance(error, ValueError):
                    message = str(error)
                else:
                    message = f"{type(error).__name__}: {error}"
                _send(self.out, event="error", id=request_id, message=message)
        return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run the worker on stdin/stdout; returns the exit code (2: the model cannot be loaded)."""
    parser = argparse.ArgumentParser(
        prog="python -m MPUNetCore.worker", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--model", default=None, help="registry name or bundle path (default model if omitted)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    args = parser.parse_args(argv)
    try:
        worker = ModelWorker(args.model, args.device)
    except (ValueError, OSError, RuntimeError) as error:
        _send(sys.stdout, event="error", id=None, message=str(error))
        return 2
    try:
        return worker.serve(sys.stdin)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
