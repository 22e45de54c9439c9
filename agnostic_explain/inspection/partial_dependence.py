"""Partial dependence and ICE curves, with scikit-learn's definitions, on any loaded model.

For each point of a grid over one feature (or a pair), every row of ``X`` gets the feature
set to that value and the model's target is read: the rows' curves are the individual
conditional expectations (ICE), their mean the partial dependence (PD). The grid is
scikit-learn's (``sklearn.inspection.partial_dependence``, method "brute"): ``grid_resolution``
equally spaced values between two percentiles of the feature, or its unique values when
there are fewer. All grid points times all rows are one batched evaluation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from ..errors import ParameterError
from ..runtime.batching import evaluate
from ..runtime.targets import resolve, transform
from ..tables import text_table
from .base import prepare_dataset

__all__ = ["PartialDependence", "partial_dependence"]

_KINDS = ("average", "individual", "both")


@dataclass(frozen=True)
class PartialDependence:
    """Partial dependence of a model's target on one feature or a pair.

    Attributes
    ----------
    grid_values : tuple of ndarray
        One grid per feature, each of shape (n_k,).
    average : ndarray of shape (n_1,) or (n_1, n_2), or None
        The mean target over the rows at each grid point (None when ``kind="individual"``).
    individual : ndarray of shape (n_rows, n_1) or (n_rows, n_1, n_2), or None
        Each row's target at each grid point (ICE; None when ``kind="average"``).
    features : tuple of int
        The feature indices.
    feature_names : tuple of str
    deciles : tuple of ndarray
        Per feature, its deciles in ``X`` (shape (9,)), for the plot's rug.
    target : int or None
        The class index read from the output, None for a one-value output.
    output : str
        The model output read.
    n_evals : int
        Rows the model evaluated.
    seconds : float
    """

    grid_values: tuple
    average: np.ndarray | None
    individual: np.ndarray | None
    features: tuple
    feature_names: tuple
    deciles: tuple
    target: int | None
    output: str
    n_evals: int
    seconds: float

    def __str__(self) -> str:
        curve = self.average if self.average is not None else self.individual.mean(axis=0)
        head = (f"partial dependence of {self.output!r}"
                + (f" target {self.target}" if self.target is not None else "")
                + f" on {', '.join(self.feature_names)} ({self.n_evals} evaluations)")
        if len(self.features) == 1:
            rows = [(self.feature_names[0], "mean target")]
            rows += [(f"{g:.4g}", f"{v:.4g}") for g, v in zip(self.grid_values[0], curve)]
        else:
            rows = [(self.feature_names[0], "min", "max")]
            rows += [(f"{g:.4g}", f"{line.min():.4g}", f"{line.max():.4g}")
                     for g, line in zip(self.grid_values[0], curve)]
        return "\n".join([head, *text_table(rows, right=set(range(1, len(rows[0]))))])


def partial_dependence(
    model,
    X,
    features,
    *,
    target=None,
    output=None,
    grid_resolution=100,
    percentiles=(0.05, 0.95),
    kind="average",
    output_transform=None,
    batch_size=None,
    progress=None,
) -> PartialDependence:
    """Partial dependence (and ICE) of the model's target on one feature or a pair.

    Parameters
    ----------
    model : Model, path, bytes or onnx.ModelProto
        Loaded with :func:`agnostic_explain.load` unless already a Model.
    X : array_like of shape (n_rows, n_features)
        The rows averaged over; they also define the grid.
    features : int, str, or a pair of them
        Feature indices (or names, when the model knows its feature names).
    target : int, optional
        The class index of a multi-value output; None for an output of one value per row.
    output : str or int, optional
        The model output; by default the first floating-point one (a converted
        classifier's probabilities).
    grid_resolution : int, default 100
        Grid points per feature (fewer when the feature has fewer unique values).
    percentiles : (float, float), default (0.05, 0.95)
        The grid's bounds, as percentiles of the feature in ``X``.
    kind : {"average", "individual", "both"}
        Keep the PD, the ICE curves, or both.
    output_transform : None, "softmax" or "sigmoid"
        Read the target from raw outputs or from probabilities.
    batch_size : int or "auto", optional
        Overrides the model's batch size.
    progress : bool, optional
        Progress bar: None shows one on runs over ~2 s in a terminal.

    Returns
    -------
    PartialDependence

    Examples
    --------
    >>> import numpy as np
    >>> from agnostic_explain.runtime import CallableModel
    >>> model = CallableModel(lambda x: x @ np.array([[2.0], [0.0]]))
    >>> x = np.random.default_rng(0).normal(size=(30, 2)).astype(np.float32)
    >>> pd = partial_dependence(model, x, 0, grid_resolution=5)
    >>> bool(np.allclose(np.diff(pd.average) / np.diff(pd.grid_values[0]), 2.0, atol=1e-4))
    True
    """
    started = time.perf_counter()
    if kind not in _KINDS:
        raise ParameterError(f"kind must be one of {_KINDS}, got {kind!r}")
    if isinstance(grid_resolution, bool) or not isinstance(grid_resolution, Integral) or grid_resolution < 2:
        raise ParameterError(f"grid_resolution must be an integer >= 2, got {grid_resolution!r}")
    if target is not None and (isinstance(target, bool) or not isinstance(target, Integral)):
        raise ParameterError(f"target must be None or an int class index, got {target!r}")
    _check_percentiles(percentiles)
    model, feeds = prepare_dataset(model, X, output_transform=output_transform)
    rows = feeds.rows
    if rows.ndim != 2:
        raise ParameterError(f"X: partial dependence needs tabular rows (n_rows, n_features), got shape {rows.shape}")
    columns = _feature_indices(features, rows.shape[1], model.feature_names)
    grids = tuple(grid_from_column(rows[:, c], grid_resolution, percentiles, c) for c in columns)
    grid_shape = tuple(len(g) for g in grids)
    points = np.stack([axis.ravel() for axis in np.meshgrid(*grids, indexing="ij")], axis=1).astype(rows.dtype)
    n_rows, n_points = len(rows), len(points)
    output_name = model.output_spec(output).name
    resolved = []

    def make_rows(start, stop):
        index = np.arange(start, stop)
        built = rows[index % n_rows].copy()
        built[:, list(columns)] = points[index // n_rows]
        return built

    def reduce(outputs, owners):
        outputs = transform(outputs, output_transform)
        if not resolved:  # one target for every row: resolve it against the first output row
            resolved.append(resolve(target, outputs[:1], output_name=output_name))
        return resolved[0].select(outputs, np.zeros(len(owners), dtype=np.int64))

    n = n_rows * n_points
    values = evaluate(
        model, feeds, n=n, make_rows=make_rows, owners=np.arange(n) % n_rows, reduce=reduce,
        output=output_name, batch_size=batch_size, progress=progress, desc="partial dependence",
    )
    individual = values.reshape(n_points, n_rows).T.reshape((n_rows, *grid_shape))
    names = model.feature_names
    return PartialDependence(
        grid_values=grids,
        average=individual.mean(axis=0) if kind != "individual" else None,
        individual=individual if kind != "average" else None,
        features=columns,
        feature_names=tuple(names[c] if names and c < len(names) else f"feature {c}" for c in columns),
        deciles=tuple(np.percentile(rows[:, c].astype(np.float64), np.arange(10, 100, 10)) for c in columns),
        target=None if target is None else int(target),
        output=output_name,
        n_evals=n,
        seconds=time.perf_counter() - started,
    )


def grid_from_column(column: np.ndarray, grid_resolution: int, percentiles, index: int = 0) -> np.ndarray:
    """One feature's grid, as scikit-learn's ``_grid_from_X``: shape (n_grid,), float64.

    The unique values when there are fewer than ``grid_resolution``, otherwise
    ``grid_resolution`` equally spaced values between the ``percentiles`` of the column.
    """
    uniques = np.unique(column)
    if len(uniques) < grid_resolution:
        return uniques.astype(np.float64)
    low, high = _mquantiles(column, percentiles)
    if np.allclose(low, high):
        raise ParameterError(
            f"percentiles={tuple(percentiles)}: feature {index} has the same value {low:.6g} at both "
            "percentiles; choose percentiles further apart"
        )
    return np.linspace(low, high, num=grid_resolution, endpoint=True)


def _mquantiles(column: np.ndarray, probabilities, alphap=0.4, betap=0.4) -> np.ndarray:
    # scipy.stats.mstats.mquantiles' default plotting positions, which scikit-learn uses;
    # written out so that scipy is not needed at run time.
    data = np.sort(np.asarray(column))
    n = len(data)
    p = np.asarray(probabilities, dtype=np.float64)
    aleph = n * p + (alphap + p * (1.0 - alphap - betap))
    k = np.floor(np.clip(aleph, 1, n - 1)).astype(int)
    gamma = np.clip(aleph - k, 0.0, 1.0)
    return (1.0 - gamma) * data[k - 1] + gamma * data[k]


def _check_percentiles(percentiles) -> None:
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError):
        raise ParameterError(f"percentiles must be two numbers in [0, 1], got {percentiles!r}") from None
    if not (0 <= low < high <= 1):
        raise ParameterError(f"percentiles must satisfy 0 <= low < high <= 1, got {percentiles!r}")


def _feature_indices(features, n_features: int, names) -> tuple:
    given = list(features) if isinstance(features, (tuple, list)) else [features]
    if not 1 <= len(given) <= 2:
        raise ParameterError(f"features must be one feature or a pair, got {features!r}")
    columns = []
    for feature in given:
        if isinstance(feature, str):
            if not names or feature not in names:
                raise ParameterError(f"features: no feature named {feature!r}; names are {list(names or [])}")
            feature = list(names).index(feature)
        elif isinstance(feature, bool) or not isinstance(feature, Integral):
            raise ParameterError(f"features must be ints or names, got {feature!r}")
        if not -n_features <= feature < n_features:
            raise ParameterError(f"features: index {feature} is out of range for X with {n_features} features")
        columns.append(int(feature) % n_features)
    if len(columns) == 2 and columns[0] == columns[1]:
        raise ParameterError(f"features: a pair needs two different features, got {features!r}")
    return tuple(columns)

