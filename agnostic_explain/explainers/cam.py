"""Gradient-free class activation maps: Ablation-CAM and Score-CAM, running only the tail.

Both weight the channels ``A_k`` of a convolutional layer and map ``ReLU(sum_k w_k A_k)``,
upsampled bilinearly to the input's height and width (half-pixel centres, as
``torch.nn.functional.interpolate(mode="bilinear")`` and OpenCV's ``resize``).
"""

from __future__ import annotations

import numpy as np

from ..layout import channel_axis
from .base import Problem
from .layer import LayerExplainer, require_spatial
from .unit_ablation import UnitAblation


class AblationCam(UnitAblation):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020), with channels ablated in the split graph.

    Channel ``k``'s weight is ``(y - y_k) / y``: the target's relative drop when the channel
    is set to zero. Per image this costs one row of the model with the layer exposed and one
    tail row per channel, never the full model per channel.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        A 4-D (batch, channels, height, width) activation. By default the last one with
        spatial extent before global pooling, reported in ``Explanation.params["layer"]``.

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are the maps, shape (n_rows, 1, H, W) for channels-first
    inputs or (n_rows, H, W, 1) for channels-last ones, broadcastable to the input. ``extras``
    hold ``layer_map`` (n_rows, h, w), ``channel_weights`` (n_rows, C), ``n_evals_head`` and
    ``n_evals_tail``.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.AblationCam(DEFAULT_MODEL_PATH).explain(images[:1])
    >>> explanation.params["layer"], explanation.values.shape, explanation.n_evals
    ('/relu3/Relu_output_0', (1, 1, 8, 8), 33)
    """

    method = "ablation_cam"
    row_kinds = ("image",)
    needs_spatial = True

    def __init__(self, model, layer=None):
        super().__init__(model, layer)

    def _params(self) -> dict:
        return {"layer": self.layer}

    def _attribute(self, problem: Problem) -> np.ndarray:
        activations = self._layer_rows(problem)
        view = problem.context["parts"].view
        maps = view.maps(activations)
        require_spatial(maps, problem.params["layer"], type(self).__name__)
        zero = np.zeros((), activations.dtype)
        scores = self._unit_scores(problem, maps.shape[1], lambda rows, owners, units: view.ablate(rows, units, zero))
        base = problem.base_values[:, None].astype(np.float64)
        weights = (base - scores) / np.where(base == 0, 1e-7, base)
        return class_activation_map(problem, maps, weights)


class ScoreCam(LayerExplainer):
    """Score-CAM (Wang et al., CVPRW 2020), with the masks applied to the layer's activations.

    Each channel's activation map, scaled to [0, 1], masks the whole activation
    (``A * norm(A_k)``); the tail scores the masked activation, and the weights are the
    softmax of those scores over channels, as in pytorch-grad-cam. Masking at the layer
    rather than at the input is what lets only the tail run: one row of the model with the
    layer exposed, then one tail row per channel.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        As for :class:`AblationCam`.

    Returns (from ``explain``)
    --------------------------
    Explanation as for :class:`AblationCam`.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> ae.ScoreCam(DEFAULT_MODEL_PATH).explain(images[:1], output_transform="softmax").values.shape
    (1, 1, 8, 8)
    """

    method = "score_cam"
    row_kinds = ("image",)
    needs_spatial = True

    def _attribute(self, problem: Problem) -> np.ndarray:
        activations = self._layer_rows(problem)
        view = problem.context["parts"].view
        maps = view.maps(activations)
        require_spatial(maps, problem.params["layer"], type(self).__name__)
        low = maps.min(axis=(2, 3), keepdims=True)
        span = maps.max(axis=(2, 3), keepdims=True) - low
        masks = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0).astype(activations.dtype)

        def masked(rows, owners, units):
            return view.scale(rows, masks[owners, units])

        scores = self._unit_scores(problem, maps.shape[1], masked).astype(np.float64)
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        return class_activation_map(problem, maps, weights)


def class_activation_map(problem: Problem, activations: np.ndarray, weights: np.ndarray, *,
                         relu: bool = True) -> np.ndarray:
    """``ReLU(sum_k w_k A_k)`` per row, upsampled to the input; records the pieces in extras.

    ``relu=False`` keeps negative values (Captum's ``LayerGradCam`` default).
    """
    from scipy.ndimage import zoom

    weighted = np.einsum("nc,nchw->nhw", weights, activations.astype(np.float64))
    low = np.maximum(weighted, 0.0) if relu else weighted
    problem.extras["layer_map"] = low.astype(np.float32)
    problem.extras["channel_weights"] = weights.astype(np.float32)
    rows = problem.rows
    channel = channel_axis(rows.shape[1:], problem.model.layout)
    if rows.ndim == 4:
        height, width = rows.shape[1:3] if channel == 2 else rows.shape[2:]  # channels first unless last
    else:  # (n, H, W) rows
        height, width = rows.shape[-2:]
    factors = (1, height / low.shape[1], width / low.shape[2])
    full = zoom(low, factors, order=1, grid_mode=True, mode="nearest").astype(np.float32)
    if rows.ndim == 3:
        return full
    return full[..., None] if channel == 2 else full[:, None]
