"""Segment a CT with a model bundle: the one function the command line, Slicer and batch runs share."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Collection, Optional, Union

import numpy as np

from MPUNetCore.bundle import Bundle
from MPUNetCore.fileutils import check_writable
from MPUNetCore.inference import Preprocessing, segment
from MPUNetCore.inference.settings import InferenceSettings, resolve_settings
from MPUNetCore.input_checks import WarnFn, checked_array
from MPUNetCore.memory_plan import fit_settings
from MPUNetCore.output_guard import (
    check_label_map_format,
    input_files,
    refuse_outputs_onto_inputs,
    reserve_output,
)
from MPUNetCore.profiling import stage
from MPUNetCore.volume_io import Volume, read_volume, write_label_map

ProgressCallback = Callable[[int, int], None]


def segment_volume(
    volume: Volume,
    bundle: Bundle,
    settings: Optional[InferenceSettings] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[Callable[[], bool]] = None,
    max_memory: Union[None, str, int] = None,
    fill_nonfinite: Optional[float] = None,
    warn: Optional[WarnFn] = None,
    keep: Collection[str] = (),
    **overrides: Any,
) -> np.ndarray:
    """Label map of `volume` on its own grid, with the preprocessing and settings its card prescribes.

    Args:
        volume: the CT (array in z, y, x order, HU).
        bundle: the model and its card.
        settings: how to run the model; None: the card's `inference` settings.
        progress: called as `progress(windows_done, windows_total)`.
        cancel: a `threading.Event` or zero-argument callable; when it turns true the run stops
            between windows with `InferenceCancelled`.
        max_memory: memory budget ("4G", bytes); the window and batch size are chosen to fit it
            (`MPUNetCore.memory_plan`). None: on the CPU min(4 GiB, the memory available).
        fill_nonfinite: HU that replaces NaN/Inf voxels; None refuses a volume holding any.
        warn: called with each warning (values that do not look like CT, voxels replaced, a window
            made smaller to fit the budget).
        keep: settings the user chose explicitly ("window", "batch_size"): the budget planning never
            changes them (a run that cannot fit with them is refused).
        **overrides: single settings replacing those of `settings` (device, tta, postprocess,
            batch_size, ...; see `InferenceSettings`); None values are ignored.

    Returns:
        A uint8 array of the volume's shape holding the card's class values.
    """
    base = settings if settings is not None else bundle.card.inference
    given = {k: v for k, v in overrides.items() if v is not None}
    chosen = resolve_settings(base, given)
    keep = set(keep) | {k for k in ("window", "batch_size") if k in given}  # explicit: never planned
    preprocessing = Preprocessing.from_dict(bundle.card.preprocessing)
    with stage("input checks"):
        chosen = fit_settings(volume, bundle.model, preprocessing, chosen, max_memory, keep, warn)
        array = checked_array(volume, fill_nonfinite, warn)
    return segment(
        array,
        volume.spacing,
        bundle.model,
        preprocessing,
        chosen,
        progress=progress,
        cancel=cancel,
    )


def segment_file(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    bundle: Bundle,
    overwrite: bool = False,
    series_uid: Optional[str] = None,
    allow_uneven_slices: bool = False,
    **options,
) -> Path:
    """Read a CT, segment it and write the label map with exactly the input's geometry.

    The output is checked before any work (a 3-D format, never the input itself, no overwrite without
    `overwrite`), reserved for this run (a second run writing it refuses at once) and written
    atomically, so a failed or cancelled run leaves no file behind.

    Args:
        input_path: a NIfTI/NRRD/MHA file or a DICOM series folder.
        output_path: the label map to write (its extension picks the format).
        bundle: the model.
        overwrite: replace an existing output.
        series_uid: which series of a folder holding several.
        allow_uneven_slices: accept a DICOM series with gaps or uneven spacing (recorded in the output).
        **options: passed to `segment_volume` (settings, progress, cancel, or single settings such as
            device, tta, postprocess).

    Returns:
        The output path.
    """
    check_label_map_format(output_path)
    refuse_outputs_onto_inputs([output_path], input_files([input_path]))
    with reserve_output(output_path):
        check_writable(output_path, overwrite)
        with stage("read"):
            volume = read_volume(input_path, series_uid, allow_uneven_slices, options.get("max_memory"))
        labels = segment_volume(volume, bundle, **options)
        with stage("write"):
            return write_label_map(labels, volume, output_path, overwrite=overwrite)
