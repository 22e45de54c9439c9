"""``split``: cut a model in two at chosen tensors, so that ``tail(head(x)) == model(x)``."""

from __future__ import annotations

import onnx

from ..errors import ParameterError
from .expose import value_info
from .inspect import resolve_tensors, tensors
from .source import open_model
from .topology import ancestors, node_inputs

__all__ = ["cut", "split"]

#: metadata that describes the model's input; it stays with the head
_INPUT_METADATA = {"preprocessing"}


def split(model, at, *, sample=None) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Cut ``model`` at tensors ``at`` into a head that computes them and a tail that consumes them.

    The head's inputs are the graph inputs it needs and its outputs are ``at``, in order. The
    tail's inputs are ``at``, then any graph input it also reads (a skip connection from the
    input, say); its outputs are the model's. Every path from the inputs to the outputs
    must cross the cut: a tail that would need another tensor computed before the cut is
    refused, naming that tensor so it can be added to ``at``. Shape computations are the
    exception: a tail that reads ``Shape(input)`` (a final ``Reshape`` to the batch size, as
    EfficientNet-PyTorch exports have) computes it again from the input. A cut tensor whose
    batch dimension shape inference lost gets the model's batch symbol, so that the tail runs
    the input and the cut tensor at the same batch.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged.
    at : str or list of str
        Node outputs of the main graph (not inside ``If``/``Loop``/``Scan`` bodies).
    sample : ndarray or dict, optional
        Inputs for one run, used only when shape inference misses a cut tensor's type.

    Returns
    -------
    head, tail : onnx.ModelProto

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> head, tail = split(DEFAULT_MODEL_PATH, at="/relu2/Relu_output_0")
    >>> [value.name for value in head.graph.output], [value.name for value in tail.graph.input]
    (['/relu2/Relu_output_0'], ['/relu2/Relu_output_0'])
    """
    return cut(open_model(model), at, sample=sample)


def cut(source, at, *, sample=None, parameter: str = "at") -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """:func:`split` on a :class:`ModelSource`; errors name ``parameter``."""
    graph = source.proto.graph
    names = list(dict.fromkeys(resolve_tensors(source, at, parameter=parameter, kinds={"node output"})))
    outputs = [value.name for value in graph.output]
    head_nodes = ancestors(graph, names)
    tail_nodes = ancestors(graph, outputs, stop_at=names)
    shapes = shape_nodes(graph)
    _check_separates(graph, names, outputs, head_nodes - shapes, tail_nodes, parameter)

    declared = _typed(source.proto, names, None)
    if any(value.type.tensor_type.elem_type == 0 for value in declared.values()):
        declared = _typed(source.proto, names, tensors(source, sample))  # one run fills the types in
    inputs = {value.name: value for value in graph.input}
    head = _part(source.proto, sorted(head_nodes), inputs, [declared[name] for name in names], "head")
    tail_inputs = [_with_batch(declared[name], _batch_symbol(graph)) for name in names]
    tail = _part(source.proto, sorted(tail_nodes), inputs, [value for value in graph.output], "tail",
                 leading_inputs=tail_inputs)
    for prop in source.proto.metadata_props:
        target = head if prop.key in _INPUT_METADATA else tail
        target.metadata_props.add(key=prop.key, value=prop.value)
    return head, tail


def _check_separates(graph, cut, outputs, head_nodes, tail_nodes, parameter) -> None:
    shared = head_nodes & tail_nodes
    if shared:
        crossing = sorted({name for index in shared for name in graph.node[index].output
                           if name and _read_outside(graph, name, tail_nodes - shared, outputs)})
        raise ParameterError(
            f"{parameter}: the cut at {cut} does not separate the graph: after it the model still needs "
            f"{crossing or 'tensors'} computed before it; add them to at=[...]"
        )
    read = {name for index in tail_nodes for name in node_inputs(graph.node[index])} | set(outputs)
    unused = [name for name in cut if name not in read]
    if unused:
        raise ParameterError(
            f"{parameter}: the outputs do not depend on {unused}, so a cut there does not separate the graph; "
            "cut at tensors on the path to the outputs"
        )


def shape_nodes(graph) -> set[int]:
    """Nodes that only compute shapes: ``Shape``/``Size`` of a tensor, and integer arithmetic on
    those results and constants. A tail may compute them again from the graph's inputs."""
    initializers = {tensor.name for tensor in graph.initializer}
    shape_tensors: set[str] = set()
    found: set[int] = set()
    for index, node in enumerate(graph.node):
        inputs = [name for name in node.input if name]
        if node.op_type in ("Shape", "Size") or (
            node.op_type in _SHAPE_ARITHMETIC and all(name in shape_tensors or name in initializers for name in inputs)
        ):
            found.add(index)
            shape_tensors.update(name for name in node.output if name)
    return found


#: ops that, on shape tensors and constants, give shape tensors
_SHAPE_ARITHMETIC = {
    "Constant", "Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Cast", "Add", "Sub", "Mul", "Div", "Floor",
    "Ceil", "Max", "Min", "Identity", "ConstantOfShape", "Range", "Equal", "Where", "ReduceProd", "Neg", "Abs",
}


def _batch_symbol(graph) -> str | None:
    """The symbolic first dimension of the graph's inputs: the batch, as the runtime finds it."""
    firsts = [value.type.tensor_type.shape.dim[0].dim_param for value in graph.input
              if value.type.tensor_type.shape.dim and value.type.tensor_type.shape.dim[0].dim_param]
    return max(dict.fromkeys(firsts), key=firsts.count) if firsts else None


def _with_batch(value: onnx.ValueInfoProto, symbol: str | None) -> onnx.ValueInfoProto:
    """``value`` with its first dimension named ``symbol`` when shape inference left it unknown."""
    dims = value.type.tensor_type.shape.dim
    if symbol is None or not dims or dims[0].dim_value or (dims[0].dim_param and not dims[0].dim_param.startswith("unk__")):
        return value
    renamed = onnx.ValueInfoProto()
    renamed.CopyFrom(value)
    renamed.type.tensor_type.shape.dim[0].dim_param = symbol
    return renamed


def _read_outside(graph, name, nodes, outputs) -> bool:
    return name in outputs or any(name in node_inputs(graph.node[index]) for index in nodes)


def _typed(proto, names, infos) -> dict[str, onnx.ValueInfoProto]:
    """A typed ValueInfo per cut tensor: from shape inference, else from ``infos`` (a run)."""
    from .expose import declared_types

    declared = declared_types(proto)
    declared.update({value.name: value for value in proto.graph.output})
    result = {}
    for name in names:
        if name in declared and declared[name].type.tensor_type.elem_type:
            result[name] = declared[name]
        elif infos is not None and name in infos:
            result[name] = value_info(infos[name])
        else:
            result[name] = onnx.helper.make_empty_tensor_value_info(name)
    return result


def _part(proto, indices, graph_inputs, outputs, label, leading_inputs=()) -> onnx.ModelProto:
    """A model of the nodes ``indices`` of ``proto``: its inputs are ``leading_inputs`` and the
    graph inputs those nodes read; initializers and value_info are those it uses."""
    graph = proto.graph
    nodes = [graph.node[index] for index in indices]
    produced = {name for node in nodes for name in node.output}
    read = {name for node in nodes for name in node_inputs(node)}
    leading = [value.name for value in leading_inputs]
    # An output that is itself a cut tensor is a tail input listed as an output: no node needed.
    part_outputs = list(outputs)
    initializers = [tensor for tensor in graph.initializer if tensor.name in read]
    init_names = {tensor.name for tensor in initializers}
    inputs = list(leading_inputs) + [
        value for name, value in graph_inputs.items()
        if name in read and name not in init_names and name not in leading
    ]
    known = produced | read | {value.name for value in part_outputs}
    part_graph = onnx.helper.make_graph(
        nodes,
        f"{graph.name or 'model'}_{label}",
        inputs,
        part_outputs,
        initializer=initializers,
        value_info=[value for value in graph.value_info if value.name in known and value.name not in leading],
    )
    part = onnx.helper.make_model(part_graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    part.functions.extend(proto.functions)
    part.producer_name = proto.producer_name
    return part
