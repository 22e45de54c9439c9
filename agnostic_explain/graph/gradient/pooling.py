"""Backward rules of reductions and pools: ReduceSum/Mean/Max/Min, GlobalAveragePool,
GlobalMaxPool, AveragePool, MaxPool.
"""

from __future__ import annotations

import numpy as np
import onnx
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
    """d MaxPool: g placed (and added, where windows overlap) at the first maximum of each window.

    Ties go to the first maximum in the window (row-major), as in PyTorch. Three forms, the
    fastest that is exact for the node's geometry:

    - Windows that do not overlap, without padding or partial windows, static spatial sizes
      and float32: the window-local index of the first maximum is found from plain MaxPools
      over each window's row-major prefixes (:func:`_first_max_indices`), and a ScatterElements
      without reduction places g there. The forward pool keeps its fast kernel (no Indices output).
    - Other windows that do not overlap: the forward node is given its Indices output
      (flat indices into x on ONNX Runtime; ONNX Runtime keeps the first of equal values), placed
      the same way; no two windows share an index, so nothing is to be added.
    - Overlapping windows: the same indices, and g added into zeros by ScatterElements with
      reduction='add' (opset 16 or later).

    Lesson (ORT 1.31 CPU, 2 shared cores, 2x2 stride 2 after a ReLU, x [16,32,64,64] and
    [16,64,32,32]): an Indices output moves MaxPool off MLAS's pooling onto a per-element kernel
    (11 ms against 0.3 ms for the first shape, node profile), costing more than the
    ScatterElements (~4 ms) that consumes the indices. MaxUnpool placed g 1.45x faster than a
    ScatterElements without reduction, but ONNX Runtime's CUDA provider has no MaxUnpool kernel.
    Forms that read x without indices were slower than the scatter or close to it: ArgMax over
    the innermost (window column) axis, 8.5 ms for that node (second shape); a Transpose moving
    that axis out, 32 ms; a 6-D Transpose to put the window last; strided Slices of x, 1 to 4 ms
    each; a one-hot by Equal against broadcast window positions (ONNX Runtime broadcasts a
    size-1 innermost axis element by element). The prefix pools cost ~0.2 ms each. Gradient
    graphs (forward included), indices + add-scatter against this rule, medians of 15 paired
    runs on one thread: Relu+MaxPool 16.6 -> 11.2 ms (1.48x) and 8.1 -> 5.0 ms (1.62x); the
    small CNN of benchmarks/gradient_explainers.py 10.8 -> 8.6 ms (1.26x) at batch 8 and
    44.6 -> 36.3 ms (1.23x) at batch 32.
    """
    if ctx.attribute("storage_order", 0):
        ctx.refuse("storage_order=1 is not supported")
    x, g = node.input[0], grads[0]
    kernel, strides, dilations, begin, end = _geometry(ctx, x, None)
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    overlapping = any(s < e for s, e in zip(strides, extents))
    if not overlapping:
        first = (_first_max_indices(ctx, node, kernel, strides, dilations, extents, begin + end)
                 if ctx.elem_type(x) == onnx.TensorProto.FLOAT else None)
        return [_placed(ctx, x, first if first is not None else _forward_indices(ctx, node), g, add=False)]
    if ctx.opset < 16:
        ctx.refuse("overlapping windows need ScatterElements with reduction='add' (opset 16 or later)")
    return [_placed(ctx, x, _forward_indices(ctx, node), g, add=True)]


def _placed(ctx, x, indices, g, add: bool):
    """``g`` put into zeros shaped like ``x`` at the flat ``indices`` (added where they repeat).

    ScatterElements, not MaxUnpool: ONNX Runtime's CUDA provider has no MaxUnpool kernel, and the
    gradient graphs must run on the model's provider without falling back to the CPU.
    """
    flat = ctx.int64([-1])
    size = ctx.op("Reshape", [ctx.op("Size", [x]), flat])
    zeros = ctx.op("ConstantOfShape", [size], value=helper.make_tensor("", ctx.elem_type(x), [1], [0.0]))
    scattered = ctx.op("ScatterElements", [zeros, ctx.op("Reshape", [indices, flat]), ctx.op("Reshape", [g, flat])],
                       axis=0, reduction="add" if add else None)
    return ctx.op("Reshape", [scattered, ctx.shape(x)])


def _forward_indices(ctx, node):
    """The forward MaxPool's Indices output, added to the node (an edit of the forward graph) if absent."""
    if len(node.output) > 1 and node.output[1]:
        return node.output[1]
    indices = ctx.fresh("MaxPool_indices")
    edited = type(node)()
    edited.CopyFrom(node)
    del edited.output[:]
    edited.output.extend([node.output[0], indices])
    ctx.forward_edits[ctx.node_index] = edited
    return indices


def _first_max_indices(ctx, node, kernel, strides, dilations, extents, pads):
    """Flat indices into x of each window's first maximum, from plain MaxPools; None where not exact.

    The window taps before tap ``a`` in row-major order are covered by origin-anchored boxes
    (box ``d`` spans ``a[:d] + 1`` taps on the axes before d, ``a[d]`` on axis d, all taps
    after it), so the max of those boxes' pools is the max over the taps before ``a``. It is
    below y exactly when the first maximum lies at or after ``a``; summing, over the taps, that
    test times the step in x from the previous tap gives the first maximum's offset from the
    window's start. Needs no padding and no partial windows: a box of pad cells alone would
    be -inf, and would tie with a window of -inf values.
    """
    x, y = node.input[0], node.output[0]
    shape = ctx.static_shape(x)
    if any(pads) or shape is None or any(size is None for size in shape[2:]):
        return None
    spatial = list(shape[2:])
    n = len(spatial)
    out = [(size - e) // s + 1 for size, e, s in zip(spatial, extents, strides)]
    if any(o < 1 for o in out) or (ctx.attribute("ceil_mode", 0)
                                   and any((size - e) % s for size, e, s in zip(spatial, extents, strides))):
        return None
    if int(np.prod(spatial)) >= 2 ** 24:  # offsets in a plane are summed exactly in float32
        return None
    step = [int(np.prod(spatial[axis + 1:])) for axis in range(n)]
    pools = {}

    def box_max(box):
        if box not in pools:
            pooled = ctx.op("MaxPool", [x], kernel_shape=list(box), strides=strides,
                            dilations=dilations if any(d != 1 for d in dilations) else None)
            reach = [(b - 1) * d + 1 for b, d in zip(box, dilations)]
            if any((size - r) // s + 1 > o for size, r, s, o in zip(spatial, reach, strides, out)):
                pooled = ctx.op("Slice", [pooled, ctx.int64([0] * n), ctx.int64(out), ctx.int64(list(range(2, n + 2)))])
            pools[box] = pooled
        return pools[box]

    taps = list(np.ndindex(*kernel))
    starts = np.zeros(out, dtype=np.float32)
    for axis in range(n):
        starts += (np.arange(out[axis]) * strides[axis] * step[axis]).reshape(
            [-1 if a == axis else 1 for a in range(n)]).astype(np.float32)
    terms = [ctx.constant(starts)]
    previous = 0
    for tap in taps[1:]:
        boxes = [tuple(t + 1 for t in tap[:axis]) + (tap[axis],) + tuple(kernel[axis + 1:])
                 for axis in range(n) if tap[axis] > 0]
        maxima = [box_max(box) for box in boxes]
        before = maxima[0] if len(maxima) == 1 else ctx.op("Max", maxima)
        below = ctx.op("Cast", [ctx.op("Less", [before, y])], to=onnx.TensorProto.FLOAT)
        offset = sum(t * d * s for t, d, s in zip(tap, dilations, step))
        terms.append(below if offset - previous == 1 else ctx.mul(below, ctx.constant(np.float32(offset - previous))))
        previous = offset
    in_plane = ctx.op("Cast", [ctx.op("Sum", terms)], to=onnx.TensorProto.INT64)
    # the start of each (batch, channel) plane in x, from the batch and channels read at run time
    plane = int(np.prod(spatial))
    batch_channels = ctx.op("Slice", [ctx.op("Shape", [x]), ctx.int64([0]), ctx.int64([2])])
    count = ctx.reduce("ReduceProd", batch_channels, [0], keepdims=0)
    firsts = ctx.op("Range", [ctx.int64(0), ctx.op("Mul", [count, ctx.int64(plane)]), ctx.int64(plane)])
    planes = ctx.op("Reshape", [firsts, ctx.op("Concat", [batch_channels, ctx.int64([1] * n)], axis=0)])
    return ctx.op("Add", [in_plane, planes])
