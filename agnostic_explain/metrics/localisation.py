"""Localisation metrics: does an image explanation point at the object? (ground truth boxes or masks)

The pointing game of Zhang et al. (2016, "Top-down neural attention by excitation backprop")
and the relevance mass accuracy of Arras et al. (2022, "CLEVR-XAI"). Both read the
channel-summed attribution map of each row, so a CAM of shape (n, 1, H, W) over inputs of
shape (n, 3, H, W) is read like a map of the input's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..layout import heat_map

__all__ = ["PointingResult", "channel_summed_maps", "pointing_game", "relevance_mass"]


@dataclass(frozen=True, eq=False)
class PointingResult:
    """Pointing-game outcome per row.

    Attributes
    ----------
    hits : ndarray of shape (n_rows,), bool
        True where the map's maximum falls in the row's box or mask (within ``tolerance``).
    points : ndarray of shape (n_rows, 2), int
        (y, x) of each map's maximum (the first one in row-major order on a tie).
    tolerance : float
        Pixels of slack around the box or mask.
    """

    hits: np.ndarray
    points: np.ndarray
    tolerance: float

    @property
    def accuracy(self) -> float:
        """Share of rows hit: ``hits.mean()``."""
        return float(self.hits.mean())

    def __repr__(self) -> str:
        return f"PointingResult(rows={len(self.hits)}, accuracy={self.accuracy:.3f}, tolerance={self.tolerance})"


def channel_summed_maps(explanation) -> np.ndarray:
    """Each row's attributions summed over the image channels: shape (n_rows, H, W).

    A row that is not an image (1-D) gives a map of shape (1, n_features).
    """
    return np.stack([heat_map(explanation[row]) for row in range(len(explanation))])


def pointing_game(explanation, boxes_or_masks, *, tolerance=0) -> PointingResult:
    """Whether each row's most relevant pixel lies on the object.

    Parameters
    ----------
    explanation : Explanation
        Image rows: values of the data's shape, one channel, or the (H, W) plane.
    boxes_or_masks : array_like
        Boxes ``(y0, y1, x0, x1)`` of shape (4,) or (n_rows, 4), half-open like slices
        (``map[y0:y1, x0:x1]``); or boolean masks of shape (H, W) or (n_rows, H, W). One box
        or mask is shared by all rows.
    tolerance : float, default 0
        A maximum within this many pixels (Euclidean) of the box or mask also counts as a
        hit; Zhang et al. use 15 pixels at 224 x 224.

    Returns
    -------
    PointingResult

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> values = np.zeros((1, 1, 8, 8), np.float32); values[0, 0, 2, 5] = 1.0
    >>> explanation = ae.Explanation(values=values, base_values=np.zeros(1), data=np.zeros_like(values),
    ...                              target=np.zeros(1, int), method="hand-made")
    >>> pointing_game(explanation, (0, 4, 4, 8)).hits.tolist()
    [True]
    """
    if not np.isscalar(tolerance) or not float(tolerance) >= 0:
        raise ParameterError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}")
    maps = channel_summed_maps(explanation)
    masks = _masks(boxes_or_masks, maps.shape)
    hits, points = np.zeros(len(maps), dtype=bool), np.zeros((len(maps), 2), dtype=np.int64)
    for row, (heat, mask) in enumerate(zip(maps, masks)):
        points[row] = np.unravel_index(int(np.argmax(heat)), heat.shape)
        if mask[tuple(points[row])]:
            hits[row] = True
        elif tolerance > 0 and mask.any():
            distance = np.hypot(*(np.nonzero(mask) - points[row][:, None]))
            hits[row] = bool(distance.min() <= tolerance)
    return PointingResult(hits=hits, points=points, tolerance=float(tolerance))


def relevance_mass(explanation, masks) -> np.ndarray:
    """Share of each row's positive attribution that lies inside its mask (Arras et al.).

    Parameters
    ----------
    explanation : Explanation
        Image rows, as for :func:`pointing_game`.
    masks : array_like
        Boolean masks of shape (H, W) or (n_rows, H, W), or boxes ``(y0, y1, x0, x1)`` of
        shape (4,) or (n_rows, 4).

    Returns
    -------
    ndarray of shape (n_rows,)
        ``sum(positive map inside) / sum(positive map)`` in [0, 1], where the map is the
        channel sum; NaN for a row with no positive attribution.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> values = np.zeros((1, 1, 4, 4)); values[0, 0, 0, 0], values[0, 0, 3, 3], values[0, 0, 1, 1] = 3.0, 1.0, -5.0
    >>> explanation = ae.Explanation(values=values, base_values=np.zeros(1), data=np.zeros_like(values),
    ...                              target=np.zeros(1, int), method="hand-made")
    >>> relevance_mass(explanation, (0, 2, 0, 2)).tolist()
    [0.75]
    """
    maps = channel_summed_maps(explanation)
    positive = np.clip(maps, 0, None).reshape(len(maps), -1)
    inside = np.where(_masks(masks, maps.shape).reshape(len(maps), -1), positive, 0.0).sum(axis=1)
    total = positive.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def _masks(boxes_or_masks, maps_shape: tuple) -> np.ndarray:
    """Boolean masks of shape (n_rows, H, W) from boxes or masks, checked against the maps."""
    n, height, width = maps_shape
    array = np.asarray(boxes_or_masks)
    if array.ndim >= 2 and array.shape[-2:] == (height, width) and array.ndim <= 3:
        if array.dtype != bool and not np.isin(array, (0, 1)).all():
            raise InputShapeError("boxes_or_masks: masks must be boolean (or 0/1) arrays of shape (H, W)")
        masks = np.broadcast_to(array.astype(bool), (n, height, width)) if array.ndim == 2 else array.astype(bool)
        if len(masks) != n:
            raise InputShapeError(f"boxes_or_masks: {len(masks)} masks for {n} explained rows; give one per row or one")
        return masks
    if array.ndim in (1, 2) and array.shape[-1] == 4:
        boxes = np.broadcast_to(array, (n, 4)) if array.ndim == 1 else array
        if len(boxes) != n:
            raise InputShapeError(f"boxes_or_masks: {len(boxes)} boxes for {n} explained rows; give one per row or one")
        masks = np.zeros((n, height, width), dtype=bool)
        for row, (y0, y1, x0, x1) in enumerate(boxes):
            if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width) or not np.all(np.equal(np.mod(boxes[row], 1), 0)):
                raise ParameterError(
                    f"boxes_or_masks: box {tuple(boxes[row].tolist())} of row {row} is not a non-empty integer "
                    f"(y0, y1, x0, x1) inside a map of {height} x {width}"
                )
            masks[row, int(y0):int(y1), int(x0):int(x1)] = True
        return masks
    raise InputShapeError(
        f"boxes_or_masks of shape {array.shape} are neither boxes (4,) / (n_rows, 4) of (y0, y1, x0, x1) nor masks "
        f"(H, W) / (n_rows, H, W) matching the maps of {height} x {width}"
    )
