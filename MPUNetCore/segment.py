"""Segment a CT with a model bundle: the one function the command line, Slicer and batch runs share."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from MPUNetCore.bundle import Bundle
from MPUNetCore.fileutils import check_writable
from MPUNetCore.inference import Preprocessing, segment
from MPUNetCore.output_guard import (
    check_label_map_format,
    input_files,
    refuse_outputs_onto_inputs,
    reserve_output,
)
from MPUNetCore.volume_io import Volume, read_volume, write_label_map

ProgressCallback = Callable[[int, int], None]


def segment_volume(
    volume: Volume,
    bundle: Bundle,
    device: str = "auto",
    tta: bool = False,
    postprocess: bool = True,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[Callable[[], bool]] = None,
    batch_size: Optional[int] = None,
) -> np.ndarray:
    """Label map of `volume` on its own grid, with the preprocessing and window its card prescribes.

    Args:
        volume: the CT (array in z, y, x order, HU).
        bundle: the model and its card.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps".
        tta: average over mirrored inputs (slower, slightly more accurate).
        postprocess: keep the largest liver component and tumours inside the liver.
        progress: called as `progress(windows_done, windows_total)`.
        cancel: a `threading.Event` or zero-argument callable; when it turns true the run stops
            between windows with `InferenceCancelled`.
        batch_size: windows per forward pass; the card's default when None.

    Returns:
        A uint8 array of the volume's shape holding the card's class values.
    """
    settings = dict(bundle.card.inference)
    if batch_size is not None:
        settings["batch_size"] = batch_size
    return segment(
        volume.array,
        volume.spacing,
        bundle.model,
        Preprocessing.from_dict(bundle.card.preprocessing),
        tta=tta,
        postprocess=postprocess,
        device=device,
        progress=progress,
        cancel=cancel,
        **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()},
    )


def segment_file(
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    bundle: Bundle,
    overwrite: bool = False,
    series_uid: Optional[str] = None,
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
        **options: passed to `segment_volume` (device, tta, postprocess, progress, cancel, ...).

    Returns:
        The output path.
    """
    check_label_map_format(output_path)
    refuse_outputs_onto_inputs([output_path], input_files([input_path]))
    with reserve_output(output_path):
        check_writable(output_path, overwrite)
        volume = read_volume(input_path, series_uid=series_uid)
        labels = segment_volume(volume, bundle, **options)
        return write_label_map(labels, volume, output_path, overwrite=overwrite)
