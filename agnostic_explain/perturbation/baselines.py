"""Baselines: the values a perturbation puts in place of the features it removes."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..layout import channel_axis

__all__ = ["baseline_rows", "blur", "fill_values"]


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
            fits = np.broadcast_shapes(values.shape, rows.shape) == rows.shape
        except ValueError:
            fits = False
        if not fits:  # (3, 8, 8) against rows (2, 1, 8, 8) broadcasts, but to a larger shape than the rows
            raise ParameterError(
                f"baseline of shape {given} cannot broadcast to one input row {rows.shape[1:]} "
                f"or to the rows {rows.shape}"
            )
        values = fill_values(values, rows.dtype, "baseline")
    if np.issubdtype(rows.dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        values = np.rint(values)
    return np.broadcast_to(values.astype(rows.dtype), rows.shape)


def fill_values(values, dtype, name: str) -> np.ndarray:
    """``values`` checked to be real, finite and representable in the input's ``dtype``.

    A NaN, an infinity or a complex number, or a value that overflows the input's dtype
    (``1e39`` in float32 becomes infinity) would make every attribution NaN without a word.

    >>> fill_values(np.asarray(1e39), np.float32, "baseline")
    Traceback (most recent call last):
    ...
    agnostic_explain.errors.ParameterError: baseline 1e+39 does not fit the input's dtype float32 (it overflows to infinity); expected finite values within +-3.4e+38
    """
    values = np.asarray(values)
    dtype = np.dtype(dtype)
    if values.dtype.kind == "c":
        raise ParameterError(f"{name} must be real, got complex values ({_first(values)!r}, dtype {values.dtype})")
    if values.dtype == object or values.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must be numeric, got dtype {values.dtype}")
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if bad.any():
            raise ParameterError(
                f"{name} must be finite, got {_first(values[bad])} "
                f"{'' if values.ndim == 0 else f'in {int(bad.sum())} of {values.size} values'}".rstrip()
                + "; NaN or infinity would make every attribution NaN"
            )
    if values.size == 0 or values.dtype.kind == "b":
        return values
    if dtype.kind in "iu":
        info, low, high = np.iinfo(dtype), values.min(), values.max()
        if low < info.min or high > info.max:
            worst = low if low < info.min else high
            raise ParameterError(
                f"{name} {_first(worst)} does not fit the input's dtype {dtype}; expected values in "
                f"{info.min}..{info.max}"
            )
    elif dtype.kind == "f" and values.dtype.itemsize > dtype.itemsize:
        with np.errstate(over="ignore"):
            cast = values.astype(dtype)
        bad = ~np.isfinite(cast)
        if bad.any():
            raise ParameterError(
                f"{name} {_first(values[bad])} does not fit the input's dtype {dtype} (it overflows to infinity); "
                f"expected finite values within +-{float(np.finfo(dtype).max):.3g}"
            )
    return values


def _first(values):
    value = np.asarray(values).flat[0]
    return value.item() if isinstance(value, np.generic) else value


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
