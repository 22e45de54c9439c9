"""``layers`` and ``tensors``: a model's nodes and tensors, with shapes, as a readable table."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import ModelExecutionError, ParameterError
from ..tables import NamedRows, format_shape, text_table
from .source import ModelSource, open_model
from .topology import consumers, inner_tensors, node_names, producers

__all__ = ["Layer", "LayerTable", "TensorInfo", "layers", "resolve_tensors", "tensors"]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of the main graph.

    Attributes
    ----------
    name : str
    dtype : numpy.dtype or None
    shape : tuple or None
        Ints for static dimensions, strings for symbolic ones, None for unknown ones; None
        when even the rank is unknown.
    kind : {"input", "initializer", "intermediate", "output"}
    producer : str or None
        The display name of the node that computes it.
    consumers : tuple of str
    source : {"declared", "shape inference", "run", "unknown"}
        Where dtype and shape came from.
    """

    name: str
    dtype: np.dtype | None
    shape: tuple | None
    kind: str
    producer: str | None
    consumers: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Layer:
    """One node: its op, tensors, shapes and parameter count (elements of its initializer inputs)."""

    index: int
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    input_shapes: tuple
    output_shapes: tuple
    n_params: int


@dataclass(frozen=True)
class LayerTable(NamedRows):
    """The result of :func:`layers`: ``layers`` in graph order and ``tensors`` by name.

    ``str(table)`` is a text table; iterating yields the layers.
    """

    layers: tuple[Layer, ...]
    tensors: dict
    _rows = "layers"

    @property
    def n_params(self) -> int:
        return sum(int(np.prod(info.shape)) for info in self.tensors.values()
                   if info.kind == "initializer" and info.shape is not None)

    def __str__(self) -> str:
        # "output tensor" holds the names that split(at=), layer= and --highlight take
        rows = [("#", "node", "op", "inputs", "output tensor", "outputs", "params")]
        for layer in self.layers:
            rows.append((
                str(layer.index),
                layer.name,
                layer.op_type,
                " ".join(format_shape(shape) for shape in layer.input_shapes),
                " ".join(layer.outputs),
                " ".join(format_shape(shape) for shape in layer.output_shapes),
                f"{layer.n_params:,}" if layer.n_params else "",
            ))
        lines = text_table(rows)
        lines.append(f"{len(self.layers)} nodes, {self.n_params:,} parameters")
        return "\n".join(lines)


#: ``fill(source, names, sample) -> {name: (dtype, shape)}``: the dtype and shape of tensors that
#: shape inference misses, from one run of the model. Graph functions never run a model
#: themselves; the runtime installs its probe here when it is imported
#: (:func:`agnostic_explain.runtime.probes.fill_types`).
_type_filler = None


def use_type_filler(fill) -> None:
    """Install the function that fills missing tensor types by a run (see ``_type_filler``)."""
    global _type_filler
    _type_filler = fill


def tensors(model, sample=None) -> dict[str, TensorInfo]:
    """Every tensor of the main graph, by name, with dtype and shape.

    Shapes come from ONNX shape inference, symbolic dimensions kept. Tensors it misses get
    their dtype and shape from one run on ``sample`` (random rows when None), the batch
    axis written as the inputs' batch symbol.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    sample : ndarray or dict of str to ndarray, optional
        Inputs for the filling run (the first input, or all inputs by name).

    Returns
    -------
    dict of str to TensorInfo
    """
    source = open_model(model)
    graph = source.proto.graph
    types = _inferred_types(source.proto)
    names = node_names(graph)
    made_by = {tensor: names[index] for tensor, index in producers(graph).items()}
    read_by = {tensor: tuple(names[index] for index in indices) for tensor, indices in consumers(graph).items()}
    outputs = {value.name for value in graph.output}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    found = {}

    def add(name, kind, dtype, shape, origin):
        found[name] = TensorInfo(name, dtype, shape, kind, made_by.get(name), read_by.get(name, ()), origin)

    for tensor in graph.initializer:
        add(tensor.name, "initializer", _np_dtype(tensor.data_type), tuple(tensor.dims), "declared")
    for value in graph.input:
        if value.name not in initializers:
            add(value.name, "input", *_type_of(value), "declared")
    for node in graph.node:
        for name in node.output:
            if name and name not in found:
                dtype, shape = types.get(name, (None, None))
                kind = "output" if name in outputs else "intermediate"
                add(name, kind, dtype, shape, "shape inference" if dtype is not None else "unknown")
    missing = [name for name, info in found.items() if info.dtype is None or info.shape is None]
    if missing:
        if _type_filler is None:
            raise ModelExecutionError(f"shape inference could not type {missing}, and no runtime is loaded to run the model")
        for name, (dtype, shape) in _type_filler(source, missing, sample).items():
            info = found[name]
            add(name, info.kind, dtype, shape, "run")
    return found


def layers(model, sample=None) -> LayerTable:
    """A table of the model's nodes: op type, input and output shapes, parameter count.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    sample : ndarray or dict, optional
        Inputs for one run that fills in shapes inference misses (see :func:`tensors`).

    Returns
    -------
    LayerTable

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> table = layers(DEFAULT_MODEL_PATH)
    >>> table[0].op_type, table[0].output_shapes
    ('Conv', (('batch', 16, 8, 8),))
    """
    source = open_model(model)
    found = tensors(source, sample)
    rows = []
    for index, (node, name) in enumerate(zip(source.proto.graph.node, node_names(source.proto.graph))):
        ins = tuple(value for value in node.input if value)
        outs = tuple(value for value in node.output if value)
        params = sum(int(np.prod(found[value].shape)) for value in ins
                     if value in found and found[value].kind == "initializer")
        rows.append(Layer(
            index=index, name=name, op_type=node.op_type, inputs=ins, outputs=outs,
            input_shapes=tuple(found[value].shape if value in found else None for value in ins),
            output_shapes=tuple(found[value].shape for value in outs),
            n_params=params,
        ))
    return LayerTable(layers=tuple(rows), tensors=found)


def resolve_tensors(source: ModelSource, names, *, parameter: str = "names", kinds=None) -> list[str]:
    """Check tensor ``names`` exist in the main graph; suggest close names for unknown ones.

    Parameters
    ----------
    kinds : set of str, optional
        Allowed :attr:`TensorInfo.kind` values.
    """
    graph = source.proto.graph
    known = {value.name: "input" for value in graph.input}
    known.update({tensor.name: "initializer" for tensor in graph.initializer})
    known.update({name: "node output" for node in graph.node for name in node.output if name})
    inner = inner_tensors(graph)
    listed = [names] if isinstance(names, str) else list(names)
    if not listed:
        raise ParameterError(f"{parameter}: no tensor names given")
    for name in listed:
        if not isinstance(name, str):
            raise ParameterError(f"{parameter}: tensor names must be strings, got {name!r}")
        if name in inner and name not in known:
            raise ParameterError(
                f"{parameter}: tensor {name!r} is defined inside the body of {inner[name]}; only "
                "tensors of the main graph can be used, not ones inside If/Loop/Scan bodies"
            )
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ParameterError(
                f"{parameter}: the model has no tensor {name!r}{hint} (graph.layers(model) lists them)"
            )
        if kinds is not None and known[name] not in kinds:
            raise ParameterError(f"{parameter}: {name!r} is a graph {known[name]}; expected a {' or '.join(sorted(kinds))}")
    return listed


def _np_dtype(elem_type: int) -> np.dtype | None:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)) if elem_type else None
    except (KeyError, TypeError, ValueError):
        return None


def _type_of(value: onnx.ValueInfoProto) -> tuple:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.elem_type:
        return None, None
    if not tensor_type.HasField("shape"):
        return _np_dtype(tensor_type.elem_type), None
    shape = tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None) for dim in tensor_type.shape.dim
    )
    return _np_dtype(tensor_type.elem_type), shape


def _inferred_types(proto: onnx.ModelProto) -> dict[str, tuple]:
    """Dtype and shape per tensor from ONNX shape inference (data-less protos stay small, so
    models whose weights are external, however large, infer in memory)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except Exception:  # an op shape inference does not know: fall back to what is declared
        inferred = proto
    graph = inferred.graph
    return {value.name: _type_of(value) for value in [*graph.value_info, *graph.output, *graph.input]}
