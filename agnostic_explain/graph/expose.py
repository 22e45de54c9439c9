"""``expose``: a model that also outputs chosen intermediate tensors."""

from __future__ import annotations

import onnx

from ..errors import ParameterError
from .inspect import TensorInfo, resolve_tensors, tensors
from .source import open_model

__all__ = ["expose", "select_tensors", "value_info", "with_outputs"]


def expose(model, names, *, sample=None) -> onnx.ModelProto:
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
    sample : ndarray or dict, optional
        Inputs for one run, used only when shape inference misses an exposed tensor's type.

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
    present = {output.name for output in source.proto.graph.output}
    wanted = [name for name in select_tensors(source, names, sample=sample) if name not in present]
    known = declared_types(source.proto)
    if any(name not in known for name in wanted):
        # The ONNX checker refuses a graph output without dtype and rank: one run fills them in.
        infos = tensors(source, sample)
        known.update({name: value_info(infos[name]) for name in wanted if name not in known})
    return with_outputs(source.proto, [known[name] for name in wanted])


def select_tensors(source, names, *, parameter: str = "names", kinds=None, sample=None) -> list[str]:
    """The tensor names ``names`` selects ("all", a predicate or names), checked, in order, once each.

    ``kinds`` restricts given names to these :func:`resolve_tensors` kinds; errors name ``parameter``.
    """
    if isinstance(names, str) and names == "all":
        listed = [name for node in source.proto.graph.node for name in node.output if name]
    elif callable(names) and not isinstance(names, str):
        listed = [info.name for info in tensors(source, sample).values()
                  if info.kind in ("intermediate", "output") and names(info)]
        if not listed:
            raise ParameterError(f"{parameter}: the predicate selected no tensor")
    elif isinstance(names, (str, list, tuple)):
        listed = resolve_tensors(source, names, parameter=parameter, kinds=kinds)
    else:
        raise ParameterError(
            f"{parameter} must be a tensor name, a list of them, 'all' or a predicate, got {names!r}"
        )
    return list(dict.fromkeys(listed))


def with_outputs(proto: onnx.ModelProto, outputs) -> onnx.ModelProto:
    """A copy of ``proto`` with the ValueInfos ``outputs`` appended to its graph outputs."""
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    edited.graph.output.extend(outputs)
    return edited


def value_info(info: TensorInfo) -> onnx.ValueInfoProto:
    """A graph input/output declaration for ``info`` (dtype and, where known, shape)."""
    if info.dtype is None:
        return onnx.helper.make_empty_tensor_value_info(info.name)
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(info.dtype)
    shape = info.shape
    if shape is not None and info.source == "run":
        # A run's sizes may belong to its sample (a Reshape to an input's values): declare the rank only.
        shape = tuple(dim if isinstance(dim, str) else None for dim in shape)
    return onnx.helper.make_tensor_value_info(info.name, elem_type, list(shape) if shape is not None else None)


def declared_types(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """ValueInfos from shape inference with a dtype and a rank, which the ONNX checker requires
    of a graph input or output; the others are left out."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:
        inferred = proto
    return {value.name: value for value in inferred.graph.value_info
            if value.type.tensor_type.elem_type and value.type.tensor_type.HasField("shape")}
