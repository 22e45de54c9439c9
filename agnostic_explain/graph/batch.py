"""Make a model's batch dimension symbolic: a pure ModelProto -> ModelProto edit."""

from __future__ import annotations

import onnx

__all__ = ["make_batch_dynamic", "static_batch_size"]


def static_batch_size(model: onnx.ModelProto) -> int | None:
    """The static batch size of a model, or None if its batch is already dynamic.

    The batch is static when the first graph input (initializers excluded) of rank >= 1 has
    a static first dimension and no input has a symbolic first dimension. The size is that
    first dimension; inputs whose first dimension differs (a shared table, a scalar) are
    taken to have no batch axis.
    """
    initializers = {tensor.name for tensor in model.graph.initializer}
    firsts = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in initializers or not value.type.tensor_type.HasField("shape") or len(dims) == 0:
            continue
        if not dims[0].HasField("dim_value") or dims[0].dim_value < 1:
            return None  # symbolic, or a size ONNX Runtime reads as unknown (-1) or one of no rows
        firsts.append(dims[0].dim_value)
    return firsts[0] if firsts else None


def make_batch_dynamic(model: onnx.ModelProto, *, dim_name: str = "batch") -> onnx.ModelProto:
    """Return a copy of ``model`` whose graph inputs and outputs have a symbolic first dimension.

    Only first dimensions equal to the model's static batch size are renamed. Intermediate
    shape annotations (``value_info``) are dropped, since they would pin the old batch size;
    ONNX Runtime re-infers them. A graph that bakes the batch size into constants (a
    ``Reshape`` to ``[1, -1]``, say) still fails at other batch sizes: callers must verify.

    Parameters
    ----------
    model : onnx.ModelProto
        Left unchanged.
    dim_name : str
        Name of the new symbolic dimension.

    Returns
    -------
    onnx.ModelProto

    Examples
    --------
    >>> from onnx import helper, TensorProto
    >>> x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    >>> y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    >>> graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    >>> edited = make_batch_dynamic(helper.make_model(graph))
    >>> edited.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    'batch'
    """
    size = static_batch_size(model)
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    if size is None:
        return edited
    for value in list(edited.graph.input) + list(edited.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == size:
            dims[0].Clear()
            dims[0].dim_param = dim_name
    del edited.graph.value_info[:]
    return edited
