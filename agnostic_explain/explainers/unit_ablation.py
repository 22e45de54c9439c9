"""UnitAblation: how much the target depends on each channel or neuron of one layer."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..runtime.batching import Feeds, evaluate
from .layer import LayerExplainer


class UnitAblation(LayerExplainer):
    """Remove one unit of a layer at a time and measure the target's drop, running only the tail.

    A unit is a slice of the layer's activation along ``axis``: a channel of a
    (batch, channels, height, width) activation, a neuron of a (batch, features) one. Its
    attribution is ``target(x) - target(x with the unit ablated)``, the quantity Captum's
    ``LayerFeatureAblation`` gives with one mask group per channel. The explained rows run
    once through the model with the layer exposed; then the tail runs one row per unit.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
        An ONNX model (see :func:`agnostic_explain.load`).
    layer : str, optional
        The tensor whose units are ablated; by default the last activation where the graph
        can be cut, reported in ``Explanation.params["layer"]``.
    axis : int, default 1
        The unit axis of the batch-first activation (1: channels; -1: the features of a
        (batch, tokens, features) activation).
    baseline : float or "mean", default 0.0
        What an ablated unit is set to: a constant, or its mean activation over ``data``.
    data : array_like, optional
        Rows of the explained input whose activations give the ``"mean"`` baseline.

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` have shape (n_rows, n_units); ``extras`` hold
    ``n_evals_head`` (rows run through the exposed model) and ``n_evals_tail``.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.UnitAblation(DEFAULT_MODEL_PATH, layer="/relu3/Relu_output_0").explain(images[:2])
    >>> explanation.values.shape, explanation.extras["n_evals_head"], explanation.extras["n_evals_tail"]
    ((2, 32), 2, 64)
    """

    method = "unit_ablation"
    data_params = ("data",)
    row_kinds = ("image",)
    values_like_rows = False

    def __init__(self, model, layer=None, *, axis=1, baseline=0.0, data=None):
        super().__init__(model, layer)
        self.axis = axis
        self.baseline = baseline
        self.data = data

    def _params(self) -> dict:
        baseline = self.baseline if isinstance(self.baseline, str) else float(self.baseline)
        return {"layer": self.layer, "axis": self.axis, "baseline": baseline}

    def _check(self, rows: np.ndarray) -> None:
        if isinstance(self.baseline, str):
            if self.baseline != "mean":
                raise ParameterError(f"baseline must be a number or 'mean', got {self.baseline!r}")
            if self.data is None:
                raise ParameterError("data: baseline='mean' needs data=rows whose mean activation replaces a unit")
        elif not np.isscalar(self.baseline) or not np.isfinite(self.baseline):
            raise ParameterError(f"baseline must be a finite number or 'mean', got {self.baseline!r}")
        if not isinstance(self.axis, (int, np.integer)) or isinstance(self.axis, bool):
            raise ParameterError(f"axis must be an int, got {self.axis!r}")

    def _attribute(self, problem) -> np.ndarray:
        activations = self._layer_rows(problem)
        axis = _unit_axis(self.axis, activations.ndim)
        replacement = self._replacement(problem, activations)
        scores = self._unit_scores(
            problem, activations.shape[axis], lambda rows, owners, units: ablate(rows, units, axis, replacement)
        )
        return problem.base_values[:, None] - scores

    def _replacement(self, problem, activations: np.ndarray) -> np.ndarray:
        """What ablated units are set to, broadcastable to one activation row (batch axis kept)."""
        if not isinstance(self.baseline, str):
            return np.asarray(self.baseline, dtype=activations.dtype)
        parts = problem.context["parts"]
        feeds = Feeds.prepare(problem.model, self.data, input=problem.feeds.name,
                              fixed_inputs={name: value for name, (value, _) in problem.feeds.fixed.items()})
        n = len(feeds.rows)
        total = evaluate(
            parts.exposed, feeds, n=n, make_rows=lambda start, stop: feeds.rows[start:stop], owners=np.zeros(n, int),
            reduce=lambda values, owners: values.astype(np.float64).sum(axis=0, keepdims=True),
            output=parts.layer, progress=problem.progress, desc="mean activation",
        ).sum(axis=0, keepdims=True)
        problem.extras["n_evals_head"] += n
        problem.n_evals += n
        return (total / n).astype(activations.dtype)


def ablate(rows: np.ndarray, units: np.ndarray, axis: int, replacement: np.ndarray) -> np.ndarray:
    """``rows`` with unit ``units[i]`` (along ``axis``) of row ``i`` set to ``replacement``.

    Edits ``rows`` in place and returns it: the rows are a fresh gather of activations, and a
    second activation-sized array per batch would cost more than the tail (page faults).
    ``replacement`` is a scalar or one activation row with its batch axis (a mean).
    """
    picked = (np.arange(len(rows)),) + (slice(None),) * (axis - 1) + (units,)
    rows[picked] = replacement if replacement.ndim == 0 else replacement[(0,) + picked[1:]]
    return rows


def _unit_axis(axis: int, ndim: int) -> int:
    resolved = axis + ndim if axis < 0 else axis
    if not 1 <= resolved < ndim:
        raise ParameterError(
            f"axis: {axis} is not a unit axis of a {ndim}-D activation (batch first); expected 1..{ndim - 1} or -1"
        )
    return resolved
