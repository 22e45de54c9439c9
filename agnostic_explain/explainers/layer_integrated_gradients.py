"""Layer Integrated Gradients: Integrated Gradients at an intermediate tensor (token embeddings, say).

As Captum's ``LayerIntegratedGradients``: the baseline is given in input space (token ids for
a text model), both the rows and the baseline run through the model with the layer exposed,
and the path runs between their activations, through the gradient graph of the tail.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..perturbation.baselines import baseline_rows
from ..runtime.batching import evaluate
from ..runtime.targets import transform
from .base import Problem, recorded
from .gradients import path_sum
from .integrated_gradients import check_path, completeness_delta, path_points, path_rows
from .layer_gradients import LayerGradientExplainer


class LayerIntegratedGradients(LayerGradientExplainer):
    """Integrated Gradients of the target with respect to a layer's activation.

    ``values = (A(x) - A(b)) * sum_k w_k grad_A(A(b) + a_k (A(x) - A(b)))``, shaped like the
    layer; their sum is close to ``f(x) - f(b)`` (the rest is ``extras["delta"]``).

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    layer : str, optional
        A node output. By default, for integer (token id) inputs, the output of the embedding
        lookup (the ``Gather`` that reads the explained input).
    baseline : int, float or array_like, default 0
        In input space: a token id (the padding id, say) or one row, or one per row.
    steps : int, default 50
    method : {"gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid"}

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the layer, (n_rows, *layer_shape), except for
    token ids explained at a (batch, tokens, dim) layer: ``values`` are then one per token,
    (n_rows, tokens), the sum over the embedding dimension (what the text plots and the other
    token methods give), and ``extras["layer_values"]`` hold the layer-shaped values.
    ``extras["delta"]`` (n_rows,) is the convergence delta.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explainer = ae.LayerIntegratedGradients(DEFAULT_MODEL_PATH, layer="/relu3/Relu_output_0", steps=8)
    >>> explainer.explain(images[:1], target=3).values.shape
    (1, 32, 4, 4)
    """

    method = "layer_integrated_gradients"
    row_kinds = ("tokens",)
    #: true of token rows, the kind it explains (values at another layer are shaped like the layer)
    values_like_rows = True

    def __init__(self, model, layer=None, baseline=0, steps=50, method="gausslegendre"):
        super().__init__(model, layer)
        self.baseline = baseline
        self.steps = steps
        self.integration = method

    def _params(self) -> dict:
        return {"layer": self.layer, "baseline": recorded(self.baseline), "steps": self.steps,
                "integration": self.integration}

    def _check(self, rows):
        check_path(self.steps, self.integration)
        return np.ascontiguousarray(np.broadcast_to(baseline_rows(self.baseline, rows), rows.shape))

    def _named_layer(self, model, feeds):
        if self.layer is not None:
            return self.layer
        found = embedding_output(model.proto, feeds.name)
        if found is None:
            raise ParameterError(
                f"layer: {type(self).__name__} found no embedding lookup (a Gather reading input {feeds.name!r}); "
                "pass layer='tensor name' (agnostic-explain layers MODEL lists them)"
            )
        return found

    def _attribute(self, problem: Problem) -> np.ndarray:
        at_rows = self._layer_rows(problem)
        parts, baseline, n = problem.context["parts"], problem.checked, len(problem.rows)
        outputs, at_baseline = evaluate(
            parts.exposed, problem.feeds, n=n, make_rows=lambda start, stop: baseline[start:stop],
            owners=np.arange(n), reduce=lambda values, _: (values[0], values[1]), output=[problem.output, parts.layer],
            progress=False,
        )
        problem.n_evals += n
        problem.extras["n_evals_head"] += n
        alphas, weights = path_points(self.integration, self.steps)
        total, reduce = path_sum(weights, at_rows.shape[1:], n)
        self._layer_gradients(problem, at_rows, n * self.steps, path_rows(at_baseline, at_rows, alphas),
                              np.repeat(np.arange(n), self.steps), desc=self.method, reduce=reduce)
        values = (total * (at_rows.astype(np.float64) - at_baseline)).astype(np.float32)
        f_baseline = problem.target.select(transform(outputs, problem.output_transform), np.arange(n))
        problem.extras["delta"] = completeness_delta(values, problem.base_values, f_baseline)
        if problem.rows.dtype.kind in "iu" and values.shape[:2] == problem.rows.shape and values.ndim == 3:
            # per token, as every token method and the text plots read them
            problem.extras["layer_values"] = values
            return values.sum(axis=2)
        return values


def embedding_output(proto, input_name: str) -> str | None:
    """The output of the embedding lookup of ``input_name``: a Gather whose indices are the
    input (directly or through Cast/Identity) and whose data is a weight, or None."""
    weights = {tensor.name for tensor in proto.graph.initializer}
    weights |= {node.output[0] for node in proto.graph.node if node.op_type == "Constant"}
    aliases = {input_name}
    for node in proto.graph.node:
        if node.op_type in ("Cast", "Identity") and node.input[0] in aliases:
            aliases.add(node.output[0])
        if node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in aliases and node.input[0] in weights:
            return node.output[0]
    return None
