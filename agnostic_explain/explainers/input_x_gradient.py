"""Input x Gradient (Shrikumar et al., 2016): the gradient of the target times the input."""

from __future__ import annotations

import numpy as np

from .base import Problem
from .gradients import GradientExplainer


class InputXGradient(GradientExplainer):
    """``x * d target / d x`` per row, as Captum's ``InputXGradient``.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> ae.InputXGradient(DEFAULT_MODEL_PATH).explain(images[:1], target=3).values.shape
    (1, 1, 8, 8)
    """

    method = "input_x_gradient"

    def _attribute(self, problem: Problem) -> np.ndarray:
        return self._gradients_at_rows(problem) * problem.rows
