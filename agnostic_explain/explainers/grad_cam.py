"""Grad-CAM (Selvaraju et al., 2017) and Grad-CAM++ (Chattopadhyay et al., 2018).

Both weight the channels ``A_k`` of a layer by the target's gradient ``G_k`` there and map
``ReLU(sum_k w_k A_k)``, upsampled like the other CAMs (:func:`.cam.class_activation_map`).
The gradient comes from the tail's gradient graph at the activations: per image one row of
the model with the layer exposed and one row of the tail's gradient graph.
"""

from __future__ import annotations

import numpy as np

from .base import Problem
from .cam import class_activation_map
from .layer import require_spatial
from .layer_gradients import LayerGradientExplainer


class GradCam(LayerGradientExplainer):
    """Grad-CAM: channel weights are the spatial mean of the gradient, as Captum's ``LayerGradCam``.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        A spatial activation: (batch, channels, height, width), channels-last, or a ViT's token
        grid. By default the last one with spatial extent (as :class:`AblationCam` chooses).
    relu : bool, default True
        Clip the map at zero (the paper's and pytorch-grad-cam's map; Captum's
        ``relu_attributions`` defaults to False).

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are the maps upsampled to the input, shape (n_rows, 1, H, W)
    for channels-first inputs; ``extras`` hold ``layer_map`` (n_rows, h, w) and
    ``channel_weights`` (n_rows, C).

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.GradCam(DEFAULT_MODEL_PATH).explain(images[:2], target=3)
    >>> explanation.params["layer"], explanation.values.shape, explanation.extras["layer_map"].shape
    ('/relu3/Relu_output_0', (2, 1, 8, 8), (2, 4, 4))
    """

    method = "grad_cam"
    row_kinds = ("image",)
    needs_spatial = True

    def __init__(self, model, layer=None, relu=True):
        super().__init__(model, layer)
        self.relu = relu

    def _params(self) -> dict:
        return {"layer": self.layer, "relu": self.relu}

    def _maps(self, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
        """The layer's activations and gradients as (n, C, h, w) maps."""
        activations, grads = self._gradients_at_activations(problem)
        view = problem.context["parts"].view
        maps = view.maps(activations)
        require_spatial(maps, problem.params["layer"], type(self).__name__)
        return maps.astype(np.float64), view.maps(grads).astype(np.float64)

    def _attribute(self, problem: Problem) -> np.ndarray:
        maps, grads = self._maps(problem)
        return class_activation_map(problem, maps, grads.mean(axis=(2, 3)), relu=bool(self.relu))


class RectifiedGradCam(GradCam):
    """A Grad-CAM variant whose map always goes through the ReLU: it takes no ``relu`` parameter."""

    def __init__(self, model, layer=None):
        super().__init__(model, layer, relu=True)

    def _params(self) -> dict:
        return {"layer": self.layer}


class GradCamPlusPlus(RectifiedGradCam):
    """Grad-CAM++ with pytorch-grad-cam's closed form of the weights.

    ``alpha = G^2 / (2 G^2 + sum_ij(A) G^3)`` (0 where ``G = 0``) and
    ``w_k = sum_ij alpha * ReLU(G)``, from the raw target's first derivatives.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        As for :class:`GradCam`.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> ae.GradCamPlusPlus(DEFAULT_MODEL_PATH).explain(images[:1], target=3).values.shape
    (1, 1, 8, 8)
    """

    method = "grad_cam_plus_plus"

    def _attribute(self, problem: Problem) -> np.ndarray:
        maps, grads = self._maps(problem)
        squared = grads ** 2
        alpha = squared / (2 * squared + maps.sum(axis=(2, 3), keepdims=True) * squared * grads + 1e-6)
        alpha = np.where(grads != 0, alpha, 0)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=(2, 3))
        return class_activation_map(problem, maps, weights)
