"""DeepLIFT (Shrikumar et al., 2017) with the rescale rule, as Captum's ``DeepLift``.

The rescale rule replaces the backward rule of each elementwise nonlinearity ``y = f(x)`` by
``g * (f(x) - f(x_ref)) / (x - x_ref)``, the plain gradient where ``|x - x_ref| < 1e-10``.
``x_ref``, the nonlinearity's input at the baseline, comes in as an extra input of the
gradient graph per nonlinearity (``ctx.add_input``); a run of the baseline through the model
with those tensors exposed gives them. Linear operators keep their gradient, so
``values = (x - baseline) * multipliers`` and their sum is ``f(x) - f(baseline)`` up to
``extras["delta"]`` (summation-to-delta).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ..graph.expose import expose
from ..graph.gradient import RULES
from ..perturbation.baselines import baseline_rows
from ..runtime.batching import evaluate
from ..runtime.targets import transform
from .base import Problem, recorded
from .gradients import GradientExplainer, fixed_values, gradient_model, run_gradients
from .integrated_gradients import completeness_delta

#: the suffix of the extra input holding a nonlinearity's input at the baseline
REFERENCE_SUFFIX = "__reference"
#: Captum's threshold under which the rescale rule falls back to the gradient
EPSILON = 1e-10
#: the nonlinearities the rescale rule covers (as Captum: ReLU, ELU, Sigmoid, Tanh, Softplus, LeakyReLU;
#: MaxPool has its own rule)
NONLINEAR = ("Relu", "Elu", "Sigmoid", "Tanh", "Softplus", "LeakyRelu")


def rescale(ctx, node, grads):
    """The rescale rule of an elementwise nonlinearity: the secant slope from the reference."""
    x, y, g = node.input[0], node.output[0], grads[0]
    reference = ctx.add_input(x + REFERENCE_SUFFIX, like=x)
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    at_reference = ctx.op(node.op_type, [reference], **attributes)
    delta_in = ctx.op("Sub", [x, reference])
    delta_out = ctx.op("Sub", [y, at_reference])
    small = ctx.op("Less", [ctx.op("Abs", [delta_in]), ctx.constant(EPSILON, like=x)])
    safe = ctx.op("Where", [small, ctx.constant(1.0, like=x), delta_in])
    slope = ctx.op("Mul", [g, ctx.op("Div", [delta_out, safe])])
    plain = RULES[node.op_type](ctx, node, grads)[0]
    return [ctx.op("Where", [small, plain, slope])]


def rescale_max_pool(ctx, node, grads):
    """Captum's DeepLIFT rule for max pooling: ``g * (max(y, y_ref) - y_ref)`` routed to the input's
    maxima plus ``g * (y - max(y, y_ref))`` routed to the reference's, over ``x - x_ref`` (the
    gradient where ``|x - x_ref| < 1e-10``)."""
    x, y, g = node.input[0], node.output[0], grads[0]
    if ctx.attribute("storage_order", 0):
        ctx.refuse("storage_order=1 is not supported")
    reference = ctx.add_input(x + REFERENCE_SUFFIX, like=x)
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    at_reference, reference_indices = ctx.op("MaxPool", [reference], n_outputs=2, **attributes)
    _, indices = ctx.op("MaxPool", [x], n_outputs=2, **attributes)
    cross = ctx.op("Max", [y, at_reference])
    routed = ctx.op("Add", [
        _unpool(ctx, x, indices, ctx.op("Mul", [g, ctx.op("Sub", [cross, at_reference])])),
        _unpool(ctx, x, reference_indices, ctx.op("Mul", [g, ctx.op("Sub", [y, cross])])),
    ])
    delta_in = ctx.op("Sub", [x, reference])
    small = ctx.op("Less", [ctx.op("Abs", [delta_in]), ctx.constant(EPSILON, like=x)])
    safe = ctx.op("Where", [small, ctx.constant(1.0, like=x), delta_in])
    plain = RULES["MaxPool"](ctx, node, grads)[0]
    return [ctx.op("Where", [small, plain, ctx.op("Div", [routed, safe])])]


def _unpool(ctx, x, indices, values):
    """``values`` scattered (added) to the flat ``indices`` of a tensor shaped like ``x``."""
    flat = ctx.int64([-1])
    size = ctx.op("Reshape", [ctx.op("Size", [x]), flat])
    zeros = ctx.op("ConstantOfShape", [size], value=helper.make_tensor("", ctx.elem_type(x), [1], [0.0]))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [indices, flat]), ctx.op("Reshape", [values, flat])],
                       axis=0, reduction="add" if ctx.opset >= 16 else None)
    return ctx.op("Reshape", [scattered, ctx.shape(x)])


RESCALE_RULES = {**{op_type: rescale for op_type in NONLINEAR}, "MaxPool": rescale_max_pool}


def _batched_references(batch_dim):
    """``finish`` for the gradient graph: the reference inputs take the explained input's batch dimension."""

    def finish(proto: onnx.ModelProto) -> onnx.ModelProto:
        for value in proto.graph.input:
            dims = value.type.tensor_type.shape.dim
            if value.name.endswith(REFERENCE_SUFFIX) and len(dims) and batch_dim is not None:
                dims[0].Clear()
                if isinstance(batch_dim, str):
                    dims[0].dim_param = batch_dim
                else:
                    dims[0].dim_value = batch_dim
        return proto

    return finish


class DeepLift(GradientExplainer):
    """DeepLIFT's rescale rule with Captum's defaults: a zero baseline, multiplied by ``x - baseline``.

    ``MaxPool`` takes Captum's max-pool rule. The values match Captum's on ReLU networks and on
    max pooling alone; where a ReLU feeds a max pool, Captum's values no longer sum to
    ``f(x) - f(baseline)`` (its delta is about 1e-3 of the output) and differ from these, which do.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or OnnxModel
    baseline : float, array_like or "mean" / "blur", default 0.0

    Returns (from ``explain``)
    --------------------------
    Explanation whose ``values`` are shaped like the rows; ``extras["delta"]`` (n_rows,) is
    ``sum(values) - (f(x) - f(baseline))``. It costs one baseline row (with the references
    exposed) and one gradient row per explained row.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.DeepLift(DEFAULT_MODEL_PATH).explain(images[:2], target=3)
    >>> explanation.values.shape, explanation.extras["delta"].shape
    ((2, 1, 8, 8), (2,))
    """

    method = "deep_lift"

    def __init__(self, model, baseline=0.0):
        super().__init__(model)
        self.baseline = baseline

    def _params(self) -> dict:
        return {"baseline": recorded(self.baseline)}

    def _check(self, rows):
        super()._check(rows)
        return np.ascontiguousarray(np.broadcast_to(baseline_rows(self.baseline, rows), rows.shape))

    def _attribute(self, problem: Problem) -> np.ndarray:
        model, feeds, rows, baseline = problem.model, problem.feeds, problem.rows, problem.checked
        n = len(rows)
        batch_dim = next((value.type.tensor_type.shape.dim[feeds.spec.batch_axis or 0].dim_param or None
                          for value in model.proto.graph.input if value.name == feeds.name), None)
        graph = gradient_model(model, model, "model", wrt=feeds.name, output=problem.output,
                               output_transform=problem.output_transform, rules=RESCALE_RULES, rules_key=self.method,
                               finish=_batched_references(batch_dim))
        references = [spec.name for spec in graph.model.inputs if spec.name.endswith(REFERENCE_SUFFIX)]
        tensors = [name[: -len(REFERENCE_SUFFIX)] for name in references]
        exposed = model.cache.derived_model(("deep_lift_references", tuple(tensors)),
                                            lambda: model.derive(expose(model, tensors)) if tensors else model)
        results = evaluate(exposed, feeds, n=n, make_rows=lambda start, stop: baseline[start:stop],
                           owners=np.arange(n), reduce=lambda outputs, _: tuple(outputs),
                           output=[problem.output, *tensors], progress=False)
        problem.n_evals += n
        at_references = dict(zip(references, results[1:]))
        grads = run_gradients(problem, graph, rows=rows, fixed={**fixed_values(feeds), **at_references}, n=n,
                              make_rows=lambda start, stop: rows[start:stop], owners=np.arange(n), desc=self.method)
        values = (grads.astype(np.float64) * (rows.astype(np.float64) - baseline)).astype(rows.dtype)
        f_baseline = problem.target.select(transform(results[0], problem.output_transform), np.arange(n))
        problem.extras["delta"] = completeness_delta(values, problem.base_values, f_baseline)
        return values
