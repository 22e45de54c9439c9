"""Backward rules of data-movement operators: Reshape, Flatten, Squeeze, Unsqueeze, Transpose,
Concat, Split, Slice, Gather, GatherElements, Expand, Pad, Resize.

Where an operator copies elements by index (Gather, Slice with steps, Pad by reflection),
the gradient scatters g back through the same copy applied to a tensor of flat indices,
``Reshape(Range(0, Size(x)), Shape(x))``: one rule for every index pattern, negative
indices and repeats included (repeats are added with ScatterElements' reduction='add').
"""

from __future__ import annotations

import numpy as np
from onnx import helper


def reshape(ctx, node, grads):
    """Reshape, Flatten, Squeeze, Unsqueeze: g reshaped to Shape(x)."""
    return [ctx.reshape_like(grads[0], node.input[0])]


def transpose(ctx, node, grads):
    """d Transpose(perm) = Transpose(g, inverse(perm))."""
    rank = ctx.rank(node.input[0])
    perm = list(ctx.attribute("perm", list(reversed(range(rank)))))
    return [ctx.op("Transpose", [grads[0]], perm=[int(i) for i in np.argsort(perm)])]


def expand(ctx, node, grads):
    """d Expand = g summed over the broadcast axes."""
    return [ctx.unbroadcast(grads[0], node.input[0], node.output[0]), None]


def _axis_sizes(ctx, names, axis):
    static = [ctx.static_shape(name) for name in names]
    if all(shape is not None and shape[axis] is not None for shape in static):
        return ctx.int64([shape[axis] for shape in static])
    return ctx.op("Concat", [ctx.dim(name, axis) for name in names], axis=0)


def concat(ctx, node, grads):
    """d Concat = Split(g) at the inputs' sizes along the axis."""
    axis = ctx.attribute("axis") % ctx.rank(node.output[0])
    pieces = ctx.op("Split", [grads[0], _axis_sizes(ctx, node.input, axis)], n_outputs=len(node.input), axis=axis)
    pieces = pieces if isinstance(pieces, list) else [pieces]
    return [piece if needed else None for piece, needed in zip(pieces, ctx.needs)]


def split(ctx, node, grads):
    """d Split = Concat of the outputs' gradients (zeros for outputs that got none)."""
    axis = ctx.attribute("axis", 0) % ctx.rank(node.input[0])
    parts = [grad if grad is not None else ctx.zeros_like(name) for grad, name in zip(grads, node.output)]
    return [ctx.op("Concat", parts, axis=axis)]


def _flat_indices(ctx, x):
    size = ctx.op("Size", [x])
    return ctx.op("Reshape", [ctx.op("Range", [ctx.int64(0), size, ctx.int64(1)]), ctx.shape(x)])


def scatter_back(ctx, x, copied_indices, grad, repeats):
    """Add ``grad`` into zeros shaped like ``x`` at the flat indices ``copied_indices``."""
    if repeats and ctx.opset < 16:
        ctx.refuse("repeated indices need ScatterElements with reduction='add' (opset 16 or later)")
    flat = ctx.int64([-1])
    size = ctx.op("Reshape", [ctx.op("Size", [x]), flat])
    zeros = ctx.op("ConstantOfShape", [size], value=helper.make_tensor("", ctx.elem_type(x), [1], [0.0]))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [copied_indices, flat]),
                                           ctx.op("Reshape", [grad, flat])],
                       axis=0, reduction="add" if repeats else None)
    return ctx.op("Reshape", [scattered, ctx.shape(x)])


def _constant_list(ctx, node, index):
    if len(node.input) <= index or not node.input[index]:
        return None
    value = ctx.initializer(node.input[index])
    return None if value is None else [int(v) for v in value.reshape(-1)]


def slice_(ctx, node, grads):
    """d Slice: g zero-padded back into place (unit steps, constant starts/ends), else scattered."""
    x, g = node.input[0], grads[0]
    rank = ctx.rank(x)
    starts, ends = _constant_list(ctx, node, 1), _constant_list(ctx, node, 2)
    axes = _constant_list(ctx, node, 3)
    steps = _constant_list(ctx, node, 4)
    dynamic_axes = len(node.input) > 3 and node.input[3] and axes is None
    if starts is None or ends is None or dynamic_axes or (steps is not None and any(s != 1 for s in steps)) \
            or (len(node.input) > 4 and node.input[4] and steps is None):
        copied = ctx.op("Slice", [_flat_indices(ctx, x)] + list(node.input[1:]))
        return [scatter_back(ctx, x, copied, g, repeats=False)]
    axes = [a % rank for a in (axes if axes is not None else range(len(starts)))]
    shape = ctx.static_shape(x)
    if shape is not None and all(shape[a] is not None for a in axes):
        pads = [0] * (2 * rank)
        for axis, start, end in zip(axes, starts, ends):
            size = shape[axis]
            start = min(max(start + size if start < 0 else start, 0), size)
            end = min(max(end + size if end < 0 else end, 0), size)
            pads[axis], pads[rank + axis] = start, size - max(end, start)
        return [ctx.op("Pad", [g, ctx.int64(pads)])]
    sizes = ctx.op("Gather", [ctx.shape(x), ctx.int64(axes)], axis=0)
    zero = ctx.int64(0)

    def clamp(values):
        values = ctx.int64(values)
        wrapped = ctx.op("Where", [ctx.op("Less", [values, zero]), ctx.op("Add", [values, sizes]), values])
        return ctx.op("Min", [ctx.op("Max", [wrapped, zero]), sizes])

    begin = clamp(starts)
    end = ctx.op("Max", [clamp(ends), begin])
    after = ctx.op("Sub", [sizes, end])
    positions = ctx.int64(axes + [rank + a for a in axes])
    pads = ctx.op("ScatterElements", [ctx.int64([0] * (2 * rank)), positions,
                                      ctx.op("Concat", [begin, after], axis=0)], axis=0)
    return [ctx.op("Pad", [g, pads])]


def gather(ctx, node, grads):
    """d Gather: g added back at the gathered positions (repeats add up, as in torch)."""
    x = node.input[0]
    copied = ctx.op("Gather", [_flat_indices(ctx, x), node.input[1]], axis=ctx.attribute("axis", 0))
    indices = ctx.initializer(node.input[1])
    repeats = indices is None or len(np.unique(indices)) != indices.size
    return [scatter_back(ctx, x, copied, grads[0], repeats), None]


def gather_elements(ctx, node, grads):
    """d GatherElements = ScatterElements(zeros, indices, g, reduction='add')."""
    x = node.input[0]
    copied = ctx.op("GatherElements", [_flat_indices(ctx, x), node.input[1]], axis=ctx.attribute("axis", 0))
    return [scatter_back(ctx, x, copied, grads[0], repeats=True), None]


def pad(ctx, node, grads):
    """d Pad: the unpadded window of g (constant mode), or g scattered back (reflect, edge, wrap)."""
    x, g = node.input[0], grads[0]
    if len(node.input) > 2 and node.input[2] and ctx.needs[2]:
        ctx.refuse("the padding value depends on a wrt tensor; its gradient is not built")
    rank = ctx.rank(x)
    mode = ctx.attribute("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = _constant_list(ctx, node, 1)
    axes = _constant_list(ctx, node, 3)
    if mode != "constant" or pads is None or min(pads) < 0:
        if mode == "constant":
            ctx.refuse("constant padding with negative or run-time pads is not supported")
        copied = ctx.op("Pad", [_flat_indices(ctx, x)] + [name for name in node.input[1:2]]
                        + ([""] if len(node.input) > 3 else []) + list(node.input[3:4]), mode=mode)
        return [scatter_back(ctx, x, copied, g, repeats=True)] + [None] * (len(node.input) - 1)
    axes = [a % rank for a in (axes if axes is not None else range(rank))]
    begin = [0] * rank
    for axis, value in zip(axes, pads[: len(axes)]):
        begin[axis] = value
    ends = ctx.op("Add", [ctx.int64(begin), ctx.shape(x)])
    return [ctx.op("Slice", [g, ctx.int64(begin), ends])] + [None] * (len(node.input) - 1)


def _resize_matrix(ctx, node, length, out_length, scale):
    """(length, out_length) matrix R with resize(v) = v @ R along one axis, from the ONNX reference."""
    from onnx.reference import ReferenceEvaluator

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inputs = ["x", "", "scales"] if scale is not None else ["x", "", "", "sizes"]
    resize = helper.make_node("Resize", inputs, ["y"], **attributes)
    basis = np.eye(length, dtype=np.float64)
    feeds = {"x": basis}
    if scale is not None:
        feeds["scales"] = np.array([1.0, scale], dtype=np.float32)
    else:
        feeds["sizes"] = np.array([length, out_length], dtype=np.int64)
    graph = helper.make_graph([resize], "r", [helper.make_tensor_value_info("x", 11, None)],
                              [helper.make_tensor_value_info("y", 11, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(ctx.opset, 13))])
    result = ReferenceEvaluator(model).run(None, feeds)[0]
    if result.shape != (length, out_length):
        ctx.refuse(f"the reference Resize gave shape {result.shape}, expected {(length, out_length)}")
    return result


def resize(ctx, node, grads):
    """d Resize (nearest, linear, cubic): multiply g by each resized axis' interpolation matrix, transposed.

    Resize is linear and separable, so along each of the last two axes it is ``v @ R``; R is
    built at graph-edit time by running the ONNX reference Resize on an identity matrix, so
    every coordinate mode and rounding rule is the one the spec defines. Needs static sizes
    on the resized axes, and only the last two axes may be resized.
    """
    x, y, g = node.input[0], node.output[0], grads[0]
    if any(ctx.needs[1:]):
        ctx.refuse("the roi or scales depend on a wrt tensor; only the data input is differentiated")
    mode = ctx.attribute("coordinate_transformation_mode", b"half_pixel")
    if (mode.decode() if isinstance(mode, bytes) else mode) == "tf_crop_and_resize":
        ctx.refuse("tf_crop_and_resize is not supported")
    if ctx.attribute("axes") is not None or ctx.attribute("keep_aspect_ratio_policy", b"stretch") not in (
            b"stretch", "stretch"):
        ctx.refuse("the axes and keep_aspect_ratio_policy attributes are not supported")
    in_shape, out_shape = ctx.static_shape(x), ctx.static_shape(y)
    scales = _constant_list_float(ctx, node, 2)
    sizes = _constant_list(ctx, node, 3) or None
    if in_shape is None or out_shape is None:
        ctx.refuse("Resize needs a known rank")
    rank = len(in_shape)
    from_sizes = scales is None and sizes is None  # run-time sizes: the static output shape tells them
    grad = g
    for axis in range(rank):
        if from_sizes:
            if axis < rank - 2:
                continue  # checked at run time by the final Reshape to Shape(x)
            if in_shape[axis] is None or out_shape[axis] is None:
                ctx.refuse(f"axis {axis}: the sizes are computed at run time and the size is not static")
            changes = in_shape[axis] != out_shape[axis]
        else:
            changes = (scales[axis] != 1.0) if scales else (sizes[axis] != in_shape[axis])
        if not changes:
            continue
        if axis < rank - 2:
            ctx.refuse(f"axis {axis} is resized; only the last two axes are supported")
        if in_shape[axis] is None or out_shape[axis] is None:
            ctx.refuse(f"axis {axis} has a dynamic size")
        if from_sizes:
            length = out_shape[axis]
        else:
            length = sizes[axis] if sizes else int(np.floor(in_shape[axis] * scales[axis]))
        matrix = _resize_matrix(ctx, node, in_shape[axis], length, scales[axis] if scales else None)
        if axis == rank - 1:
            grad = ctx.op("MatMul", [grad, ctx.constant(matrix.T, like=x)])
        else:
            grad = ctx.op("MatMul", [ctx.constant(matrix, like=x), grad])
    if from_sizes:
        grad = ctx.op("Reshape", [grad, ctx.shape(x)])
    return [grad] + [None] * (len(node.input) - 1)


def _constant_list_float(ctx, node, index):
    if len(node.input) <= index or not node.input[index]:
        return None
    value = ctx.initializer(node.input[index])
    return None if value is None or value.size == 0 else [float(v) for v in value.reshape(-1)]
