"""Integrated Gradients (Sundararajan et al., 2017): gradients along the straight path from a baseline."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..perturbation.baselines import baseline_rows
from .base import Problem, recorded
from .gradients import GradientExplainer, path_sum

#: the quadrature rules, as Captum names them
METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def path_points(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of a quadrature rule on [0, 1] with ``steps`` points, as Captum's
    ``approximation_parameters``: Gauss-Legendre nodes, or Riemann sums (left, right, middle,
    trapezoid)."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, steps), weights
    start, stop = {"riemann_left": (0, 1 - 1 / steps), "riemann_right": (1 / steps, 1),
                   "riemann_middle": (1 / (2 * steps), 1 - 1 / (2 * steps))}[method]
    return np.linspace(start, stop, steps), weights


def check_path(steps, method) -> None:
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}, got {method!r}")
    smallest = 1 if method == "gausslegendre" else 2
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < smallest:
        raise ParameterError(f"steps must be an int >= {smallest} for method {method!r}, got {steps!r}")


def path_rows(start: np.ndarray, end: np.ndarray, alphas: np.ndarray):
    """``make_rows`` for ``len(start) * len(alphas)`` rows: row ``k`` is point ``k % steps`` of
    the path of explained row ``k // steps``, ``start + alpha * (end - start)`` in the rows' dtype."""
    steps = len(alphas)
    alphas = alphas.astype(end.dtype)

    def make_rows(first: int, stop: int) -> np.ndarray:
        owners, step = np.divmod(np.arange(first, stop), steps)
        shape = (-1,) + (1,) * (end.ndim - 1)
        return start[owners] + alphas[step].reshape(shape) * (end[owners] - start[owners])

    return make_rows


class IntegratedGradients(GradientExplainer):
    """Integrated Gradients with Captum's defaults: a zero baseline, 50 Gauss-Legendre points.

    ``values = (x - baseline) * sum_k w_k grad(baseline + a_k (x - baseline))``. By completeness
    their sum is close to ``f(x) - f(baseline)``; the difference is ``extras["delta"]`` (Captum's
    convergence delta), one per row.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    baseline : float, array_like or "mean" / "blur", default 0.0
        One value, one row, or one row per explained row.
    steps : int, default 50
    method : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"}

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows; ``extras["delta"]`` of shape (n_rows,).
    It costs ``steps`` gradient rows and one baseline row per explained row.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.IntegratedGradients(DEFAULT_MODEL_PATH).explain(images[:2], target=3)
    >>> explanation.values.shape, explanation.extras["delta"].shape
    ((2, 1, 8, 8), (2,))
    """

    method = "integrated_gradients"

    def __init__(self, model, baseline=0.0, steps=50, method="gausslegendre"):
        super().__init__(model)
        self.baseline = baseline
        self.steps = steps
        self.integration = method

    def _params(self) -> dict:
        return {"baseline": recorded(self.baseline), "steps": self.steps, "integration": self.integration}

    def _check(self, rows):
        super()._check(rows)
        check_path(self.steps, self.integration)
        return np.ascontiguousarray(np.broadcast_to(baseline_rows(self.baseline, rows), rows.shape))

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows, baseline = problem.rows, problem.checked
        alphas, weights = path_points(self.integration, self.steps)
        n = len(rows)
        total, reduce = path_sum(weights, rows.shape[1:], n)
        self._input_gradients(problem, n * self.steps, path_rows(baseline, rows, alphas),
                              np.repeat(np.arange(n), self.steps), desc=self.method, reduce=reduce)
        values = (total * (rows.astype(np.float64) - baseline)).astype(rows.dtype)
        at_baseline = problem.evaluate(n, lambda start, stop: baseline[start:stop], np.arange(n),
                                       desc=f"{self.method} baseline")
        problem.extras["delta"] = completeness_delta(values, problem.base_values, at_baseline)
        return values


def completeness_delta(values: np.ndarray, at_rows: np.ndarray, at_baseline: np.ndarray) -> np.ndarray:
    """``sum(values) - (f(x) - f(baseline))`` per row, Captum's convergence delta."""
    sums = values.reshape(len(values), -1).astype(np.float64).sum(axis=1)
    return (sums - (np.asarray(at_rows, np.float64) - np.asarray(at_baseline, np.float64))).astype(np.float32)
