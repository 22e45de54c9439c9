"""Saliency (Simonyan et al., 2014): the gradient of the target with respect to the input."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .base import Problem
from .gradients import GradientExplainer


class Saliency(GradientExplainer):
    """The gradient of the target at each row, by default its absolute value (as Captum's ``Saliency``).

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    absolute : bool, default True
        Return ``|gradient|`` (Captum's ``abs=True``) rather than the signed gradient.

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows. One gradient row per explained row.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Saliency(DEFAULT_MODEL_PATH).explain(images[:2], target=3)
    >>> explanation.values.shape, bool((explanation.values >= 0).all()), explanation.n_evals
    ((2, 1, 8, 8), True, 4)
    """

    method = "saliency"

    def __init__(self, model, absolute=True):
        super().__init__(model)
        self.absolute = absolute

    def _params(self) -> dict:
        return {"absolute": self.absolute}

    def _check(self, rows):
        if not isinstance(self.absolute, (bool, np.bool_)):
            raise ParameterError(f"absolute must be True or False, got {self.absolute!r}")
        return super()._check(rows)

    def _attribute(self, problem: Problem) -> np.ndarray:
        grads = self._gradients_at_rows(problem)
        return np.abs(grads) if self.absolute else grads
