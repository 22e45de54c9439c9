"""The one rule for image layout: which axis of a row holds the channels, and the channel-summed map.

Explainers (RISE masks, LIME superpixels, blur baselines, occlusion windows, CAM upsampling),
image reading, plots, metrics and summaries all ask here, so they agree on every row shape:

- a layout the model declares (``preprocessing["layout"]`` in its metadata) or the caller
  gives wins: ``"nchw"`` puts channels on axis 0 of a row, ``"nhwc"`` on axis 2;
- otherwise a 3-D row whose first axis has 1, 3 or 4 entries is channels-first, else one whose
  last axis has is channels-last (first wins a tie: ONNX convolutions are NCHW);
- a 3-D row that fits neither, and rows that are not 3-D, have no channel axis: methods treat
  all their axes alike (RISE draws 3-D masks, the blur smooths every axis), and a method that
  needs a channel axis asks for one. Only the heat map, which must be drawn in 2-D, sums such
  a row over its first axis (ONNX's channels-first convention).
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError

__all__ = ["CHANNEL_SIZES", "channel_axis", "heat_map", "infer_layout"]

#: channel counts that mark an axis of a 3-D row as the channel axis
CHANNEL_SIZES = (1, 3, 4)
_AXIS = {"nchw": 0, "nhwc": 2}


def infer_layout(row_shape) -> str | None:
    """``"nchw"`` or ``"nhwc"`` for a 3-D row whose first or last axis has 1, 3 or 4 channels.

    Channels first wins when both ends could be channels; None when the row is not 3-D or
    neither end looks like a channel axis.

    >>> infer_layout((3, 224, 224)), infer_layout((224, 224, 3)), infer_layout((10,))
    ('nchw', 'nhwc', None)
    """
    if row_shape is None or len(row_shape) != 3:
        return None
    if row_shape[0] in CHANNEL_SIZES:
        return "nchw"
    if row_shape[2] in CHANNEL_SIZES:
        return "nhwc"
    return None


def channel_axis(row_shape, layout=None) -> int | None:
    """The channel axis of a row (0 or 2), or None when it has none (see the module's rule).

    >>> channel_axis((3, 8, 8)), channel_axis((8, 8, 3)), channel_axis((8, 8, 3), "nchw"), channel_axis((5, 6, 7))
    (0, 2, 0, None)
    """
    if row_shape is None or len(row_shape) != 3:
        return None
    given = str(layout).lower() if layout else None
    if given is not None and given not in _AXIS:
        raise ParameterError(f"layout must be 'nchw', 'nhwc' or None, got {layout!r}")
    found = given or infer_layout(row_shape)
    return None if found is None else _AXIS[found]


def heat_map(row, preprocessing=None) -> np.ndarray:
    """One row's attributions summed over the image channels: (H, W), or (1, n) for a 1-D row.

    ``row`` is an Explanation of one row; ``preprocessing`` defaults to ``row.preprocessing``.
    Metrics, summaries and plots all read this map.
    """
    if preprocessing is None:
        preprocessing = row.preprocessing or {}
    values, data = np.asarray(row.values[0], dtype=np.float64), np.asarray(row.data[0])
    if data.ndim > 3:
        raise ParameterError(f"image maps take rows of shape (H, W), (C, H, W) or (H, W, C), got {data.shape}")
    layout = preprocessing.get("layout")
    axis = channel_axis(data.shape, layout)
    if axis is None and data.ndim == 3:
        axis = 0  # a map is 2-D: a 3-D row without channels is summed over its first axis
    heat = _channel_sum(values, data.shape, axis, fixed=bool(layout))
    return heat[None, :] if heat.ndim == 1 else heat


def _channel_sum(values: np.ndarray, data_shape: tuple, axis: int | None, fixed: bool) -> np.ndarray:
    """Values summed over the channel axis: values of the row's shape, or one channel, or (H, W)."""
    if axis is None:
        if values.shape != tuple(data_shape):
            raise ParameterError(f"explanation values of shape {values.shape} do not match its rows of shape {data_shape}")
        return values
    # Without a layout, channels first wins a tie; the values' single channel can settle it.
    axes = (axis,) if fixed else (axis, 2 - axis)
    for candidate in axes:
        plane = tuple(size for position, size in enumerate(data_shape) if position != candidate)
        if values.shape == plane:
            return values
        if values.ndim == 3 and values.shape[candidate] in (1, data_shape[candidate]):
            if tuple(np.delete(values.shape, candidate)) == plane:
                return values.sum(axis=candidate)
    raise ParameterError(
        f"explanation values of shape {values.shape} do not fit image rows of shape {data_shape}: expected the "
        f"rows' shape, one channel on axis {axis}, or the (H, W) plane"
    )
