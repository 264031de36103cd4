"""The simulation grid of an anatomical phantom and the shape primitives drawn on it.

Coordinates are millimetres in the patient frame: ``u`` = LPS x (+u is the patient's LEFT), ``v`` = LPS y
(+v is POSTERIOR), ``w`` = LPS z (+w is SUPERIOR), with ``u = v = 0`` on the body's centre line and ``w = 0``
at the top of the right diaphragm dome. Shapes are evaluated only inside their bounding boxes.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ..phantom_shapes import AxialGrid, Wobble, ellipsoid_level, segment_distance

__all__ = ["Grid", "Wobble", "ellipsoid_level", "segment_distance", "tube"]

Box = Tuple[slice, slice, slice]


class Grid(AxialGrid):
    """A voxel grid holding one tissue code per voxel.

    Args:
        u: x coordinates (mm) of the columns, increasing.
        v: y coordinates (mm) of the rows, increasing.
        w: z coordinates (mm) of the slices, increasing.
    """

    def allowed(self, box: Box, codes: Optional[Sequence[int]]) -> Optional[np.ndarray]:
        """Mask of the voxels in ``box`` whose tissue is one of ``codes`` (None: everything)."""
        if codes is None:
            return None
        table = np.zeros(256, dtype=bool)
        table[list(codes)] = True
        return table[self.tissue[box]]

    def paint(
        self, box: Box, mask: np.ndarray, code: int, over: Optional[Sequence[int]] = None
    ) -> np.ndarray:
        """Set ``code`` where ``mask`` holds (and the old tissue is in ``over``); returns the painted mask."""
        ok = self.allowed(box, over)
        if ok is not None:
            mask = mask & ok
        self.tissue[box][mask] = code
        return mask

    def blob(
        self, centre, radii, code: int, over=None, wobble=None, **kw
    ) -> Optional[Tuple[Box, np.ndarray]]:
        """Paint a deformed ellipsoid (see ``ellipsoid_level`` for ``angle``, ``shear``, ``taper``)."""
        reach = max(radii) * (1.7 if kw.get("taper") else 1.3) + abs(kw.get("shear", 0)) * radii[2]
        box = self.box(centre, (reach, reach, max(radii[2] * 1.3, reach * 0.5)))
        if box is None:
            return None
        u, v, w = self.coords(box)
        level = ellipsoid_level(u, v, w, centre, radii, **kw)
        if wobble is not None:
            level = level + wobble(u, v, w)
        return box, self.paint(box, level < 0, code, over)

    def column(self, mask2d: np.ndarray, zsel: np.ndarray, code: int, over=None) -> None:
        """Paint a 2D axial mask ``(y, x)`` on the slices selected by the boolean ``zsel``."""
        zs = np.nonzero(zsel)[0]
        ys, xs = np.nonzero(np.broadcast_to(mask2d, self.shape[1:]))
        if not zs.size or not ys.size:
            return
        index = (zs[:, None], ys[None, :], xs[None, :])
        if over is None:
            self.tissue[index] = code
            return
        table = np.zeros(256, dtype=bool)
        table[list(over)] = True
        old = self.tissue[index]
        self.tissue[index] = np.where(table[old], np.uint8(code), old)


def tube(grid: Grid, points: Sequence[Sequence[float]], radii: Sequence[float], code: int, over=None) -> None:
    """Paint a vessel along a polyline; the radius changes linearly from segment to segment."""
    for p0, p1, r0, r1 in zip(points[:-1], points[1:], radii[:-1], radii[1:]):
        r = max(r0, r1)
        centre = np.add(p0, p1) / 2
        box = grid.box(centre, np.abs(np.subtract(p1, p0)) / 2 + r)
        if box is None:
            continue
        u, v, w = grid.coords(box)
        grid.paint(box, segment_distance(u, v, w, p0, p1) < (r0 + r1) / 2, code, over)
