"""Backward rules of reductions and pools: ReduceSum/Mean/Max/Min, GlobalAveragePool,
GlobalMaxPool, AveragePool, MaxPool.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from .linear import _geometry, transposed_window


def _reduce_axes(ctx, node):
    """The reduced axes as sorted non-negative ints, or None for 'all axes'; refuses dynamic axes."""
    rank = ctx.rank(node.input[0])
    axes = ctx.attribute("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        value = ctx.initializer(node.input[1])
        if value is None:
            ctx.refuse("the reduced axes are computed at run time; only constant axes are supported")
        axes = value.reshape(-1).tolist()
    if not axes:
        return None if not ctx.attribute("noop_with_empty_axes", 0) else []
    return sorted(int(axis) % rank for axis in axes)


def _restored(ctx, node, grad, axes):
    """``grad`` of a reduction with its reduced axes back as size-1 axes."""
    return grad if ctx.attribute("keepdims", 1) else ctx.unsqueeze(grad, axes)


def _count(ctx, x, axes):
    static = ctx.static_shape(x)
    if static is not None and all(static[axis] is not None for axis in axes):
        return ctx.constant(1.0 / float(np.prod([static[axis] for axis in axes])), like=x)
    sizes = ctx.op("Gather", [ctx.shape(x), ctx.int64(axes)], axis=0)
    count = ctx.op("Cast", [ctx.reduce("ReduceProd", sizes, [0], keepdims=1)], to=ctx.elem_type(x))
    return ctx.op("Reciprocal", [count])


def _spread(ctx, node, grads, mean: bool):
    """g broadcast back over the reduced axes, divided by their size for a mean."""
    x = node.input[0]
    axes = _reduce_axes(ctx, node)
    if axes == []:
        return [grads[0]]
    axes = list(range(ctx.rank(x))) if axes is None else axes
    restored = _restored(ctx, node, grads[0], axes)
    if mean:
        restored = ctx.mul(restored, _count(ctx, x, axes))
    return [ctx.op("Expand", [restored, ctx.shape(x)])]


def reduce_sum(ctx, node, grads):
    """d ReduceSum = g broadcast back over the reduced axes."""
    return _spread(ctx, node, grads, mean=False)


def reduce_mean(ctx, node, grads):
    """d ReduceMean = g / n broadcast back over the reduced axes (n read at run time when dynamic)."""
    return _spread(ctx, node, grads, mean=True)


def _extremum(ctx, x, y_kept, grad_kept, axes):
    hits = ctx.mask(ctx.op("Equal", [x, y_kept]), x)
    count = ctx.reduce("ReduceSum", hits, axes, keepdims=1)
    return ctx.mul(hits, ctx.op("Div", [grad_kept, count]))


def reduce_extremum(ctx, node, grads):
    """d ReduceMax/ReduceMin: g split evenly among the elements equal to the result (torch.amax/amin).

    torch.max(x, dim) instead gives all of it to one index; ONNX's ReduceMax is amax.
    """
    x = node.input[0]
    axes = _reduce_axes(ctx, node)
    if axes == []:
        return [grads[0]]
    axes = list(range(ctx.rank(x))) if axes is None else axes
    y_kept = _restored(ctx, node, node.output[0], axes)
    return [_extremum(ctx, x, y_kept, _restored(ctx, node, grads[0], axes), axes)]


def global_average_pool(ctx, node, grads):
    """d GlobalAveragePool = g / (H*W...) broadcast over the spatial axes."""
    x = node.input[0]
    axes = list(range(2, ctx.rank(x)))
    return [ctx.op("Expand", [ctx.mul(grads[0], _count(ctx, x, axes)), ctx.shape(x)])]


def global_max_pool(ctx, node, grads):
    """d GlobalMaxPool: g split evenly among the spatial maxima (as ReduceMax)."""
    x = node.input[0]
    return [_extremum(ctx, x, node.output[0], grads[0], list(range(2, ctx.rank(x))))]


def average_pool(ctx, node, grads):
    """d AveragePool: a single-channel ConvTranspose of g / window count by a kernel of ones.

    Channels are folded into the batch ((N*C, 1, ...) views), so the transposed pool is one
    ConvTranspose with one channel, whatever C is. The window count is prod(kernel), or,
    with count_include_pad=0 and padding, the number of input cells in each window.
    """
    if ctx.attribute("ceil_mode", 0):
        ctx.refuse("ceil_mode=1 is not supported")
    x, g = node.input[0], grads[0]
    kernel, strides, dilations, begin, end = _geometry(ctx, x, None)
    if any(d != 1 for d in dilations):
        ctx.refuse("dilations are not supported")
    n = len(kernel)
    folded = ctx.op("Reshape", [g, ctx.int64([-1, 1] + [0] * n)])
    window = float(np.prod(kernel))
    if ctx.attribute("count_include_pad", 0) or not any(begin + end):
        scaled = ctx.mul(folded, ctx.constant(1.0 / window, like=x))
    else:
        plane = ctx.op("Concat", [ctx.int64([1, 1]), ctx.op("Slice", [ctx.shape(x), ctx.int64([2]),
                                                                     ctx.int64([2 + n])])], axis=0)
        ones = ctx.op("ConstantOfShape", [plane], value=helper.make_tensor("", ctx.elem_type(x), [1], [1.0]))
        share = ctx.op("AveragePool", [ones], kernel_shape=kernel, strides=strides, pads=begin + end,
                       count_include_pad=1)
        scaled = ctx.op("Div", [folded, ctx.mul(share, ctx.constant(window, like=x))])
    ones_kernel = ctx.constant(np.ones([1, 1] + kernel), like=x)
    plane_like = ctx.op("Reshape", [x, ctx.int64([-1, 1] + [0] * n)])
    fitted = transposed_window(ctx, scaled, ones_kernel, plane_like, x, kernel, strides, dilations, begin, end)
    return [ctx.op("Reshape", [fitted, ctx.shape(x)])]


def max_pool(ctx, node, grads):
    """d MaxPool: g scattered (and added, where windows overlap) to the index of each window's max.

    The forward node is given its Indices output (flat indices into x on ONNX Runtime), so
    the pool is not computed twice. Ties go to the first maximum in the window, as in
    PyTorch (both keep the first of equal values).
    """
    if ctx.attribute("storage_order", 0):
        ctx.refuse("storage_order=1 is not supported")
    x, g = node.input[0], grads[0]
    kernel, strides, dilations, _, _ = _geometry(ctx, x, None)
    overlapping = any(s < (k - 1) * d + 1 for k, s, d in zip(kernel, strides, dilations))
    if overlapping and ctx.opset < 16:
        ctx.refuse("overlapping windows need ScatterElements with reduction='add' (opset 16 or later)")
    if len(node.output) > 1 and node.output[1]:
        indices = node.output[1]
    else:
        indices = ctx.fresh("MaxPool_indices")
        edited = type(node)()
        edited.CopyFrom(node)
        del edited.output[:]
        edited.output.extend([node.output[0], indices])
        ctx.forward_edits[ctx.node_index] = edited
    flat = ctx.int64([-1])
    size = ctx.op("Reshape", [ctx.op("Size", [x]), flat])
    zeros = ctx.op("ConstantOfShape", [size], value=helper.make_tensor("", ctx.elem_type(x), [1], [0.0]))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [indices, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add" if ctx.opset >= 16 else None)
    return [ctx.op("Reshape", [scattered, ctx.shape(x)])]
