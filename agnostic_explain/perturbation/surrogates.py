"""Weighted linear surrogates, fitted for many explained rows at once.

LIME (and any method built on a local linear model) fits one small weighted least-squares
problem per explained row. :func:`weighted_ridge` solves all of them with stacked normal
equations in numpy, equal to scikit-learn's ``Ridge(alpha).fit(Z, y, sample_weight=w)``;
:func:`fit_local` adds lime's feature selection and a user regressor on top.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import ParameterError
from ..runtime.cores import worker_count

__all__ = ["FEATURE_SELECTIONS", "fit_local", "fit_surrogate", "lime_kernel", "select_features", "weighted_ridge"]

FEATURE_SELECTIONS = ("auto", "forward_selection", "highest_weights", "lasso_path", "none")

#: float64 elements one chunk of centred data may hold (2 MiB): small chunks stay in cache and
#: reuse freed memory; large fresh temporaries cost more in page faults than the arithmetic
_CHUNK_ELEMENTS = 256 << 10


def lime_kernel(distances: np.ndarray, width: float) -> np.ndarray:
    """lime's default kernel, ``sqrt(exp(-d**2 / width**2))``."""
    return np.sqrt(np.exp(-(np.asarray(distances, dtype=np.float64) ** 2) / float(width) ** 2))


def weighted_ridge(Z, y, weights, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted ridge regressions with an intercept, one per row, solved together.

    Each row's problem is ``min_b sum_s w_s (y_s - c - Z_s b)**2 + alpha * |b|**2``, solved
    as scikit-learn does: centre ``Z`` and ``y`` by their weighted means, solve the normal
    equations, recover the intercept. ``alpha=0`` uses a pseudo-inverse (rank-deficient
    problems get the minimum-norm solution).

    Parameters
    ----------
    Z : array_like of shape (n_rows, n_samples, n_features) or (n_samples, n_features)
        The design matrices; a 2-D ``Z`` is shared by every row.
    y : array_like of shape (n_rows, n_samples) or (n_samples,)
    weights : array_like of shape (n_rows, n_samples) or (n_samples,)
    alpha : float, default 1.0

    Returns
    -------
    coef : ndarray of shape (n_rows, n_features)
    intercept : ndarray of shape (n_rows,)
    r2 : ndarray of shape (n_rows,)
        Weighted R² on the fitted data, as ``Ridge.score(Z, y, sample_weight=w)`` (1.0 when
        ``y`` is constant and fitted exactly, 0.0 when constant and not).

    Examples
    --------
    >>> Z = np.array([[0.0], [1.0], [2.0]])
    >>> coef, intercept, r2 = weighted_ridge(Z, np.array([[1.0, 3.0, 5.0]]), np.ones(3), alpha=0.0)
    >>> coef.round(6).tolist(), intercept.round(6).tolist(), r2.round(6).tolist()
    ([[2.0]], [1.0], [1.0])
    """
    Z = _design(Z)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    weights = np.asarray(weights, dtype=np.float64)
    if Z.ndim == 2:
        Z = Z[None]
    if Z.ndim != 3:
        raise ParameterError(f"Z must have shape (n_rows, n_samples, n_features) or (n_samples, n_features), got {Z.shape}")
    n_rows = max(len(Z), len(y), 1 if weights.ndim == 1 else len(weights))
    n_samples, n_features = Z.shape[1:]
    y = np.broadcast_to(y, (n_rows, n_samples))
    weights = np.broadcast_to(weights, (n_rows, n_samples))
    if len(Z) not in (1, n_rows):
        raise ParameterError(f"Z has {len(Z)} rows but y and weights have {n_rows}")
    if alpha < 0:
        raise ParameterError(f"alpha must be >= 0, got {alpha}")
    coef = np.empty((n_rows, n_features))
    intercept = np.empty(n_rows)
    r2 = np.empty(n_rows)

    step = max(1, _CHUNK_ELEMENTS // max(1, n_samples * n_features))
    # One BLAS thread: these products are small, and threaded BLAS on a busy machine spends
    # more time waiting for its threads than computing (measured 2-20x slower on 2 cores).
    parts = [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]
    workers = worker_count(len(parts))
    with threadpool_limits(1, user_api="blas"):
        if workers < 2:
            for part in parts:
                _solve_chunk(Z, y, weights, alpha, part, coef, intercept, r2)
        else:
            # chunks write disjoint rows, and einsum, BLAS and LAPACK release the GIL: two
            # single-threaded workers use both cores without BLAS's thread synchronisation
            with ThreadPoolExecutor(workers) as pool:
                for done in [pool.submit(_solve_chunk, Z, y, weights, alpha, part, coef, intercept, r2) for part in parts]:
                    done.result()
    return coef, intercept, r2




def _solve_chunk(Z, y, weights, alpha, part, coef, intercept, r2) -> None:
    """Solve rows ``part`` of :func:`weighted_ridge` into the output arrays."""
    n_samples, n_features = Z.shape[1:]
    z = (Z[part] if len(Z) > 1 else Z).astype(np.float64, copy=False)
    w, target = weights[part], y[part]
    total = w.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    z_mean = np.einsum("rs,rsf->rf", w, np.broadcast_to(z, (len(w), n_samples, n_features))) / safe[:, None]
    y_mean = np.einsum("rs,rs->r", w, target) / safe
    root = np.sqrt(w)
    zs = (z - z_mean[:, None, :]) * root[:, :, None]
    ys = (target - y_mean[:, None]) * root
    gram = _gram(zs)
    moment = np.einsum("rsf,rs->rf", zs, ys)[:, :, None]
    if alpha > 0:
        gram[:, np.arange(n_features), np.arange(n_features)] += alpha
        try:
            solution = np.linalg.solve(gram, moment)[..., 0]
        except np.linalg.LinAlgError:  # alpha vanishes next to the Gram matrix of a rank-deficient design
            solution = np.matmul(np.linalg.pinv(gram, hermitian=True), moment)[..., 0]
    else:
        solution = np.matmul(np.linalg.pinv(gram, hermitian=True), moment)[..., 0]
    coef[part] = solution
    intercept[part] = y_mean - np.einsum("rf,rf->r", z_mean, solution)
    residual = np.sum((ys - np.einsum("rsf,rf->rs", zs, solution)) ** 2, axis=1)
    spread = np.einsum("rs,rs->r", w, (target - y_mean[:, None]) ** 2)
    r2[part] = _r2(residual, spread)


def _design(Z) -> np.ndarray:
    """``Z`` as float64, or as bool when it is: binary designs are cast chunk by chunk (8x less memory)."""
    Z = np.asarray(Z)
    return Z if Z.dtype == bool else Z.astype(np.float64, copy=False)


def _gram(zs: np.ndarray) -> np.ndarray:
    """``zs[r].T @ zs[r]`` for every r."""
    if zs.shape[1] * zs.shape[2] < 4096:
        return np.einsum("rsf,rsg->rfg", zs, zs)
    # numpy's stacked matmul does not reach BLAS here; one syrk per row is several times faster
    gram = np.empty((len(zs), zs.shape[2], zs.shape[2]))
    for row, z in enumerate(zs):
        gram[row] = z.T @ z
    return gram


def _r2(residual: np.ndarray, spread: np.ndarray) -> np.ndarray:
    # scikit-learn's force_finite convention for a constant target
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - residual / spread
    constant = spread <= 0
    return np.where(constant, np.where(residual <= 0, 1.0, 0.0), score)


def fit_surrogate(regressor, Z, y, weights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a clone of a scikit-learn regressor per row (a loop: for regressors other than ridge).

    Parameters
    ----------
    regressor : scikit-learn regressor
        Needs ``fit(X, y, sample_weight=...)``, ``coef_`` and ``intercept_``.
    Z, y, weights
        As in :func:`weighted_ridge`.

    Returns
    -------
    coef, intercept, r2
        As in :func:`weighted_ridge`; r2 from ``regressor.score(Z, y, sample_weight=w)``.
    """
    from sklearn.base import clone

    Z = np.asarray(Z, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    Z = np.broadcast_to(Z if Z.ndim == 3 else Z[None], (len(y),) + Z.shape[-2:])
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), y.shape)
    coef = np.empty((len(y), Z.shape[2]))
    intercept, r2 = np.empty(len(y)), np.empty(len(y))
    for row in range(len(y)):
        model = clone(regressor)
        try:
            model.fit(Z[row], y[row], sample_weight=weights[row])
        except TypeError as error:
            raise ParameterError(
                f"regressor {regressor!r} must accept fit(X, y, sample_weight=...): {error}"
            ) from error
        if not hasattr(model, "coef_"):
            raise ParameterError(f"regressor {regressor!r} has no coef_ after fit; pass a linear regressor")
        coef[row] = np.ravel(model.coef_)
        intercept[row] = float(np.ravel(getattr(model, "intercept_", 0.0))[0])
        r2[row] = model.score(Z[row], y[row], sample_weight=weights[row])
    return coef, intercept, r2


def select_features(Z, y, weights, num_features: int, method: str, *, n_columns=None) -> np.ndarray:
    """Columns each row's surrogate uses, chosen as lime's ``LimeBase.feature_selection``.

    Parameters
    ----------
    Z : ndarray of shape (n_rows, n_samples, n_features)
        Row ``r``'s first sample is the explained point (``highest_weights`` uses it).
    y, weights : ndarray of shape (n_rows, n_samples)
    num_features : int
    method : {"auto", "forward_selection", "highest_weights", "lasso_path", "none"}
    n_columns : ndarray of shape (n_rows,), optional
        Columns beyond ``n_columns[r]`` are padding and never chosen while real ones remain.

    Returns
    -------
    ndarray of shape (n_rows, k), int, or list of ndarray
        Column indices (``k = min(num_features, n_features)``); ``lasso_path`` returns one
        array per row, since it may choose a different number of columns for each.
    """
    n_rows, _, n_features = Z.shape
    k = min(int(num_features), n_features)
    if method == "auto":
        method = "forward_selection" if num_features <= 6 else "highest_weights"
    if method == "none" or k >= n_features:
        return np.broadcast_to(np.arange(n_features), (n_rows, n_features))
    real = np.arange(n_features)[None, :] < (n_features if n_columns is None else np.asarray(n_columns)[:, None])
    if method == "highest_weights":
        coef, _, _ = weighted_ridge(Z, y, weights, alpha=0.01)
        score = np.where(real, np.abs(coef * Z[:, 0, :].astype(np.float64)), -np.inf)
        return np.argsort(-score, axis=1, kind="stable")[:, :k]
    if method == "forward_selection":
        return _forward_selection(Z, y, weights, k, real)
    if method == "lasso_path":
        return _lasso_path(Z, y, weights, k)
    raise ParameterError(f"feature_selection must be one of {FEATURE_SELECTIONS}, got {method!r}")


def _forward_selection(Z, y, weights, k, real):
    # Batched over rows: each step tries every remaining column for all rows at once.
    n_rows, _, n_features = Z.shape
    chosen = np.zeros((n_rows, 0), dtype=np.int64)
    rows = np.arange(n_rows)
    for _ in range(k):
        best_score = np.full(n_rows, -np.inf)
        best = np.zeros(n_rows, dtype=np.int64)
        for column in range(n_features):
            candidates = np.concatenate([chosen, np.full((n_rows, 1), column)], axis=1)
            _, _, score = weighted_ridge(np.take_along_axis(Z, candidates[:, None, :], axis=2), y, weights, alpha=0.0)
            free = real[:, column] & ~(chosen == column).any(axis=1)
            better = free & (score > best_score)
            best_score[better], best[better] = score[better], column
        chosen = np.concatenate([chosen, best[rows, None]], axis=1)
    return chosen


def _lasso_path(Z, y, weights, k):
    from sklearn.linear_model import lars_path

    selected = []
    for z, target, w in zip(Z, y, weights):  # lars_path has no batched form
        z = z.astype(np.float64, copy=False)
        total = w.sum()
        zc = (z - w @ z / total) * np.sqrt(w)[:, None]
        yc = (target - w @ target / total) * np.sqrt(w)
        _, _, coefs = lars_path(zc, yc, method="lasso", verbose=False)
        nonzero = np.arange(z.shape[1])
        for i in range(coefs.shape[1] - 1, 0, -1):
            nonzero = coefs[:, i].nonzero()[0]
            if len(nonzero) <= k:
                break
        selected.append(nonzero)
    return selected


def fit_local(Z, y, weights, *, num_features=None, feature_selection="auto", regressor=None, alpha=1.0, n_columns=None) -> dict:
    """lime's ``explain_instance_with_data`` for many rows: select columns, fit, score.

    Parameters
    ----------
    Z : ndarray of shape (n_rows, n_samples, n_features)
        Interpretable samples; sample 0 is the explained point.
    y, weights : ndarray of shape (n_rows, n_samples)
    num_features : int or None
        Columns kept per row; None keeps all (no selection).
    feature_selection : str
        See :func:`select_features`.
    regressor : scikit-learn regressor, optional
        Replaces the batched ridge (fitted per row by :func:`fit_surrogate`).
    alpha : float
        Ridge penalty of the default surrogate (lime's is 1).
    n_columns : ndarray of shape (n_rows,), optional
        Real columns per row; the rest is padding (constant columns, coefficient 0).

    Returns
    -------
    dict with "coef" (n_rows, n_features; 0 for unselected columns), "intercept", "score"
    and "local_prediction" (n_rows,).
    """
    Z = _design(Z)
    n_rows, _, n_features = Z.shape
    columns = None
    if num_features is not None and feature_selection != "none" and num_features < n_features:
        columns = select_features(Z, y, weights, num_features, feature_selection, n_columns=n_columns)
    if isinstance(columns, list):  # ragged (lasso_path): one fit per row
        parts = [
            fit_local(Z[r : r + 1, :, c], y[r : r + 1], weights[r : r + 1], regressor=regressor, alpha=alpha)
            for r, c in enumerate(columns)
        ]
        coef = np.zeros((n_rows, n_features))
        for r, (c, part) in enumerate(zip(columns, parts)):
            coef[r, c] = part["coef"][0]
        result = {key: np.concatenate([part[key] for part in parts]) for key in ("intercept", "score", "local_prediction")}
        return {"coef": coef, **result}
    design = Z if columns is None else np.take_along_axis(Z, columns[:, None, :], axis=2)
    if regressor is None:
        coef, intercept, score = weighted_ridge(design, y, weights, alpha=alpha)
    elif n_columns is not None and columns is None:
        coef = np.zeros((n_rows, n_features))
        intercept, score = np.empty(n_rows), np.empty(n_rows)
        for row, width in enumerate(np.asarray(n_columns)):  # padding stays out of user regressors
            c, i, s = fit_surrogate(regressor, design[row : row + 1, :, :width], y[row : row + 1], weights[row : row + 1])
            coef[row, :width], intercept[row], score[row] = c[0], i[0], s[0]
    else:
        coef, intercept, score = fit_surrogate(regressor, design, y, weights)
    local = intercept + np.einsum("rf,rf->r", design[:, 0, :].astype(np.float64), coef)
    if columns is not None:
        full = np.zeros((n_rows, n_features))
        np.put_along_axis(full, columns, coef, axis=1)
        coef = full
    return {"coef": coef, "intercept": intercept, "score": score, "local_prediction": local}
