"""Graph edits for gradient explanations: a transformed output to differentiate, and one model
that outputs the prediction and its attribution map together (:func:`with_explanation`).

Gradient explainers differentiate ``softmax(y)`` or ``sigmoid(y)`` by adding that node to the
graph before :func:`~agnostic_explain.graph.gradient.gradient` runs: the seed then stays a
one-hot vector, and the softmax Jacobian is applied in the graph at every evaluated row (an
integrated-gradients step differs from the explained row, so a seed computed once in numpy
from the explained row's probabilities would be wrong there).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ParameterError
from .gradient import GRAD_SUFFIX, SEED_SUFFIX, gradient
from .source import open_model
from .topology import node_inputs

__all__ = ["ATTRIBUTION", "EXPLAINED_METHODS", "transformed_output", "with_explanation"]


def transformed_output(model, output: str, transform: str | None) -> tuple[onnx.ModelProto, str]:
    """``(proto, name)``: a copy of ``model`` whose tensor ``name`` is ``transform(output)``.

    ``transform`` is None (the output itself, the model unchanged), ``"softmax"`` (over axis 1,
    as :func:`agnostic_explain.runtime.targets.transform` computes it) or ``"sigmoid"``.
    """
    proto = open_model(model).proto
    if transform is None:
        return proto, output
    if transform not in ("softmax", "sigmoid"):
        raise ParameterError(f"output_transform must be None, 'softmax' or 'sigmoid', got {transform!r}")
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    name = f"{output}__{transform}"
    node = (helper.make_node("Softmax", [output], [name], axis=1, name=name) if transform == "softmax"
            else helper.make_node("Sigmoid", [output], [name], name=name))
    edited.graph.node.append(node)
    return edited, name


#: the methods :func:`with_explanation` builds into a graph
EXPLAINED_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "grad_cam")
#: the output holding the attribution map in a :func:`with_explanation` model
ATTRIBUTION = "attribution"


def with_explanation(model, method: str = "saliency", *, target="predicted", output=None, input=None,
                     steps: int = 50, baseline: float = 0.0, layer=None) -> onnx.ModelProto:
    """One model that outputs the prediction and each row's attribution map in one run.

    The gradient's seed is built in the graph from ``target``: a one-hot vector at a fixed
    class index, or at each row's argmax for ``"predicted"``; the result has no seed input,
    needs nothing but ONNX Runtime (a plain ``onnxruntime.InferenceSession`` runs it), and gives
    the numbers of the explainer of the same name with its defaults.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged. Its explained output must be (batch, classes).
    method : {"saliency", "input_x_gradient", "integrated_gradients", "grad_cam"}
        ``saliency``: the absolute gradient (Captum's default); ``input_x_gradient``;
        ``integrated_gradients``: Gauss-Legendre quadrature, ``steps`` points from a constant
        ``baseline`` (the rows and all their path points run as one batch of
        ``(steps + 1) * batch`` rows); ``grad_cam``: ReLU of the gradient-weighted channels of
        ``layer``, a channels-first 4-D activation, not upsampled.
    target : int or "predicted"
    output, input : str, optional
        The explained output and input; by default the first of each.
    steps : int, default 50
    baseline : float, default 0.0
    layer : str
        For ``grad_cam`` only.

    Returns
    -------
    onnx.ModelProto
        Outputs: the model's outputs (for ``integrated_gradients`` the explained one only), then
        ``"attribution"``: shaped like the input, or (batch, h, w) for ``grad_cam``.

    Examples
    --------
    >>> import onnxruntime
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> proto = with_explanation(DEFAULT_MODEL_PATH, "input_x_gradient", target=3)
    >>> session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    >>> logits, attribution = session.run(None, {"image": load_samples()[0][:2]})
    >>> logits.shape, attribution.shape
    ((2, 10), (2, 1, 8, 8))
    """
    if method not in EXPLAINED_METHODS:
        raise ParameterError(f"method must be one of {EXPLAINED_METHODS}, got {method!r}")
    if not (target == "predicted" or (isinstance(target, (int, np.integer)) and not isinstance(target, bool)
                                      and target >= 0)):
        raise ParameterError(f"target must be a class index (int >= 0) or 'predicted', got {target!r}")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ParameterError(f"steps must be a positive int, got {steps!r}")
    if method == "grad_cam" and not isinstance(layer, str):
        raise ParameterError(f"layer: grad_cam needs the name of a 4-D channels-first activation, got {layer!r}")
    proto = open_model(model).proto
    x, y = _explained_input(proto, input), _explained_output(proto, output)
    if method == "integrated_gradients":
        return _integrated(proto, x, y, target, int(steps), float(baseline))
    wrt = layer if method == "grad_cam" else x
    edited = gradient(proto, wrt, output=y)
    builder = _Builder(edited, y)
    builder.seed(y, y + SEED_SUFFIX, target, rows=None)
    grad = wrt + GRAD_SUFFIX
    if method == "saliency":
        builder.node("Abs", [grad], [ATTRIBUTION])
    elif method == "input_x_gradient":
        builder.node("Mul", [grad, x], [ATTRIBUTION])
    else:
        weights = builder.node("GlobalAveragePool", [grad])
        weighted = builder.node("Mul", [weights, layer])
        summed = builder.node("ReduceSum", [weighted, builder.constant(np.array([1], np.int64))], keepdims=0)
        builder.node("Relu", [summed], [ATTRIBUTION])
    return builder.finish(drop_outputs=[grad], attribution_like=None if method == "grad_cam" else x)


def _explained_input(proto, name) -> str:
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value.name for value in proto.graph.input if value.name not in initializers]
    if name is None:
        return inputs[0]
    if name not in inputs:
        raise ParameterError(f"input: the model has no input {name!r}; inputs are {inputs}")
    return name


def _explained_output(proto, name) -> str:
    outputs = [value.name for value in proto.graph.output]
    floats = [value.name for value in proto.graph.output
              if value.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE,
                                                      onnx.TensorProto.FLOAT16)]
    if name is None:
        return (floats or outputs)[0]
    if name not in outputs:
        raise ParameterError(f"output: the model has no output {name!r}; outputs are {outputs}")
    return name


class _Builder:
    """Appends nodes to a copy of a gradient model and turns its seed input into computed nodes."""

    def __init__(self, proto, output):
        self.proto = onnx.ModelProto()
        self.proto.CopyFrom(proto)
        self.count = 0
        self.output = output
        self.elem_type = next(value.type.tensor_type.elem_type for value in list(self.proto.graph.output)
                              + list(self.proto.graph.value_info) if value.name == output)

    def fresh(self) -> str:
        self.count += 1
        return f"explained__{self.count}"

    def node(self, op_type, inputs, outputs=None, **attributes) -> str:
        outputs = outputs or [self.fresh()]
        self.proto.graph.node.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attributes))
        return outputs[0]

    def constant(self, value: np.ndarray) -> str:
        name = self.fresh()
        self.proto.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def seed(self, predictions: str, seed: str, target, rows) -> None:
        """Compute ``seed`` (a former graph input) as the one-hot target of ``predictions``, (N, C).

        ``rows`` repeats the seed of each row (a path of integrated gradients): None, or
        ``(repeats, leading_zero_rows)``.
        """
        graph = self.proto.graph
        declared = [value for value in graph.input if value.name == seed]
        rank = len(declared[0].type.tensor_type.shape.dim) if declared else 0
        if rank != 2:
            raise ParameterError(
                f"output: with_explanation explains a (batch, classes) output; {self.output!r} has rank {rank}")
        graph.input.remove(declared[0])
        classes = self.node("Gather", [self.node("Shape", [predictions]), self.constant(np.array(1, np.int64))])
        if target == "predicted":
            index = self.node("ArgMax", [predictions], axis=1, keepdims=0)
        else:
            batch = self.node("Slice", [self.node("Shape", [predictions]), self.constant(np.array([0], np.int64)),
                                        self.constant(np.array([1], np.int64))])
            index = self.node("Expand", [self.constant(np.array(int(target), np.int64)), batch])
        on_off = self.constant(np.array([0, 1], helper.tensor_dtype_to_np_dtype(self.elem_type)))
        if rows is None:
            self.node("OneHot", [index, classes, on_off], [seed], axis=-1)
            return
        repeats, zero_rows = rows
        one_hot = self.node("OneHot", [index, classes, on_off], axis=-1)
        tiled = self.node("Tile", [one_hot, self.constant(np.array([repeats, 1], np.int64))])
        zero = self.constant(np.array(0, helper.tensor_dtype_to_np_dtype(self.elem_type)))
        zeros = self.node("Mul", [one_hot, zero]) if zero_rows else None
        self.node("Concat", [zeros, tiled] if zeros else [tiled], [seed], axis=0)

    def finish(self, drop_outputs, attribution_like) -> onnx.ModelProto:
        graph = self.proto.graph
        for value in [value for value in graph.output if value.name in drop_outputs]:
            graph.output.remove(value)
        if attribution_like is not None:
            like = next(value for value in graph.input if value.name == attribution_like)
            graph.output.append(helper.make_tensor_value_info(ATTRIBUTION, like.type.tensor_type.elem_type,
                                                              _dims(like)))
        else:
            graph.output.append(helper.make_tensor_value_info(ATTRIBUTION, self.elem_type, [None, None, None]))
        _sort_nodes(graph)
        onnx.checker.check_model(self.proto)
        return self.proto


def _sort_nodes(graph) -> None:
    """Order the nodes so each comes after the producers of its inputs (the seed nodes read
    the forward output and feed the backward nodes, so they go in between). Stable."""
    available = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node_inputs(node)):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise ParameterError(f"with_explanation: node {waiting[0].name!r} reads a tensor nothing produces")
        pending = waiting
    nodes = [copy for copy in (onnx.NodeProto() for _ in ordered)]
    for copy, node in zip(nodes, ordered):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _dims(value) -> list:
    return [dim.dim_param or (dim.dim_value if dim.HasField("dim_value") else None)
            for dim in value.type.tensor_type.shape.dim]


def _renamed(proto, old: str, new: str) -> onnx.ModelProto:
    """A copy of ``proto`` with tensor ``old`` called ``new`` everywhere in the main graph."""
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = edited.graph
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    return edited


def _integrated(proto, x: str, y: str, target, steps: int, baseline: float) -> onnx.ModelProto:
    """Integrated gradients in one batch: the rows, then ``steps`` path points of every row."""
    path_x, path_y = x + "__path", y + "__path"
    inner = _renamed(_renamed(proto, x, path_x), y, path_y)
    graph = inner.graph
    keep = [value for value in graph.output if value.name == path_y]
    del graph.output[:]
    graph.output.extend(keep)
    declared = next(value for value in graph.input if value.name == path_x)
    new_input = onnx.ValueInfoProto()
    new_input.CopyFrom(declared)
    new_input.name = x
    edited = gradient(inner, path_x, output=path_y)
    builder = _Builder(edited, path_y)
    edited = builder.proto
    edited.graph.input.insert(0, new_input)
    edited.graph.input.remove(next(value for value in edited.graph.input if value.name == path_x))
    dtype = helper.tensor_dtype_to_np_dtype(new_input.type.tensor_type.elem_type)
    rank = len(new_input.type.tensor_type.shape.dim)
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = (0.5 * (1 + nodes)).astype(dtype).reshape((steps,) + (1,) * rank)
    weights = (0.5 * weights).astype(np.float64).astype(dtype).reshape((steps,) + (1,) * rank)
    base = builder.constant(np.array(baseline, dtype))
    difference = builder.node("Sub", [x, base])
    path = builder.node("Add", [base, builder.node("Mul", [builder.constant(alphas), builder.node(
        "Unsqueeze", [difference, builder.constant(np.array([0], np.int64))])])])
    row_shape = builder.node("Slice", [builder.node("Shape", [x]), builder.constant(np.array([1], np.int64)),
                                       builder.constant(np.array([rank], np.int64))])
    flat_shape = builder.node("Concat", [builder.constant(np.array([-1], np.int64)), row_shape], axis=0)
    flat_path = builder.node("Reshape", [path, flat_shape])
    builder.node("Concat", [x, flat_path], [path_x], axis=0)
    batch = builder.node("Slice", [builder.node("Shape", [x]), builder.constant(np.array([0], np.int64)),
                                   builder.constant(np.array([1], np.int64))])
    builder.node("Slice", [path_y, builder.constant(np.array([0], np.int64)), batch,
                           builder.constant(np.array([0], np.int64))], [y])
    builder.seed(y, path_y + SEED_SUFFIX, target, rows=(steps, True))
    grads = builder.node("Slice", [path_x + GRAD_SUFFIX, batch, builder.constant(np.array([np.iinfo(np.int64).max],
                                                                                          np.int64)),
                                   builder.constant(np.array([0], np.int64))])
    per_step_shape = builder.node("Concat", [builder.constant(np.array([steps, -1], np.int64)), row_shape], axis=0)
    weighted = builder.node("Mul", [builder.node("Reshape", [grads, per_step_shape]), builder.constant(weights)])
    total = builder.node("ReduceSum", [weighted, builder.constant(np.array([0], np.int64))], keepdims=0)
    builder.node("Mul", [total, difference], [ATTRIBUTION])
    graph = builder.proto.graph
    outputs = [value for value in graph.output if value.name == path_y]
    for value in outputs:
        value.name = y
    return builder.finish(drop_outputs=[path_x + GRAD_SUFFIX], attribution_like=x)
