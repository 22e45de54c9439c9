"""``fuse_perturbation``: a model that builds its own perturbed rows and returns target scalars.

A perturbation method sends the runtime full rows: for occlusion of one 224x224 image, 600 KB
per row, almost all of it a copy of the same image. The fused model takes the explained rows
once, plus a compact mask per perturbation (a few hundred bytes), composes the perturbed rows
inside the graph, runs the original model on them, and returns one scalar per row, the
target. On a GPU only the masks go to the device and only the scalars come back.

Graph inputs of a fused model (``batch`` is the number of perturbed rows):

=====================  ============================  =========================================
name                   shape                         meaning
=====================  ============================  =========================================
``ae_rows``            (n_rows, *row)                the explained rows (model layout)
``ae_fill``            (n_fill, *row)                the replacement rows (baselines)
``ae_owner``           (batch,) int64                explained row of each perturbed row
``ae_fill_index``      (batch,) int64                fill row of each perturbed row
``ae_keep``            (batch, n_groups) bool        "groups": which groups keep the input
``ae_segments``        (*row) or (n_seg, *row) int64 "groups": each element's group id
``ae_segment_index``   (batch,) int64                "groups", per-row segments: segment row
``ae_grid``            (batch, c0, c1) float32       "separable": the coarse mask
``ae_weights_0``/``1`` (batch, size, c) float32      "separable": upsampling per plane axis
``ae_position``        (batch,) int64                flat index of the target in an output row
=====================  ============================  =========================================

A "groups" row is ``where(keep[segment of element], row, fill)``; a "separable" row is
``(row - fill) * mask + fill`` with ``mask = weights_0 @ grid @ weights_1^T`` broadcast over
the channel axis (RISE's bilinear upsampling, which is separable). The model's other inputs
stay inputs of the fused model, unchanged.
"""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from ..errors import ParameterError
from .source import open_model

__all__ = ["BLENDS", "FUSED_INPUTS", "TARGET", "fuse_perturbation"]

#: ways a perturbed row is composed from its explained row, its fill row and a compact mask
BLENDS = ("groups", "groups_per_row", "separable")
TARGET = "ae_target"
ROWS, FILL, OWNER, FILL_INDEX = "ae_rows", "ae_fill", "ae_owner", "ae_fill_index"
KEEP, SEGMENTS, SEGMENT_INDEX = "ae_keep", "ae_segments", "ae_segment_index"
GRID, WEIGHTS_0, WEIGHTS_1, POSITION = "ae_grid", "ae_weights_0", "ae_weights_1", "ae_position"
#: the fused inputs each blend reads, besides ROWS, FILL, OWNER and FILL_INDEX
FUSED_INPUTS = {
    "groups": (KEEP, SEGMENTS),
    "groups_per_row": (KEEP, SEGMENTS, SEGMENT_INDEX),
    "separable": (GRID, WEIGHTS_0, WEIGHTS_1),
}
#: Unsqueeze/Squeeze with axes as an input and Softmax over one axis
MIN_OPSET = 13
_BATCH = "ae_batch"


def fuse_perturbation(
    model, *, input: str, output: str, blend: str, channel_axis: int | None = None,
    output_transform: str | None = None, select: bool = True,
) -> onnx.ModelProto:
    """Return a copy of ``model`` that composes perturbed rows of ``input`` and selects targets.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged. Its ``input`` must have the batch axis first.
    input : str
        The explained input; it becomes an intermediate tensor of the fused graph.
    output : str
        The explained output, batch axis first.
    blend : {"groups", "groups_per_row", "separable"}
        How rows are composed (see the module docstring).
    channel_axis : int or None
        "separable" only: the axis of one row (batch excluded) the 2-D mask broadcasts over,
        or None for rows of shape (H, W).
    output_transform : None, "softmax" or "sigmoid"
        Applied to ``output`` before the target is selected (softmax over axis 1).
    select : bool
        True: the single output is ``ae_target`` of shape (batch,), the output's element at
        ``ae_position`` per row. False: the model's ``output`` is returned whole (for targets
        a graph cannot compute, such as Python callables).

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ParameterError
        Unknown input, output or blend; an opset below 13; a name the fused inputs use is
        already taken in the model.

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> fused = fuse_perturbation(DEFAULT_MODEL_PATH, input="image", output="logits", blend="groups")
    >>> [value.name for value in fused.graph.input], [value.name for value in fused.graph.output]
    (['ae_rows', 'ae_fill', 'ae_owner', 'ae_fill_index', 'ae_keep', 'ae_segments', 'ae_position'], ['ae_target'])
    """
    if blend not in BLENDS:
        raise ParameterError(f"blend must be one of {BLENDS}, got {blend!r}")
    if output_transform not in (None, "softmax", "sigmoid"):
        raise ParameterError(f"output_transform must be None, 'softmax' or 'sigmoid', got {output_transform!r}")
    proto = open_model(model).proto
    graph = proto.graph
    opset = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise ParameterError(f"fusing perturbations needs opset >= {MIN_OPSET}; the model has opset {opset}")
    inputs = {value.name: value for value in graph.input}
    if input not in inputs:
        raise ParameterError(f"input: the model has no input {input!r}; inputs are {sorted(inputs)}")
    outputs = {value.name: value for value in graph.output}
    if output not in outputs:
        raise ParameterError(f"output: the model has no output {output!r}; outputs are {sorted(outputs)}")
    _check_free_names(graph)

    explained = inputs[input].type.tensor_type
    dims = explained.shape.dim
    if not explained.HasField("shape") or len(dims) < 2:
        raise ParameterError(f"input {input!r} needs a known rank of at least 2 (batch, ...) to be fused")
    row = [_dim(dim) for dim in dims[1:]]
    dtype = explained.elem_type
    if blend == "separable" and dtype not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
        raise ParameterError(
            f"blend='separable' needs a floating-point input; {input!r} has dtype {TensorProto.DataType.Name(dtype)}"
        )

    new_inputs = [
        helper.make_tensor_value_info(ROWS, dtype, ["ae_n_rows"] + row),
        helper.make_tensor_value_info(FILL, dtype, ["ae_n_fill"] + row),
        helper.make_tensor_value_info(OWNER, TensorProto.INT64, [_BATCH]),
        helper.make_tensor_value_info(FILL_INDEX, TensorProto.INT64, [_BATCH]),
    ]
    nodes = [
        helper.make_node("Gather", [ROWS, OWNER], ["ae_x"], axis=0),
        helper.make_node("Gather", [FILL, FILL_INDEX], ["ae_f"], axis=0),
    ]
    if blend == "separable":
        new_inputs += [
            helper.make_tensor_value_info(GRID, TensorProto.FLOAT, [_BATCH, "ae_c0", "ae_c1"]),
            helper.make_tensor_value_info(WEIGHTS_0, TensorProto.FLOAT, [_BATCH, "ae_s0", "ae_c0"]),
            helper.make_tensor_value_info(WEIGHTS_1, TensorProto.FLOAT, [_BATCH, "ae_s1", "ae_c1"]),
        ]
        nodes += _separable_nodes(input, dtype, channel_axis, len(row))
    else:
        per_row = blend == "groups_per_row"
        new_inputs += [
            helper.make_tensor_value_info(KEEP, TensorProto.BOOL, [_BATCH, "ae_n_groups"]),
            helper.make_tensor_value_info(SEGMENTS, TensorProto.INT64, (["ae_n_segments"] if per_row else []) + row),
        ]
        if per_row:
            new_inputs.append(helper.make_tensor_value_info(SEGMENT_INDEX, TensorProto.INT64, [_BATCH]))
        nodes += _group_nodes(input, per_row)

    final_outputs = [outputs[output]]
    if select:
        new_inputs.append(helper.make_tensor_value_info(POSITION, TensorProto.INT64, [_BATCH]))
        nodes_after = _select_nodes(output, output_transform)
        out_type = outputs[output].type.tensor_type.elem_type
        final_outputs = [helper.make_tensor_value_info(TARGET, out_type, [_BATCH])]
    else:
        nodes_after = []
        if output_transform is not None:
            raise ParameterError("output_transform is applied by the caller when select=False")
    others = [value for value in graph.input if value.name != input]
    fused_graph = helper.make_graph(
        nodes + list(graph.node) + nodes_after, graph.name + "_fused", new_inputs + others, final_outputs,
        initializer=list(graph.initializer) + _constants(), value_info=list(graph.value_info),
    )
    fused_graph.sparse_initializer.extend(graph.sparse_initializer)
    fused = onnx.ModelProto()
    fused.CopyFrom(proto)
    fused.graph.CopyFrom(fused_graph)
    return fused


def _dim(dim):
    return dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)


def _check_free_names(graph) -> None:
    taken = {value.name for value in graph.input} | {value.name for value in graph.output}
    taken |= {tensor.name for tensor in graph.initializer}
    taken |= {name for node in graph.node for name in node.output}
    clash = sorted(name for name in taken if name.startswith("ae_"))
    if clash:
        raise ParameterError(f"the model already uses tensor names the fused graph needs: {clash[:5]}")


def _constants() -> list:
    """Shape constants: ``[-1]`` for flattening, and axis 1 for the target column."""
    return [
        helper.make_tensor("ae_minus_one", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("ae_axis_1", TensorProto.INT64, [1], [1]),
    ]


def _group_nodes(input: str, per_row: bool) -> list:
    """``input = where(keep[:, segments], x, fill)``: one Gather when all rows share the segments."""
    if not per_row:
        # Gather over axis 1 of keep (batch, n_groups) by indices of the row's shape -> (batch, *row)
        return [
            helper.make_node("Gather", [KEEP, SEGMENTS], ["ae_mask"], axis=1),
            helper.make_node("Where", ["ae_mask", "ae_x", "ae_f"], [input]),
        ]
    return [
        helper.make_node("Gather", [SEGMENTS, SEGMENT_INDEX], ["ae_segments_rows"], axis=0),
        helper.make_node("Shape", [OWNER], ["ae_batch_shape"]),
        helper.make_node("Concat", ["ae_batch_shape", "ae_minus_one"], ["ae_flat_shape"], axis=0),
        helper.make_node("Reshape", ["ae_segments_rows", "ae_flat_shape"], ["ae_segments_flat"]),
        helper.make_node("GatherElements", [KEEP, "ae_segments_flat"], ["ae_mask_flat"], axis=1),
        helper.make_node("Shape", ["ae_x"], ["ae_row_shape"]),
        helper.make_node("Reshape", ["ae_mask_flat", "ae_row_shape"], ["ae_mask"]),
        helper.make_node("Where", ["ae_mask", "ae_x", "ae_f"], [input]),
    ]


def _separable_nodes(input: str, dtype: int, channel_axis: int | None, rank: int) -> list:
    """``input = (x - fill) * mask + fill``, ``mask = weights_0 @ grid @ weights_1^T``."""
    planes = rank - (channel_axis is not None)
    if planes != 2:
        raise ParameterError(
            f"blend='separable' needs rows with two spatial axes (and at most one channel axis); got {rank} axes "
            f"with channel_axis={channel_axis}"
        )
    nodes = [
        helper.make_node("MatMul", [WEIGHTS_0, GRID], ["ae_half"]),
        helper.make_node("Transpose", [WEIGHTS_1], ["ae_weights_1_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["ae_half", "ae_weights_1_t"], ["ae_plane"]),
    ]
    mask = "ae_plane"
    if channel_axis is not None:
        nodes.append(helper.make_node("Constant", [], ["ae_channel"], value=helper.make_tensor(
            "ae_channel_value", TensorProto.INT64, [1], [channel_axis + 1])))
        nodes.append(helper.make_node("Unsqueeze", [mask, "ae_channel"], ["ae_mask_float"]))
        mask = "ae_mask_float"
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [mask], ["ae_mask_cast"], to=dtype))
        mask = "ae_mask_cast"
    return nodes + [
        helper.make_node("Sub", ["ae_x", "ae_f"], ["ae_difference"]),
        helper.make_node("Mul", ["ae_difference", mask], ["ae_scaled"]),
        helper.make_node("Add", ["ae_scaled", "ae_f"], [input]),
    ]


def _select_nodes(output: str, output_transform: str | None) -> list:
    """``ae_target[i] = transform(output)[i].flat[position[i]]``."""
    nodes, source = [], output
    if output_transform == "softmax":
        nodes.append(helper.make_node("Softmax", [source], ["ae_transformed"], axis=1))
        source = "ae_transformed"
    elif output_transform == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", [source], ["ae_transformed"]))
        source = "ae_transformed"
    nodes += [
        helper.make_node("Shape", [OWNER], ["ae_target_batch"]),
        helper.make_node("Concat", ["ae_target_batch", "ae_minus_one"], ["ae_target_flat_shape"], axis=0),
        helper.make_node("Reshape", [source, "ae_target_flat_shape"], ["ae_output_flat"]),
        helper.make_node("Unsqueeze", [POSITION, "ae_axis_1"], ["ae_position_column"]),
        helper.make_node("GatherElements", ["ae_output_flat", "ae_position_column"], ["ae_target_column"], axis=1),
        helper.make_node("Squeeze", ["ae_target_column", "ae_axis_1"], [TARGET]),
    ]
    return nodes
