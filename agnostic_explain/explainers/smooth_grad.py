"""SmoothGrad (Smilkov et al., 2017), its square and VarGrad: a noise tunnel around a gradient explainer."""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ParameterError
from ..runtime.batching import Feeds
from .base import Explainer, Problem
from .gradient_shap import check_samples
from .gradients import GradientExplainer
from .saliency import Saliency

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


class SmoothGrad(Explainer):
    """The wrapped gradient explainer at noisy copies of each row, reduced as Captum's ``NoiseTunnel``.

    Each explained row gets ``n_samples`` copies with Gaussian noise of standard deviation
    ``stdev`` (drawn as ``rng.normal(0, stdev, (n_rows, n_samples, *row_shape))``); the wrapped
    method explains them all in one batched run; ``kind`` reduces the attributions ``a_s``:
    ``"smoothgrad"`` their mean, ``"smoothgrad_sq"`` the mean of ``a_s**2``, ``"vargrad"``
    their variance.

    Parameters
    ----------
    explainer : gradient explainer or model
        A :class:`Saliency`, :class:`InputXGradient`, :class:`IntegratedGradients`,
        :class:`GuidedBackprop`... A model is wrapped in ``Saliency(model)`` (absolute gradients,
        Captum's ``NoiseTunnel(Saliency(model))``).
    n_samples : int, default 50
        Noisy copies per row (Captum's default is 5).
    stdev : float, default 1.0
        The noise's standard deviation in input units (Captum's default).
    kind : {"smoothgrad", "smoothgrad_sq", "vargrad"}

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> smooth = ae.SmoothGrad(ae.Saliency(DEFAULT_MODEL_PATH), n_samples=10, stdev=0.1)
    >>> smooth.explain(images[:2], target=3, random_state=0).values.shape
    (2, 1, 8, 8)
    """

    method = "smooth_grad"
    needs_graph = True

    def __init__(self, explainer, n_samples=50, stdev=1.0, kind="smoothgrad"):
        inner = explainer if isinstance(explainer, Explainer) else Saliency(explainer)
        super().__init__(inner.model)
        self.explainer = inner
        self.n_samples = n_samples
        self.stdev = stdev
        self.kind = kind

    def _params(self) -> dict:
        return {"explainer": self.explainer.method, **self.explainer._params(), "n_samples": self.n_samples,
                "stdev": float(self.stdev), "kind": self.kind}

    def _loaded(self):
        model = super()._loaded()
        self.explainer.model = model  # the wrapped method runs on the same loaded model and its caches
        return model

    def _check(self, rows):
        if not isinstance(self.explainer, GradientExplainer):
            raise ParameterError(
                f"explainer: SmoothGrad wraps a gradient explainer (Saliency, InputXGradient, IntegratedGradients...), "
                f"got {type(self.explainer).__name__}"
            )
        check_samples(self.n_samples, self.stdev)
        if self.kind not in KINDS:
            raise ParameterError(f"kind must be one of {KINDS}, got {self.kind!r}")
        return self.explainer._check(rows)

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows, samples = problem.rows, self.n_samples
        n = len(rows)
        noise = problem.rng.normal(0.0, self.stdev, size=(n, samples, *rows.shape[1:])).astype(rows.dtype)
        owners = np.repeat(np.arange(n), samples)
        noisy = (rows[:, None] + noise).reshape(n * samples, *rows.shape[1:])
        inner = noisy_problem(problem, noisy, owners)
        inner.checked = self.explainer._check(noisy)
        values = self.explainer._attribute(inner).astype(np.float64).reshape(n, samples, *rows.shape[1:])
        problem.n_evals += inner.n_evals
        problem.params.update(inner.params)
        if self.kind == "smoothgrad":
            reduced = values.mean(axis=1)
        elif self.kind == "smoothgrad_sq":
            reduced = (values ** 2).mean(axis=1)
        else:
            reduced = (values ** 2).mean(axis=1) - values.mean(axis=1) ** 2
        return reduced.astype(rows.dtype)


def noisy_problem(problem: Problem, rows: np.ndarray, owners: np.ndarray) -> Problem:
    """A problem over ``rows`` whose row ``i`` stands for explained row ``owners[i]``: its target
    and fixed inputs follow it. Its ``base_values`` are NaN (the noisy rows were not run)."""
    feeds = problem.feeds
    fixed = {name: (value[owners] if spec.batch_axis is not None and value.shape[0] > 1 else value, spec)
             for name, (value, spec) in feeds.fixed.items()}
    indices = problem.target.indices[owners] if problem.target.indices is not None else None
    return dataclasses.replace(
        problem, feeds=Feeds(feeds.name, feeds.spec, rows, fixed), target=dataclasses.replace(problem.target, indices=indices),
        base_values=np.full(len(rows), np.nan), n_evals=0, extras={}, params={}, checked=None,
    )
