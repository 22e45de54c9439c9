"""Baselines: the values a perturbation puts in place of the features it removes."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..layout import channel_axis

__all__ = ["baseline_rows", "blur"]


def baseline_rows(baseline, rows: np.ndarray) -> np.ndarray:
    """The baseline as an array of ``rows``' shape and dtype (a broadcast view where possible)."""
    if isinstance(baseline, str):
        if baseline == "mean":
            axes = tuple(range(1, rows.ndim))
            values = rows.astype(np.float64).mean(axis=axes, keepdims=True)
        elif baseline == "blur":
            values = blur(rows)
        else:
            raise ParameterError(f"baseline must be a number, an array, 'mean' or 'blur', got {baseline!r}")
    else:
        values = np.asarray(baseline)
        if values.dtype == object or not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise ParameterError(f"baseline must be numeric, got dtype {values.dtype}")
        given = values.shape
        if values.ndim == rows.ndim - 1:
            values = values[None]
        try:
            np.broadcast_shapes(values.shape, rows.shape)
        except ValueError:
            raise ParameterError(
                f"baseline of shape {given} cannot broadcast to one input row {rows.shape[1:]} "
                f"or to the rows {rows.shape}"
            ) from None
    if np.issubdtype(rows.dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        values = np.rint(values)
    return np.broadcast_to(values.astype(rows.dtype), rows.shape)


def blur(rows: np.ndarray) -> np.ndarray:
    """Gaussian blur of each row over its spatial axes (sigma = axis size / 32, at least 1)."""
    from scipy.ndimage import gaussian_filter

    row_shape = rows.shape[1:]
    channel = channel_axis(row_shape)
    sigma = [0.0] + [0.0 if axis == channel else max(1.0, size / 32) for axis, size in enumerate(row_shape)]
    return gaussian_filter(rows.astype(np.float64), sigma=sigma, mode="reflect")


def fill_rows(baseline: np.ndarray) -> tuple[np.ndarray, bool]:
    """The distinct rows of a :func:`baseline_rows` result, for a fused graph's fill input.

    Returns the baseline as one row when every explained row shares it (a broadcast view),
    else one row per explained row, and whether it is shared.
    """
    shared = baseline.strides[0] == 0
    return np.ascontiguousarray(baseline[:1] if shared else baseline), shared


def fill_index(shared: bool, owners: np.ndarray) -> np.ndarray:
    """Which fill row each perturbed row uses: row 0 when shared, else its owner's."""
    return np.zeros(len(owners), dtype=np.int64) if shared else owners.astype(np.int64)
