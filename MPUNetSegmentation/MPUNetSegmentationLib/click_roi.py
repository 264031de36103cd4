"""Click-to-segment geometry, torch-free: the input-grid box around a click, and the component under it.

* :func:`click_box` turns the model's window (its input size in network space) into the box of input voxels
  it covers, centred on the clicked voxel and shifted to stay inside the volume. The network-space grid
  follows ``MPUNetCore.inference.Preprocessing``: in-plane ``inplane_factor`` or ``target_spacing``, slices
  at ``slice_spacing`` (or the input's). The box is the largest one whose network-space size does not
  exceed the window, so the model runs exactly one window.
* :func:`component_at` picks what was clicked in the label map the model returned for that box: the
  class of the voxel under the point (tumour if it is label 2, liver otherwise) and the connected
  component of that class's mask holding the point; background under the point means nothing was found.

Arrays are ``(z, y, x)``; spacings ``(x, y, z)`` in mm, as everywhere in MPUNetCore.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Tuple

import numpy as np

#: Label values forming each clickable class (LiTS: the liver includes its tumours).
CLASS_LABELS = {"liver": (1, 2), "tumor": (2,)}
NOTHING_FOUND = "nothing found at this point"


@dataclass(frozen=True)
class Box:
    """A box of voxels ``[z0, z1) x [y0, y1) x [x0, x1)`` of a ``(z, y, x)`` array.

    Attributes:
        start: ``(z0, y0, x0)``.
        stop: ``(z1, y1, x1)`` (exclusive).
    """

    start: Tuple[int, int, int]
    stop: Tuple[int, int, int]

    @property
    def slices(self) -> Tuple[slice, slice, slice]:
        """Index the array with these to get the box."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    @property
    def shape(self) -> Tuple[int, int, int]:
        """``(z, y, x)`` size of the box."""
        return tuple(b - a for a, b in zip(self.start, self.stop))  # type: ignore[return-value]

    def contains(self, index: Sequence[int]) -> bool:
        """True when the ``(z, y, x)`` voxel index lies inside the box."""
        return all(a <= int(i) < b for i, a, b in zip(index, self.start, self.stop))


def network_ratios(
    spacing_xyz: Sequence[float], preprocessing: Mapping[str, Any]
) -> Tuple[float, float, float]:
    """Network voxels per input voxel along z, y, x for an input of ``spacing_xyz``.

    The network grid has ``round(n x ratio)`` voxels for ``n`` input voxels, as in
    ``MPUNetCore.inference.Preprocessing.network_shape``.

    Args:
        spacing_xyz: input voxel size (x, y, z) in mm.
        preprocessing: a model card's preprocessing (``inplane_factor`` or ``target_spacing``,
            ``slice_spacing``), as ``Preprocessing.to_dict()`` writes it.

    Returns:
        ``(z, y, x)`` ratios.

    Raises:
        ValueError: when the preprocessing names neither an in-plane factor nor a target spacing.
    """
    sx, sy, sz = (float(s) for s in spacing_xyz)
    target = preprocessing.get("target_spacing")
    factor = preprocessing.get("inplane_factor", 0.5 if target is None else None)
    if target is not None:
        ry, rx = sy / float(target[1]), sx / float(target[0])
    elif factor:
        ry = rx = float(factor)
    else:
        raise ValueError("the model's preprocessing needs 'inplane_factor' or 'target_spacing'")
    slice_spacing = preprocessing.get("slice_spacing", 1.0)
    rz = 1.0 if slice_spacing is None else sz / float(slice_spacing)
    return rz, ry, rx


def click_box(
    index_zyx: Sequence[int],
    shape_zyx: Sequence[int],
    spacing_xyz: Sequence[float],
    window: Sequence[Optional[int]],
    preprocessing: Mapping[str, Any],
) -> Box:
    """The input-grid box covered by one network window centred on a voxel.

    Args:
        index_zyx: the clicked voxel.
        shape_zyx: the volume's array shape.
        spacing_xyz: the volume's voxel size (x, y, z) in mm.
        window: the model's network-space window ``(D, H, W)``; None or 0: the full extent of that axis.
        preprocessing: the model card's preprocessing (see :func:`network_ratios`).

    Returns:
        The box: along each axis the most input voxels whose network-space size fits the window (the
        whole axis when the window is the full extent or covers it), centred on the voxel as far as the
        volume allows.

    Raises:
        ValueError: when the voxel lies outside the volume or the window is not three sizes.
    """
    index = [int(i) for i in index_zyx]
    shape = [int(n) for n in shape_zyx]
    if len(window) != 3 or len(index) != 3 or len(shape) != 3:
        raise ValueError(f"expected 3D index, shape and window, got {index_zyx}, {shape_zyx}, {window}")
    if not all(0 <= i < n for i, n in zip(index, shape)):
        raise ValueError(f"voxel {tuple(index)} lies outside the volume (shape {tuple(shape)})")
    ratios = network_ratios(spacing_xyz, preprocessing)
    start, stop = [], []
    for axis in range(3):  # z, y, x
        size, w, ratio = shape[axis], window[axis], ratios[axis]
        if w in (None, 0):
            length = size
        else:
            length = max(1, min(size, int(math.floor(int(w) / ratio))))
            while length < size and round((length + 1) * ratio) <= int(w):  # Python's rounding, as MPUNetCore
                length += 1
            while length > 1 and round(length * ratio) > int(w):
                length -= 1
        low = min(max(index[axis] - length // 2, 0), size - length)
        start.append(low)
        stop.append(low + length)
    return Box(tuple(start), tuple(stop))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClickedComponent:
    """What a click selected in a label map.

    Attributes:
        class_name: "tumor" (label 2 under the point) or "liver" (label 1).
        label: the label value under the point.
        mask: boolean ``(z, y, x)`` mask of the connected component holding the point.
        touches_border: True when the component reaches a face of the array that is not a face of the
            whole volume (it may continue beyond the region the model saw).
    """

    class_name: str
    label: int
    mask: np.ndarray
    touches_border: bool

    @property
    def voxel_count(self) -> int:
        """Number of voxels in the component."""
        return int(np.count_nonzero(self.mask))


def component_at(
    labels: np.ndarray,
    index_zyx: Sequence[int],
    fully_connected: bool = False,
    class_labels: Mapping[str, Sequence[int]] = CLASS_LABELS,
    open_faces: Optional[Sequence[bool]] = None,
) -> Optional[ClickedComponent]:
    """The connected component of the clicked class that holds a voxel, or None on background.

    Args:
        labels: ``(z, y, x)`` label map (0 background, 1 liver, 2 tumour).
        index_zyx: the clicked voxel (inside ``labels``).
        fully_connected: 26-connectivity if True, else 6 (faces only: touching lesions stay apart).
        class_labels: label values of each class; label 2 under the point selects "tumor", any other
            non-zero label "liver".
        open_faces: for the 6 faces (z0, z1, y0, y1, x0, x1), whether the volume continues beyond it
            (default: all open); used for :attr:`ClickedComponent.touches_border`.

    Returns:
        The component, or None when the voxel is background (nothing found).

    Raises:
        ValueError: on a non-3D array or an index outside it.
    """
    import SimpleITK as sitk

    labels = np.asarray(labels)
    index = tuple(int(i) for i in index_zyx)
    if labels.ndim != 3 or len(index) != 3 or not all(0 <= i < n for i, n in zip(index, labels.shape)):
        raise ValueError(f"voxel {index} is not inside the 3D label map of shape {labels.shape}")
    value = int(labels[index])
    if value == 0:
        return None
    class_name = "tumor" if value in class_labels["tumor"] else "liver"
    mask = np.isin(labels, class_labels[class_name])
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    labelled = sitk.ConnectedComponent(image, fully_connected)  # keep it alive while its view is read
    components = sitk.GetArrayViewFromImage(labelled)
    component = components == components[index]
    del components, labelled
    faces = list(open_faces) if open_faces is not None else [True] * 6
    touching = [
        component[0].any(),
        component[-1].any(),
        component[:, 0].any(),
        component[:, -1].any(),
        component[:, :, 0].any(),
        component[:, :, -1].any(),
    ]
    touches = any(bool(t) and bool(f) for t, f in zip(touching, faces))
    return ClickedComponent(class_name, value, np.ascontiguousarray(component), touches)


def open_faces(box: Box, shape_zyx: Sequence[int]) -> Tuple[bool, ...]:
    """For a box inside a volume: whether each face (z0, z1, y0, y1, x0, x1) has voxels beyond it."""
    faces = []
    for axis in range(3):
        faces += [box.start[axis] > 0, box.stop[axis] < int(shape_zyx[axis])]
    return tuple(faces)
