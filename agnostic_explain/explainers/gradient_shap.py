"""GradientSHAP (expected gradients, Erion et al. 2021; Lundberg & Lee 2017) as Captum computes it."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..perturbation.background import validate_background
from .base import Problem
from .gradients import GradientExplainer


def gradient_shap_draws(rng: np.random.Generator, rows: np.ndarray, weights: np.ndarray, n_samples: int,
                        stdev: float):
    """``(noise, background_index, alpha)`` per explained row and sample, in this order from ``rng``.

    Shapes (n_rows, n_samples, *row_shape), (n_rows, n_samples) and (n_rows, n_samples).
    """
    n = len(rows)
    noise = rng.normal(0.0, stdev, size=(n, n_samples, *rows.shape[1:])).astype(rows.dtype)
    index = rng.choice(len(weights), size=(n, n_samples), p=weights)
    alpha = rng.uniform(0.0, 1.0, size=(n, n_samples)).astype(rows.dtype)
    return noise, index, alpha


def check_samples(n_samples, stdev) -> None:
    if not isinstance(n_samples, (int, np.integer)) or isinstance(n_samples, bool) or n_samples < 1:
        raise ParameterError(f"n_samples must be a positive int, got {n_samples!r}")
    if isinstance(stdev, bool) or not isinstance(stdev, (int, float, np.number)) or not stdev >= 0:
        raise ParameterError(f"stdev must be a number >= 0 (the noise's standard deviation), got {stdev!r}")


class GradientShap(GradientExplainer):
    """GradientSHAP: the mean of ``grad(b + a (x' - b)) * (x' - b)`` over samples.

    Each sample draws a background row ``b`` (by its weight), ``a`` uniform in [0, 1], and
    Gaussian noise of standard deviation ``stdev`` added to the row (``x' = x + noise``), as
    Captum's ``GradientShap`` does. The sum of the values approaches
    ``f(x) - E_b[f(b)]`` as samples grow (for ``stdev=0``).

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    background : array_like of shape (n_background, ...) or Background
        Reference rows shaped like the explained rows.
    n_samples : int, default 50
        Samples per explained row (Captum's default is 5).
    stdev : float, default 0.0

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows; ``n_samples`` gradient rows per
    explained row. The same ``random_state`` gives the same values.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explainer = ae.GradientShap(DEFAULT_MODEL_PATH, background=images[2:8], n_samples=8)
    >>> explainer.explain(images[:2], target=3, random_state=0).values.shape
    (2, 1, 8, 8)
    """

    method = "gradient_shap"
    data_params = ("background",)

    def __init__(self, model, background, n_samples=50, stdev=0.0):
        super().__init__(model)
        self.background = background
        self.n_samples = n_samples
        self.stdev = stdev

    def _params(self) -> dict:
        return {"n_samples": self.n_samples, "stdev": float(self.stdev),
                "n_background": len(np.asarray(getattr(self.background, "rows", self.background)))}

    def _check(self, rows):
        super()._check(rows)
        check_samples(self.n_samples, self.stdev)
        return validate_background(self.background, rows)

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows, background = problem.rows, problem.checked
        n, samples = len(rows), self.n_samples
        noise, index, alpha = gradient_shap_draws(problem.rng, rows, background.weights, samples, self.stdev)
        noisy = (rows[:, None] + noise).reshape(n * samples, *rows.shape[1:])
        start = background.rows[index.reshape(-1)]
        difference = noisy - start
        scale = alpha.reshape((n * samples,) + (1,) * (rows.ndim - 1))

        def make_rows(first: int, stop: int) -> np.ndarray:
            return start[first:stop] + scale[first:stop] * difference[first:stop]

        grads = self._input_gradients(problem, n * samples, make_rows, np.repeat(np.arange(n), samples),
                                      desc=self.method)
        products = (grads.astype(np.float64) * difference).reshape(n, samples, *rows.shape[1:])
        return products.mean(axis=1).astype(rows.dtype)
