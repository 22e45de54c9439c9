"""LIME for tabular rows: lime's ``LimeTabularExplainer``, vectorised over all explained rows."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ParameterError
from ..runtime.cores import worker_count
from ..perturbation.surrogates import FEATURE_SELECTIONS, fit_local, lime_kernel
from .base import Explainer, Problem
from .budget import check_budget

DISCRETIZERS = {"quartile": (25, 50, 75), "decile": tuple(range(10, 100, 10))}


class LimeTabular(Explainer):
    """Local surrogate explanations of tabular rows (Ribeiro et al. 2016), with lime's defaults.

    Each explained row gets ``num_samples`` samples drawn from the training distribution:

    - with ``discretize_continuous=True`` (lime's default), every continuous feature is cut
      into quartile (or decile) bins of the training data; a sample draws a bin per feature
      with the training frequencies, and a value inside it from a normal truncated to the
      bin (the bin's mean and standard deviation). The surrogate sees a binary
      representation: 1 where the sample falls in the explained row's bin;
    - with ``discretize_continuous=False``, continuous features are drawn from
      ``N(mean, std)`` of the training data (around the row when ``sample_around_instance``)
      and the surrogate sees them standardised.

    Categorical features (``categorical_features``) draw training values with their
    frequencies and appear as 1 where the value equals the row's. Samples are weighted by
    ``sqrt(exp(-d**2 / kernel_width**2))`` with ``d`` the euclidean distance to the row in the
    surrogate's representation, and a weighted ridge (``alpha=1``) is fitted per row, all rows
    at once. ``values`` hold the surrogate's coefficients (0 for features not selected).

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
    training_data : array_like of shape (n_train, n_features)
    categorical_features : sequence of int, optional
        Columns holding category codes.
    discretize_continuous : bool, default True
    discretizer : {"quartile", "decile"}, default "quartile"
    kernel_width : float, optional
        Default ``sqrt(n_features) * 0.75``.
    feature_selection : {"auto", "none", "forward_selection", "highest_weights", "lasso_path"}
        As lime; "auto" is forward selection for ``num_features <= 6``, else highest weights.
    num_features : int or None, default 10
        Features per surrogate; None keeps all.
    num_samples : int, default 5000
    sample_around_instance : bool, default False
    regressor : scikit-learn regressor, optional
        Replaces the ridge surrogate (then fitted per row, more slowly).
    alpha : float, default 1.0
        Penalty of the ridge surrogate.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> weights = np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)
    >>> model = ae.CallableModel(lambda rows: rows @ weights)
    >>> train = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    >>> explanation = LimeTabular(model, train, num_samples=500).explain(train[:2], target=0, random_state=0)
    >>> explanation.values.shape, explanation.extras["score"].shape
    ((2, 3), (2,))
    """

    method = "lime_tabular"
    data_params = ("training_data",)
    row_kinds = ("tabular",)

    def __init__(
        self,
        model,
        training_data,
        *,
        categorical_features=None,
        discretize_continuous=True,
        discretizer="quartile",
        kernel_width=None,
        feature_selection="auto",
        num_features=10,
        num_samples=5000,
        sample_around_instance=False,
        regressor=None,
        alpha=1.0,
    ):
        super().__init__(model)
        self.training_data = training_data
        self.categorical_features = categorical_features
        self.discretize_continuous = discretize_continuous
        self.discretizer = discretizer
        self.kernel_width = kernel_width
        self.feature_selection = feature_selection
        self.num_features = num_features
        self.num_samples = num_samples
        self.sample_around_instance = sample_around_instance
        self.regressor = regressor
        self.alpha = alpha

    def _params(self) -> dict:
        return {
            "categorical_features": None if self.categorical_features is None else [int(c) for c in self.categorical_features],
            "discretize_continuous": bool(self.discretize_continuous),
            "discretizer": self.discretizer,
            "kernel_width": self.kernel_width,
            "feature_selection": self.feature_selection,
            "num_features": self.num_features,
            "num_samples": self.num_samples,
            "sample_around_instance": bool(self.sample_around_instance),
            "regressor": None if self.regressor is None else type(self.regressor).__name__,
            "alpha": self.alpha,
        }

    def _check(self, rows: np.ndarray) -> tuple:
        """The training data and the categorical columns."""
        training = self._training(rows)
        check_lime_params(self.num_samples, self.feature_selection, self.num_features, self.kernel_width, self.alpha,
                          n_rows=len(rows))
        if self.discretize_continuous and self.discretizer not in DISCRETIZERS:
            raise ParameterError(f"discretizer must be one of {sorted(DISCRETIZERS)}, got {self.discretizer!r}")
        return training

    def _training(self, rows: np.ndarray) -> tuple[np.ndarray, list[int]]:
        if rows.ndim != 2:
            raise ParameterError(f"LimeTabular explains rows of shape (n_rows, n_features); got rows of shape {rows.shape}")
        train = np.asarray(self.training_data, dtype=np.float64)
        if train.ndim != 2 or train.shape[1] != rows.shape[1] or len(train) == 0:
            raise ParameterError(
                f"training_data must have shape (n_train, {rows.shape[1]}) like the explained rows, got {train.shape}"
            )
        if not np.all(np.isfinite(train)):
            raise ParameterError("training_data holds NaN or infinite values")
        categorical = sorted({int(c) for c in (self.categorical_features or ())})
        if categorical and not (0 <= categorical[0] and categorical[-1] < rows.shape[1]):
            raise ParameterError(f"categorical_features {categorical} must be columns 0 .. {rows.shape[1] - 1}")
        return train, categorical

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        train, categorical = problem.checked
        n_rows, n_features = rows.shape
        n_samples = int(self.num_samples)
        rng = problem.rng
        x = rows.astype(np.float64)
        # (row, sample, feature) layout: the batches are contiguous slices of `inverse` and the
        # fits read `binary` in place; binary stays bool until the fits cast small chunks
        interpretable_only = self.discretize_continuous
        binary = np.empty((n_rows, n_samples, n_features), dtype=bool if interpretable_only else np.float64)
        inverse = np.empty((n_rows, n_samples, n_features), dtype=rows.dtype)
        continuous = [f for f in range(n_features) if f not in categorical]
        if not self.discretize_continuous and continuous:
            train_mean, std = train.mean(axis=0), train.std(axis=0)
            scale = np.where(std > 0, std, 1.0)  # StandardScaler's rule for constant columns
            for f in continuous:
                drawn = rng.standard_normal((n_rows, n_samples)) * scale[f]
                drawn += x[:, f, None] if self.sample_around_instance else train_mean[f]
                drawn[:, 0] = x[:, f]
                inverse[:, :, f], binary[:, :, f] = drawn, (drawn - train_mean[f]) / scale[f]
        for f in categorical:
            values, counts = np.unique(train[:, f], return_counts=True)
            pick = np.searchsorted(np.cumsum(counts) / counts.sum(), rng.random((n_rows, n_samples)), side="right")
            drawn = values[np.minimum(pick, len(values) - 1)]
            binary[:, :, f], inverse[:, :, f] = drawn == x[:, f, None], drawn
        if self.discretize_continuous and continuous:
            columns = slice(None) if len(continuous) == n_features else continuous  # a slice writes faster
            _sample_binned(train[:, continuous], x[:, continuous], DISCRETIZERS[self.discretizer], rng, binary, inverse, columns)
        interpretable = [f for f in range(n_features) if f in categorical or self.discretize_continuous]
        binary[:, 0, interpretable] = 1
        inverse[:, 0, :] = rows
        flat = inverse.reshape(n_rows * n_samples, n_features)

        owners = np.repeat(np.arange(n_rows), n_samples)
        y = problem.evaluate(n_rows * n_samples, lambda a, b: flat[a:b], owners, desc="lime").reshape(n_rows, n_samples)
        if interpretable_only:
            # every feature is binary and sample 0 is all ones: d**2 counts the features that differ
            distances = np.sqrt(n_features - np.count_nonzero(binary, axis=2).astype(np.float64))
        else:
            offsets = binary - binary[:, :1]
            distances = np.sqrt(np.einsum("rsf,rsf->rs", offsets, offsets))
        width = np.sqrt(n_features) * 0.75 if self.kernel_width is None else float(self.kernel_width)
        fit = fit_local(
            binary, y, lime_kernel(distances, width), num_features=self.num_features,
            feature_selection=self.feature_selection, regressor=self.regressor, alpha=float(self.alpha),
        )
        problem.extras.update(
            intercept=fit["intercept"], score=fit["score"], local_prediction=fit["local_prediction"],
            group_values=fit["coef"].astype(np.float32),
        )
        return fit["coef"].astype(np.float32)


#: samples x features drawn per chunk by :func:`_sample_binned` (2 MiB of float64): the
#: temporaries stay in cache instead of costing page faults as 15M-element arrays would
_SAMPLE_CHUNK = 256 << 10


def _sample_binned(columns, row_values, percentiles, rng, binary, inverse, features) -> None:
    """lime's discretizer for the continuous features, written into ``binary`` and ``inverse``.

    Bins are cut at the training percentiles; a sample draws a bin per feature with its training
    frequency and a value from the bin's normal (training mean and std in the bin) truncated to
    the bin. ``columns`` is (n_train, k), ``row_values`` (n_rows, k); ``binary`` and ``inverse``
    are (n_rows, n_samples, n_features), written at ``features`` (k of them).
    """
    from scipy.special import ndtr

    n_rows, n_samples, _ = inverse.shape
    k = columns.shape[1]
    n_bins = len(percentiles) + 1
    # per-(feature, present bin) tables, flattened as feature * n_bins + pick; a pick indexes
    # the bins seen in training (lime draws only those), thresholds padded with 2 (never hit)
    thresholds = np.full((n_bins - 1, k), 2.0)
    tables = np.zeros((4, k, n_bins))  # mean, std, low, high
    row_pick = np.full((n_rows, k), n_bins, dtype=np.int64)  # n_bins: the row's bin was unseen
    for j in range(k):
        column = columns[:, j]
        edges = np.unique(np.percentile(column, percentiles))
        train_bins = np.searchsorted(edges, column)
        m = len(edges) + 1
        counts = np.bincount(train_bins, minlength=m).astype(np.float64)
        sums = np.bincount(train_bins, weights=column, minlength=m)
        means = np.divide(sums, counts, out=np.zeros(m), where=counts > 0)
        squares = np.bincount(train_bins, weights=(column - means[train_bins]) ** 2, minlength=m)
        stds = np.sqrt(np.divide(squares, counts, out=np.zeros(m), where=counts > 0)) + 1e-11  # lime's epsilon
        lows = np.concatenate([[column.min()], edges])
        highs = np.concatenate([edges, [column.max()]])
        present = np.flatnonzero(counts)
        cumulative = np.cumsum(counts[present]) / counts.sum()
        thresholds[: len(present) - 1, j] = cumulative[:-1]  # the last is 1: no threshold
        position = np.full(m, n_bins)
        position[present] = np.arange(len(present))
        row_pick[:, j] = position[np.searchsorted(edges, row_values[:, j])]
        for table, value in zip(tables, (means, stds, lows, highs)):
            table[j, : len(present)] = value[present]
    means, stds, lows, highs = tables.reshape(4, k * n_bins)
    offsets = np.arange(k) * n_bins
    thresholds = thresholds[: max(1, int(np.sum(thresholds < 2.0, axis=0).max(initial=0)))]

    step = max(1, _SAMPLE_CHUNK // (n_samples * k))
    parts = [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]
    # One child generator per chunk, seeded from `rng`: the draws do not depend on which
    # thread runs a chunk, so a seed gives the same samples on any machine. numpy's fills and
    # large ufuncs release the GIL, so two threads sample about twice as fast.
    seeds = rng.integers(2**63, size=len(parts))

    def fill(part, seed):
        child = np.random.default_rng(seed)
        shape = (part.stop - part.start, n_samples, k)
        u = child.random(shape)
        pick = np.zeros(shape, dtype=np.intp)
        for threshold in thresholds:
            pick += u >= threshold
        binary[part, :, features] = pick == row_pick[part, None, :]
        index = pick
        index += offsets
        # Truncated normal by rejection: a bin holds at least ~47% of its own normal (its
        # width is >= 2 std around its mean), so few draws are redrawn; testing the value
        # itself keeps every accepted sample inside its bin exactly (no clip)
        value = stds.take(index)
        value *= child.standard_normal(shape, dtype=np.float32)  # float32 draws are faster; values stay float64
        value += means.take(index)
        low, high = lows.take(index), highs.take(index)
        outside = np.flatnonzero((value < low) | (value > high))
        flat, low, high, index = value.reshape(-1), low.reshape(-1), high.reshape(-1), index.reshape(-1)
        for _ in range(_REDRAWS):
            if not len(outside):
                break
            where = index[outside]
            redrawn = child.standard_normal(len(outside)) * stds[where] + means[where]
            inside = (redrawn >= low[outside]) & (redrawn <= high[outside])
            flat[outside[inside]] = redrawn[inside]
            outside = outside[~inside]
        if len(outside):  # bins of (almost) no width: the inverse CDF, exact but slower
            where = index[outside]
            flat[outside] = _truncated_normal(means[where], stds[where], lows[where], highs[where], child, ndtr)
        inverse[part, :, features] = value

    workers = worker_count(len(parts))
    if workers < 2:
        for part, seed in zip(parts, seeds):
            fill(part, seed)
        return
    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(fill, part, seed) for part, seed in zip(parts, seeds)]:
            done.result()




#: rejection rounds before the remaining samples use the inverse CDF
_REDRAWS = 8


def _truncated_normal(mean, std, low, high, rng, ndtr):
    """N(mean, std) truncated to [low, high] by inverse CDF, on the lower tail for accuracy
    (a draw above the mean is taken mirrored)."""
    from scipy.special import ndtri

    a, b = (low - mean) / std, (high - mean) / std
    sign = np.where(a > 0, -1.0, 1.0)
    a, b = np.where(sign < 0, -b, a), np.where(sign < 0, -a, b)
    cdf_a = ndtr(a)
    z = ndtri(cdf_a + rng.random(len(mean)) * (ndtr(b) - cdf_a))
    return np.clip(mean + std * sign * z, low, high)


def check_lime_params(num_samples, feature_selection, num_features, kernel_width, alpha, n_rows=1) -> None:
    """Validation shared by the LIME explainers; ``n_rows`` explained rows share the sample budget."""
    if not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples < 2:
        raise ParameterError(f"num_samples must be an int >= 2, got {num_samples!r}")
    # at least a sample's indicator (float64), its score, distance and weight: refused before drawing any
    check_budget(int(n_rows) * int(num_samples) * 40, f"num_samples={num_samples} for {n_rows} row(s)",
                 "draw fewer samples, or explain fewer rows per call")
    if feature_selection not in FEATURE_SELECTIONS:
        raise ParameterError(f"feature_selection must be one of {FEATURE_SELECTIONS}, got {feature_selection!r}")
    if num_features is not None and (
        not isinstance(num_features, (int, np.integer)) or isinstance(num_features, bool) or num_features < 1
    ):
        raise ParameterError(f"num_features must be a positive int or None, got {num_features!r}")
    # the kernel divides by kernel_width ** 2: it must neither underflow to 0 nor overflow
    width_ok = kernel_width is None or (_real(kernel_width) and _SMALLEST_WIDTH <= float(kernel_width) <= _LARGEST_WIDTH)
    if not width_ok:
        raise ParameterError(
            f"kernel_width must be a positive number from {_SMALLEST_WIDTH:.3g} to {_LARGEST_WIDTH:.3g} (its square "
            f"must be a finite, normal float), got {kernel_width!r}"
        )
    if not (_real(alpha) and 0 <= float(alpha) < np.inf):
        raise ParameterError(f"alpha must be a finite number >= 0, got {alpha!r}")


_SMALLEST_WIDTH = float(np.sqrt(np.finfo(np.float64).tiny))
_LARGEST_WIDTH = float(np.sqrt(np.finfo(np.float64).max))


def _real(value) -> bool:
    """A real number: not a complex, a bool, a string or an array."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
