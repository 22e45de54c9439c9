"""Make a model's batch dimension symbolic: a pure ModelProto -> ModelProto edit."""

from __future__ import annotations

import onnx

__all__ = ["make_batch_dynamic", "static_batch_size"]


def static_batch_size(model: onnx.ModelProto) -> int | None:
    """The static batch size shared by the graph inputs, or None if the batch is already dynamic.

    A model has a static batch when no graph input has a symbolic first dimension and every
    input of rank >= 1 that is not an initializer has the same static first dimension.
    """
    initializers = {tensor.name for tensor in model.graph.initializer}
    firsts = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if not value.type.tensor_type.HasField("shape") or len(dims) == 0:
            continue
        first = dims[0]
        if not first.HasField("dim_value"):
            return None
        firsts.append(first.dim_value)
    if firsts and all(size == firsts[0] for size in firsts):
        return firsts[0]
    return None


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
