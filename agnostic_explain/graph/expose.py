"""``expose``: a model that also outputs chosen intermediate tensors."""

from __future__ import annotations

import onnx

from ..errors import ParameterError
from .inspect import TensorInfo, resolve_tensors, tensors
from .source import open_model

__all__ = ["expose", "value_info"]


def expose(model, names) -> onnx.ModelProto:
    """Return a copy of ``model`` whose outputs also include tensors ``names``.

    The original outputs come first, unchanged; the exposed tensors follow in the order asked.
    ONNX Runtime never fuses away a graph output, so values are the same with graph
    optimizations on or off. External weights stay references to the model's folder: load
    the result with ``load(proto, external_data_dir=folder)``.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged.
    names : str, list of str, "all" or callable
        Tensor names; ``"all"`` for every node output of the main graph; or a predicate
        ``f(TensorInfo) -> bool`` over the node outputs (see :func:`tensors`).

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> exposed = expose(DEFAULT_MODEL_PATH, lambda info: info.producer.endswith("Relu"))
    >>> [output.name for output in exposed.graph.output]
    ['logits', '/relu1/Relu_output_0', '/relu2/Relu_output_0', '/relu3/Relu_output_0']
    """
    source = open_model(model)
    graph = source.proto.graph
    if isinstance(names, str) and names == "all":
        listed = [name for node in graph.node for name in node.output if name]
    elif callable(names) and not isinstance(names, str):
        listed = [info.name for info in tensors(source).values()
                  if info.kind in ("intermediate", "output") and names(info)]
        if not listed:
            raise ParameterError("names: the predicate selected no tensor")
    else:
        listed = resolve_tensors(source, names, parameter="names")
    present = {output.name for output in graph.output}
    wanted = [name for name in dict.fromkeys(listed) if name not in present]
    known = _declared_types(source.proto)
    edited = onnx.ModelProto()
    edited.CopyFrom(source.proto)
    for name in wanted:
        edited.graph.output.append(known.get(name) or onnx.helper.make_empty_tensor_value_info(name))
    return edited


def value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    """A graph input/output declaration for ``info`` (dtype and, where known, shape)."""
    if info.dtype is None:
        return onnx.helper.make_empty_tensor_value_info(info.name)
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(info.dtype)
    return onnx.helper.make_tensor_value_info(info.name, elem_type, list(info.shape) if info.shape is not None else None)


def _declared_types(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ValueInfos from shape inference, falling back to none (ONNX Runtime infers the rest)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        inferred = proto
    return {value.name: value for value in inferred.graph.value_info if value.type.tensor_type.elem_type}
