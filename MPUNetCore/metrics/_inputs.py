"""Input checks shared by the metric functions: binary masks, label maps and voxel spacing."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np


def to_numpy(array: Any, name: str) -> np.ndarray:
    """Return ``array`` as a NumPy array without copying when possible.

    Args:
        array: A NumPy array, a torch tensor (any device) or anything ``np.asarray`` accepts.
        name: The argument name, used in error messages.

    Returns:
        The array as ``np.ndarray``.
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    result = np.asarray(array)
    if result.dtype == object:
        raise ValueError(f"{name} has dtype object; pass a numeric NumPy array or torch tensor.")
    return result


def check_spacing(spacing: Optional[Sequence[float]], ndim: int) -> Tuple[float, ...]:
    """Validate a voxel spacing given in array axis order.

    Args:
        spacing: Spacing in millimetres, one value per array axis (``(z, y, x)`` for a 3D array from
            ``sitk.GetArrayFromImage``), or ``None`` for 1 mm on every axis.
        ndim: Number of array dimensions.

    Returns:
        The spacing as a tuple of positive finite floats.
    """
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).ravel())
    if len(values) != ndim:
        raise ValueError(
            f"spacing has {len(values)} values but the masks have {ndim} dimensions; give one spacing "
            "per array axis (z, y, x order for arrays from sitk.GetArrayFromImage)."
        )
    if not all(np.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be positive and finite, got {values}.")
    return values


def _check_shapes(prediction: np.ndarray, reference: np.ndarray) -> None:
    if prediction.shape != reference.shape:
        raise ValueError(
            f"prediction shape {prediction.shape} differs from reference shape {reference.shape}; "
            "resample the prediction onto the reference grid first."
        )
    if prediction.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D arrays, got {prediction.ndim} dimensions.")
    if prediction.size == 0:
        raise ValueError(f"masks are empty arrays (shape {prediction.shape}).")


def to_binary(array: np.ndarray, name: str) -> np.ndarray:
    """Return a boolean view or copy of a mask whose values must all be 0 or 1.

    Args:
        array: The mask (bool, integer or floating dtype).
        name: The argument name, used in error messages.

    Returns:
        A boolean array of the same shape (a view for bool and 1-byte integer masks).
    """
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind in "iu":
        low, high = array.min(), array.max()
        if low < 0 or high > 1:
            raise ValueError(
                f"{name} is not a binary mask: values span [{low}, {high}], expected only 0 and 1. "
                "For a label map use label_metrics(); threshold probabilities before computing metrics."
            )
        if array.dtype.itemsize == 1 and array.flags.c_contiguous:
            return array.view(np.bool_)
        return array != 0
    if array.dtype.kind == "f":
        n_binary = np.count_nonzero(array == 0) + np.count_nonzero(array == 1)
        if n_binary != array.size:
            raise ValueError(
                f"{name} is not a binary mask: {array.size - n_binary} values are neither 0 nor 1 "
                "(soft probabilities?). Threshold or argmax it first."
            )
        return array != 0
    raise ValueError(f"{name} has unsupported dtype {array.dtype}; expected bool, integer or float 0/1.")


def binary_pair(prediction: Any, reference: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Convert and validate a prediction/reference pair of binary masks.

    Args:
        prediction: Predicted mask (NumPy array or torch tensor), values 0/1.
        reference: Reference mask of the same shape, values 0/1.

    Returns:
        ``(prediction, reference)`` as boolean arrays.
    """
    pred = to_numpy(prediction, "prediction")
    ref = to_numpy(reference, "reference")
    _check_shapes(pred, ref)
    return to_binary(pred, "prediction"), to_binary(ref, "reference")


def label_pair(prediction: Any, reference: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Convert and validate a prediction/reference pair of integer label maps.

    Args:
        prediction: Predicted label map (NumPy array or torch tensor).
        reference: Reference label map of the same shape.

    Returns:
        ``(prediction, reference)`` as NumPy arrays.
    """
    pred = to_numpy(prediction, "prediction")
    ref = to_numpy(reference, "reference")
    _check_shapes(pred, ref)
    for name, arr in (("prediction", pred), ("reference", ref)):
        if arr.dtype.kind == "f":
            if not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{name} label map holds non-integer values; expected integer labels.")
        elif arr.dtype.kind not in "biu":
            raise ValueError(f"{name} label map has unsupported dtype {arr.dtype}; expected integers.")
    return pred, ref
