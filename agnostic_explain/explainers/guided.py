"""Guided Backprop (Springenberg et al., 2015) and Guided Grad-CAM (Selvaraju et al., 2017).

Guided Backprop is the input gradient with ReLU's backward rule replaced
(:func:`agnostic_explain.graph.gradient.guided_relu`: a gradient passes only where both it and
the ReLU's input are positive), a per-call rule override of the gradient graph.
"""

from __future__ import annotations

import numpy as np

from ..graph.gradient import guided_relu
from ..layout import channel_axis
from .base import Problem
from .grad_cam import RectifiedGradCam
from .gradients import GradientExplainer, input_gradients, require_float_rows

#: the backward rules of Guided Backprop
GUIDED_RULES = {"Relu": guided_relu}


class GuidedBackprop(GradientExplainer):
    """The input gradient with Guided Backprop's ReLU rule, as Captum's ``GuidedBackprop``.

    Only ``Relu`` nodes get the guided rule (Captum: only ``nn.ReLU`` modules).

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> ae.GuidedBackprop(DEFAULT_MODEL_PATH).explain(images[:1], target=3).values.shape
    (1, 1, 8, 8)
    """

    method = "guided_backprop"
    rules = GUIDED_RULES

    def _attribute(self, problem: Problem) -> np.ndarray:
        return self._gradients_at_rows(problem)


class GuidedGradCam(RectifiedGradCam):
    """Guided Backprop times the Grad-CAM map upsampled (nearest) to the input, as Captum's ``GuidedGradCam``.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        As for :class:`GradCam`.

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows; ``extras["layer_map"]`` holds the
    Grad-CAM map (n_rows, h, w).

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> ae.GuidedGradCam(DEFAULT_MODEL_PATH).explain(images[:1], target=3).values.shape
    (1, 1, 8, 8)
    """

    method = "guided_grad_cam"

    def _check(self, rows):
        require_float_rows(rows, type(self).__name__)

    def _attribute(self, problem: Problem) -> np.ndarray:
        maps, grads = self._maps(problem)
        cam = np.maximum(np.einsum("nc,nchw->nhw", grads.mean(axis=(2, 3)), maps), 0)
        problem.extras["layer_map"] = cam.astype(np.float32)
        rows = problem.rows
        n = len(rows)
        guided = input_gradients(problem, n, lambda start, stop: rows[start:stop], np.arange(n), self.method,
                                 rules=GUIDED_RULES, rules_key=GuidedBackprop.method)
        channel = channel_axis(rows.shape[1:], problem.model.layout) if rows.ndim == 4 else None
        height, width = (rows.shape[1:3] if channel == 2 else rows.shape[2:]) if rows.ndim == 4 else rows.shape[-2:]
        rows_at = (np.arange(height) * cam.shape[1]) // height  # torch's "nearest": floor(i * in / out)
        cols_at = (np.arange(width) * cam.shape[2]) // width
        full = cam[:, rows_at][:, :, cols_at]
        if rows.ndim == 4:
            full = full[..., None] if channel == 2 else full[:, None]
        return (guided * full).astype(rows.dtype)
