"""Gradient x activation at a layer: ``A * d target / d A``, as Captum's ``LayerGradientXActivation``."""

from __future__ import annotations

import numpy as np

from .base import Problem
from .layer_gradients import LayerGradientExplainer


class LayerGradientXActivation(LayerGradientExplainer):
    """The layer's activation times the target's gradient there, shaped like the layer.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        A node output; by default the last activation where the graph can be cut (as
        :class:`UnitAblation` chooses), reported in ``Explanation.params["layer"]``.

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` have the layer's shape, (n_rows, *layer_shape).

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.LayerGradientXActivation(DEFAULT_MODEL_PATH, "/relu3/Relu_output_0").explain(images[:2])
    >>> explanation.values.shape
    (2, 32, 4, 4)
    """

    method = "layer_gradient_x_activation"
    row_kinds = ("image",)
    values_like_rows = False

    def _attribute(self, problem: Problem) -> np.ndarray:
        activations, grads = self._gradients_at_activations(problem)
        return (activations.astype(np.float64) * grads).astype(np.float32)
