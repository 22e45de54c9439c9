"""Backgrounds: the data that stands in for the features a Shapley method removes.

A background is a set of rows with weights summing to 1. Removing a group of features means
replacing it with each background row in turn and taking the weighted mean of the model's
outputs, so the value of a coalition ``S`` of groups is
``v(S) = sum_b weights[b] * f(x_S, background[b]_{not S})``. :func:`coalition_values`
computes ``v`` for many coalitions and all explained rows in one batched model run; KernelSHAP
and Shapley value sampling both build on it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..seeds import as_generator
from ..errors import ParameterError, require
from ..runtime.fused import Blend

__all__ = ["Background", "coalition_values", "summarize", "validate_background"]


class Background(NamedTuple):
    """Background rows and their weights.

    Attributes
    ----------
    rows : ndarray of shape (n_background, ...)
    weights : ndarray of shape (n_background,), float64, summing to 1
    """

    rows: np.ndarray
    weights: np.ndarray


def summarize(data, k: int = 10, method: str = "kmeans", *, round_values: bool = True, random_state=None) -> Background:
    """Summarise a data set into ``k`` weighted background rows.

    Parameters
    ----------
    data : array_like of shape (n_samples, ...)
        Rows of the model's input; rows with several axes are flattened for clustering.
    k : int, default 10
        Rows in the summary. ``k`` equal to ``n_samples`` returns the data, equally weighted.
    method : {"kmeans", "random"}
        ``"kmeans"``: scikit-learn's KMeans centroids weighted by cluster size, as
        ``shap.kmeans`` does; ``"random"``: ``k`` rows drawn without replacement, equally weighted.
    round_values : bool, default True
        For ``"kmeans"``: snap each centroid coordinate to the nearest value that column takes
        in ``data`` (as ``shap.kmeans``), so that discrete features keep valid values.
    random_state : int or numpy.random.Generator, optional
        Seeds the draw (``"random"``) or KMeans (``"kmeans"``, 0 when None, as in shap).

    Returns
    -------
    Background
        ``rows`` of shape (k, ...) in ``data``'s dtype and ``weights`` of shape (k,).

    Examples
    --------
    >>> data = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    >>> summary = summarize(data, k=2, method="kmeans")
    >>> sorted(summary.weights.round(3).tolist())
    [0.333, 0.667]
    """
    data = np.asarray(data)
    if data.ndim < 2 or len(data) == 0:
        raise ParameterError(f"data must have shape (n_samples, ...) with at least one row, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ParameterError("data holds NaN or infinite values; impute them before summarising")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(data):
        raise ParameterError(f"k must be an int in 1 .. {len(data)} (the rows of data), got {k!r}")
    k = int(k)
    if k == len(data):
        return Background(data.copy(), np.full(k, 1.0 / k))
    if method == "random":
        picked = np.sort(as_generator(random_state).choice(len(data), size=k, replace=False))
        return Background(data[picked], np.full(k, 1.0 / k))
    if method != "kmeans":
        raise ParameterError(f"method must be 'kmeans' or 'random', got {method!r}")
    cluster = require("sklearn.cluster", "scikit-learn")
    flat = data.reshape(len(data), -1).astype(np.float64)
    seed = 0 if random_state is None else random_state
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**31 - 1))
    fitted = cluster.KMeans(n_clusters=k, random_state=seed, n_init=10).fit(flat)
    centers = fitted.cluster_centers_
    if round_values:
        # per column, the data value nearest each centroid coordinate (shap.kmeans' rounding)
        nearest = np.abs(flat[:, None, :] - centers[None, :, :]).argmin(axis=0)  # (k, n_columns)
        centers = np.take_along_axis(flat, nearest, axis=0)
    counts = np.bincount(fitted.labels_, minlength=k).astype(np.float64)
    rows = centers.reshape((k,) + data.shape[1:])
    if np.issubdtype(data.dtype, np.integer):
        rows = np.rint(rows)
    return Background(rows.astype(data.dtype), counts / counts.sum())


def validate_background(background, rows: np.ndarray, *, parameter: str = "background") -> Background:
    """Check a background against the explained rows; return it in their dtype with weights.

    Parameters
    ----------
    background : array_like of shape (n_background, ...) or (...), or Background
        Rows shaped like one explained row (a single row may omit the batch axis), or a
        :class:`Background` such as :func:`summarize` returns.
    rows : ndarray of shape (n_rows, ...)
        The explained rows.

    Returns
    -------
    Background
        ``rows`` of shape (n_background, *rows.shape[1:]) and dtype ``rows.dtype``;
        ``weights`` normalised to sum to 1.
    """
    row_shape = rows.shape[1:]
    if isinstance(background, Background):
        values, weights = np.asarray(background.rows), np.asarray(background.weights, dtype=np.float64)
    else:
        values, weights = np.asarray(background), None
    if values.dtype == object or not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
        raise ParameterError(f"{parameter} must be numeric, got dtype {values.dtype}")
    if values.shape == row_shape:
        values = values[None]
    if values.shape[1:] != row_shape or len(values) == 0:
        raise ParameterError(
            f"{parameter} of shape {values.shape} does not match the explained rows: expected "
            f"(n_background, {', '.join(map(str, row_shape))}) with n_background >= 1, rows shaped like one "
            f"input row {tuple(row_shape)}"
        )
    if not np.all(np.isfinite(values)):
        raise ParameterError(f"{parameter} holds NaN or infinite values")
    if weights is None:
        weights = np.full(len(values), 1.0 / len(values))
    elif weights.shape != (len(values),) or np.any(weights < 0) or not weights.sum() > 0:
        raise ParameterError(
            f"{parameter}.weights must be {len(values)} non-negative numbers with a positive sum, "
            f"got shape {weights.shape}"
        )
    if np.issubdtype(rows.dtype, np.integer) and np.issubdtype(values.dtype, np.floating):
        values = np.rint(values)
    return Background(values.astype(rows.dtype, copy=False), weights / weights.sum())


def coalition_values(
    problem, mask: np.ndarray, replacement: np.ndarray, weights: np.ndarray, keep: np.ndarray, desc: str
) -> np.ndarray:
    """The value ``v(S)`` of each coalition for each explained row, in one model run.

    Parameters
    ----------
    problem : Problem
    mask : ndarray of shape row_shape
        Validated group ids.
    replacement : ndarray of shape (1 or n_rows, n_background, *row_shape)
        Background rows shared by all explained rows (1) or one set per row (n_rows).
    weights : ndarray of shape (n_background,)
        Background weights summing to 1.
    keep : ndarray of shape (n_coalitions, n_groups), bool
        The groups each coalition takes from the explained row.

    Returns
    -------
    ndarray of shape (n_rows, n_coalitions), float64
        Weighted means over the background of the target. Coalitions keeping every group
        are not evaluated: their value is ``problem.base_values``.
    """
    rows = problem.rows
    n_rows, n_background = len(rows), len(weights)
    keep = np.asarray(keep, dtype=bool)
    full = keep.all(axis=1)
    run = keep[~full]
    per_row = len(run) * n_background
    shared = len(replacement) == 1

    # Element-level keep flags, gathered once rather than per batch (see masks.compose).
    kept = run[:, mask]
    spread = (slice(None), None) + (slice(None),) * mask.ndim  # (coalitions, 1, *row_shape)

    def make_rows(start: int, stop: int) -> np.ndarray:
        # Rows run owner by owner, coalition by coalition, background row by background row:
        # one broadcast where() per owner writes each row once, with no gathered copies of the
        # explained row or of the background (a third of the memory traffic).
        pieces, index = [], start
        while index < stop:
            owner, rest = divmod(index, per_row)
            end = min(stop, (owner + 1) * per_row)
            first, last = rest // n_background, -(-(end - owner * per_row) // n_background)
            source = replacement[0 if shared else owner]
            block = np.where(kept[first:last][spread], rows[owner], source).reshape((-1,) + rows.shape[1:])
            skip = rest - first * n_background
            pieces.append(block[skip : skip + end - index])
            index = end
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    total = n_rows * per_row
    values = np.empty((n_rows, len(keep)))
    values[:, full] = problem.base_values[:, None]
    if total:
        owners = np.arange(total) // per_row
        scores = problem.evaluate(total, make_rows, owners, desc=desc, blend=lambda: _coalition_blend(
            mask, replacement.astype(rows.dtype, copy=False), run, per_row, n_background))
        values[:, ~full] = scores.reshape(n_rows, len(run), n_background) @ weights
    return values


def _coalition_blend(mask, replacement, run, per_row: int, n_background: int) -> Blend:
    """Coalitions as group flags over the background rows, for a fused graph."""
    shared = len(replacement) == 1
    fill = np.ascontiguousarray(replacement.reshape((-1,) + replacement.shape[2:]))

    def compact(start: int, stop: int) -> dict:
        owner, rest = np.divmod(np.arange(start, stop), per_row)
        coalition, drawn = np.divmod(rest, n_background)
        index = drawn if shared else owner * n_background + drawn
        return {"keep": run[coalition], "fill_index": index.astype(np.int64)}

    return Blend("groups", fill, compact, segments=mask)
