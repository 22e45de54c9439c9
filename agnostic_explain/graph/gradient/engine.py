"""``gradient``: a model that also computes vector-Jacobian products, as a pure graph edit.

Reverse mode over the ONNX graph, one rule per operator kind (see :mod:`.registry`). Only
the nodes on a path from a ``wrt`` tensor to a differentiated output get backward nodes:
weights, biases, normalisation scales and clip bounds never get a gradient, and neither do
the branches that do not reach an output. Fan-out is accumulated with ``Sum``.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

from ...errors import ParameterError
from ..source import open_model
from ..topology import node_inputs
from .context import RuleContext
from .fold import inferred_types
from .prepare import pads_in_convs
from .registry import RULES

__all__ = ["GRAD_SUFFIX", "SEED_SUFFIX", "gradient"]

#: the seed (cotangent) input of a differentiated output ``y`` is named ``y + SEED_SUFFIX``
SEED_SUFFIX = "__seed"
#: the vector-Jacobian product with respect to tensor ``x`` is the output ``x + GRAD_SUFFIX``
GRAD_SUFFIX = "__grad"

_FLOATS = {
    onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16,
}
_MIN_OPSET = 13


def gradient(model, wrt, output=None, rules=None) -> onnx.ModelProto:
    """Return a copy of ``model`` that also outputs the vector-Jacobian product for each ``wrt`` tensor.

    For every differentiated output ``y`` the returned model has a new input ``y + "__seed"``
    (the cotangent ``v``, the same dtype and shape as ``y``); for every ``wrt`` tensor ``x`` a
    new output ``x + "__grad"``, shaped like ``x``, holding ``sum over outputs of v^T dy/dx``.
    The original inputs and outputs come first, unchanged. Only standard ai.onnx operators are
    emitted, so ONNX Runtime inference builds run the result; shapes are read at run time
    where they are dynamic, so a dynamic batch or sequence length stays dynamic.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged. Its ai.onnx opset must be 13 or later.
    wrt : str or list of str
        Float tensors to differentiate with respect to: graph inputs or node outputs
        (intermediate tensors: the gradient then flows back to them and stops there).
    output : str or list of str, optional
        Tensors to differentiate (graph outputs or node outputs); by default every float graph
        output that depends on a ``wrt`` tensor. Feed a seed of zeros to leave one out of a run.
    rules : dict, optional
        ``{op_type: rule}`` replacing or adding backward rules for this call (operators of
        another domain are keyed ``"domain.OpType"``); see
        :mod:`agnostic_explain.graph.gradient` for the rule signature, and
        :func:`guided_relu` for an example.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ParameterError
        An unknown tensor name, a name clash with the seed/grad names, an operator on the
        path without a rule (the message names the operator and the node), or an input a
        rule cannot differentiate (a convolution's weights, say).

    Examples
    --------
    >>> from onnx import TensorProto, helper
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    >>> graph = helper.make_graph([helper.make_node("Tanh", ["x"], ["y"])], "g", [x], [y])
    >>> model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    >>> edited = gradient(model, "x")
    >>> [i.name for i in edited.graph.input], [o.name for o in edited.graph.output]
    (['x', 'y__seed'], ['y', 'x__grad'])
    """
    source = open_model(model)
    wrt_names = _names(wrt, "wrt")
    table = _rule_table(rules)
    _opset(source.proto)
    named_outputs = _names(output, "output") if output is not None else []
    proto = pads_in_convs(source.proto, keep=set(wrt_names) | set(named_outputs))
    graph = proto.graph
    opset = _opset(proto)
    types = inferred_types(proto)
    produced = {name for node in graph.node for name in node.output if name}
    graph_inputs = {value.name for value in graph.input}
    initializer_names = {tensor.name for tensor in graph.initializer}
    for name in wrt_names:
        if name not in produced and (name not in graph_inputs or name in initializer_names):
            raise ParameterError(
                f"wrt: {name!r} is neither a graph input nor a node output of the model"
                + (" (it is an initializer: gradients for weights are not built)" if name in initializer_names else "")
            )
        if name in types and types[name].type.tensor_type.elem_type not in _FLOATS:
            raise ParameterError(f"wrt: tensor {name!r} is not a floating-point tensor; it has no gradient")

    reachable = _reachable_from(graph, wrt_names, types)
    output_names = _outputs(graph, output, reachable, produced | graph_inputs, types)
    useful = _reaching(graph, output_names)
    path = [index for index, node in enumerate(graph.node)
            if any(name in useful and name in reachable for name in node.output)
            and any(name in reachable for name in node_inputs(node))]

    taken = produced | graph_inputs | initializer_names | {value.name for value in graph.output}
    for name in [n + SEED_SUFFIX for n in output_names] + [n + GRAD_SUFFIX for n in wrt_names]:
        if name in taken:
            raise ParameterError(f"gradient: the model already has a tensor named {name!r}; rename it first")
    taken |= {n + SEED_SUFFIX for n in output_names} | {n + GRAD_SUFFIX for n in wrt_names}

    context = RuleContext(proto, types, _constant_values(proto), opset, taken)
    contributions: dict[str, list[str]] = {name: [name + SEED_SUFFIX] for name in output_names}
    for index in reversed(path):
        node = graph.node[index]
        grads = [_accumulate(context, contributions, name) if name in reachable and name in useful else None
                 for name in node.output]
        if all(g is None for g in grads):
            continue
        rule = table.get(node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}")
        context.node, context.node_index = node, index
        context.needs = tuple(bool(name) and name in reachable for name in node.input)
        if rule is None:
            raise ParameterError(
                f"gradient: no backward rule for operator {node.op_type!r} (domain {node.domain or 'ai.onnx'!r}) "
                f"at node {node.name or '#' + str(index)!r}, which lies between wrt and the output; "
                "pass one in rules={...}"
            )
        _check_subgraphs(node, index)
        results = list(rule(context, node, grads) or [])
        results += [None] * (len(node.input) - len(results))
        for name, grad, needed in zip(node.input, results, context.needs):
            if grad is not None and needed:
                contributions.setdefault(name, []).append(grad)
                if name in types:
                    types.setdefault(grad, types[name])

    outputs = []
    context.node = None
    for name in wrt_names:
        total = _accumulate(context, contributions, name) or context.zeros_like(name)
        context.nodes.append(helper.make_node("Identity", [total], [name + GRAD_SUFFIX], name=name + GRAD_SUFFIX))
        outputs.append(_renamed(context.value_info(name), name + GRAD_SUFFIX))
    seeds = [_renamed(context.value_info(name), name + SEED_SUFFIX) for name in output_names]
    return _assemble(proto, context, seeds, outputs)


def _opset(proto) -> int:
    versions = [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")]
    opset = versions[0] if versions else 1
    if opset < _MIN_OPSET:
        raise ParameterError(
            f"model: ai.onnx opset {opset}; gradient needs opset {_MIN_OPSET} or later "
            "(convert it with onnx.version_converter.convert_version)"
        )
    return opset


def _rule_table(rules) -> dict:
    table = dict(RULES)
    if rules is None:
        return table
    if not isinstance(rules, dict):
        raise ParameterError(f"rules must be a dict {{op_type: rule}}, got {type(rules).__name__}")
    for op_type, rule in rules.items():
        if not isinstance(op_type, str) or not callable(rule):
            raise ParameterError(f"rules: expected op_type -> callable, got {op_type!r} -> {rule!r}")
    table.update(rules)
    return table


def _names(value, parameter) -> list[str]:
    names = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ParameterError(f"{parameter} must be a tensor name or a non-empty list of them, got {value!r}")
    return list(dict.fromkeys(names))


class _LazyValues(dict):
    """Constant values a rule may ask for: initializers, Constant nodes, and small constant subgraphs.

    Converted on first use only. A tensor computed from constants alone (torch's exporter
    builds pads and sizes that way) is folded with the ONNX reference evaluator.
    """

    _MAX_FOLDED_NODES = 64

    def __init__(self, graph, protos, opsets):
        super().__init__()
        self._graph = graph
        self._opsets = opsets
        self._protos = protos
        self._producer = {name: node for node in graph.node for name in node.output if name}
        self._inputs = {value.name for value in graph.input} - set(protos)

    def get(self, name, default=None):
        if name not in self:
            if name in self._protos:
                tensor = self._protos[name]
                if tensor.data_location == onnx.TensorProto.EXTERNAL:
                    return default
                self[name] = numpy_helper.to_array(tensor)
            elif name in self._producer:
                folded = self._fold(name)
                if folded is None:
                    return default
                self[name] = folded
        return super().get(name, default)

    def _fold(self, name):
        needed, stack, leaves = [], [name], set()
        while stack:
            current = stack.pop()
            if current in self._protos or current in leaves:
                leaves.add(current)
                continue
            node = self._producer.get(current)
            if node is None or current in self._inputs or node.domain not in ("", "ai.onnx") or any(
                    a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
                return None
            if node not in needed:
                needed.append(node)
                if len(needed) > self._MAX_FOLDED_NODES:
                    return None
                stack.extend(i for i in node.input if i)
            leaves.add(current)
        order = [node for node in self._graph.node if node in needed]
        from onnx.reference import ReferenceEvaluator

        if any(self._protos[leaf].data_location == onnx.TensorProto.EXTERNAL for leaf in leaves if leaf in self._protos):
            return None
        initializers = [numpy_helper.from_array(numpy_helper.to_array(self._protos[leaf]), leaf)
                        for leaf in leaves if leaf in self._protos]
        graph = helper.make_graph(order, "fold", [], [helper.make_value_info(name, onnx.TypeProto())],
                                  initializer=initializers)
        try:
            return ReferenceEvaluator(helper.make_model(graph, opset_imports=self._opsets)).run(None, {})[0]
        except Exception:  # noqa: BLE001 - a value that cannot be folded is simply not constant here
            return None


def _constant_values(proto) -> _LazyValues:
    graph = proto.graph
    protos = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    protos[node.output[0]] = attribute.t
    return _LazyValues(graph, protos, list(proto.opset_import))


def _reachable_from(graph, wrt_names, types) -> set[str]:
    """Float tensors that depend on a wrt tensor (integer and boolean tensors carry no gradient)."""
    reachable = set(wrt_names)
    for node in graph.node:
        if any(name in reachable for name in node_inputs(node)):
            for name in node.output:
                elem = types[name].type.tensor_type.elem_type if name in types else None
                if name and (elem is None or elem == 0 or elem in _FLOATS):
                    reachable.add(name)
    return reachable


def _reaching(graph, output_names) -> set[str]:
    """Tensors some differentiated output depends on."""
    useful = set(output_names)
    for node in reversed(graph.node):
        if any(name in useful for name in node.output):
            useful.update(node_inputs(node))
    return useful


def _outputs(graph, output, reachable, known, types) -> list[str]:
    if output is None:
        names = [value.name for value in graph.output if value.name in reachable
                 and value.type.tensor_type.elem_type in _FLOATS]
        if not names:
            raise ParameterError("output: no float graph output depends on the wrt tensors")
        return names
    names = _names(output, "output")
    for name in names:
        if name not in known:
            raise ParameterError(f"output: {name!r} is not a tensor of the model")
        if name not in reachable:
            raise ParameterError(f"output: {name!r} does not depend on any wrt tensor, or is not a float tensor")
        if name not in types:
            raise ParameterError(f"output: the type of {name!r} is unknown; declare it in the model's value_info")
    return names


def _accumulate(context, contributions, name):
    parts = contributions.get(name)
    if not parts:
        return None
    if len(parts) > 1:
        contributions[name] = [context.op("Sum", parts)]
    return contributions[name][0]


def _check_subgraphs(node, index):
    if any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attribute in node.attribute):
        raise ParameterError(
            f"gradient: node {node.op_type} {node.name or '#' + str(index)!r} has a subgraph; control flow "
            "is not differentiated"
        )


def _renamed(value: onnx.ValueInfoProto, name: str) -> onnx.ValueInfoProto:
    renamed = onnx.ValueInfoProto()
    renamed.CopyFrom(value)
    renamed.name = name
    return renamed


def _assemble(proto, context, seeds, outputs) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = edited.graph
    for index, node in context.forward_edits.items():
        graph.node[index].CopyFrom(node)
    graph.node.extend(context.nodes)
    graph.initializer.extend(context.initializers)
    graph.input.extend(seeds + context.extra_inputs)
    graph.output.extend(outputs)
    return edited
