"""Backward rules of the linear layers: MatMul, Gemm, Einsum, Conv, ConvTranspose.

Gradients with respect to weights are not built (explainers differentiate activations); a
weight that depends on a wrt tensor is refused by name rather than given a wrong zero.
"""

from __future__ import annotations

import numpy as np


def _swap_last(ctx, name, rank):
    perm = list(range(rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return ctx.op("Transpose", [name], perm=perm)


def matmul(ctx, node, grads):
    """d(A@B) = (g @ B^T, A^T @ g), summed over broadcast batch axes; a 1-D B is a column."""
    a, b = node.input
    y, g = node.output[0], grads[0]
    ra, rb = ctx.rank(a), ctx.rank(b)
    if ra < 2:
        ctx.refuse("a 1-D left operand is not supported")
    y_shape = ctx.symbolic_shape(y) or (None,) * max(ra, rb)
    result = [None, None]
    if rb == 1:
        column = ctx.unsqueeze(g, [-1])
        if ctx.needs[0]:
            result[0] = ctx.mul(column, b)
        if ctx.needs[1]:
            result[1] = ctx.reduce("ReduceSum", ctx.mul(column, a), list(range(ra - 1)), keepdims=0)
        return result
    a_shape, b_shape = ctx.symbolic_shape(a) or (None,) * ra, ctx.symbolic_shape(b) or (None,) * rb
    if ctx.needs[0]:
        product = ctx.op("MatMul", [g, _swap_last(ctx, b, rb)])
        result[0] = ctx.unbroadcast(product, a, tuple(y_shape[:-1]) + (a_shape[-1],))
    if ctx.needs[1]:
        product = ctx.op("MatMul", [_swap_last(ctx, a, ra), g])
        result[1] = ctx.unbroadcast(product, b, tuple(y_shape[:-2]) + tuple(b_shape[-2:]))
    return result


def gemm(ctx, node, grads):
    """d(alpha*A'@B' + beta*C) with A' = A or A^T, B' = B or B^T; emitted as Gemm nodes."""
    a, b = node.input[0], node.input[1]
    g, y = grads[0], node.output[0]
    alpha, beta = ctx.attribute("alpha", 1.0), ctx.attribute("beta", 1.0)
    trans_a, trans_b = ctx.attribute("transA", 0), ctx.attribute("transB", 0)
    result = [None] * len(node.input)
    if ctx.needs[0]:
        if not trans_a:  # dA = g @ B'^T
            result[0] = ctx.op("Gemm", [g, b], alpha=alpha, transB=1 - trans_b)
        else:  # dA = B' @ g^T
            result[0] = ctx.op("Gemm", [b, g], alpha=alpha, transA=trans_b, transB=1)
    if ctx.needs[1]:
        if not trans_b:  # dB = A'^T @ g
            result[1] = ctx.op("Gemm", [a, g], alpha=alpha, transA=1 - trans_a)
        else:  # dB = g^T @ A'
            result[1] = ctx.op("Gemm", [g, a], alpha=alpha, transA=1, transB=trans_a)
    if len(node.input) > 2 and node.input[2] and ctx.needs[2]:
        scaled = g if beta == 1.0 else ctx.mul(g, ctx.constant(beta, like=y))
        result[2] = ctx.unbroadcast(scaled, node.input[2], y)
    return result


def _subscripts(ctx, equation, n_operands):
    equation = equation.replace(" ", "")
    if "->" in equation:
        inputs, output = equation.split("->")
    else:
        inputs = equation
        letters = inputs.replace(",", "").replace("...", "")
        output = ("..." if "..." in inputs else "") + "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    terms = inputs.split(",")
    if len(terms) != n_operands:
        ctx.refuse(f"its equation {equation!r} names {len(terms)} operands, but the node has {n_operands} inputs")
    return terms, output


def _letters(term):
    return [c for c in term.replace("...", "")]


def einsum(ctx, node, grads):
    """d einsum: for operand i, einsum(g, the other operands -> subscripts of i).

    Letters summed away in operand i alone come back by Unsqueeze + Expand. Repeated letters
    within one operand (diagonals) are refused.
    """
    terms, output = _subscripts(ctx, ctx.attribute("equation").decode() if isinstance(
        ctx.attribute("equation"), bytes) else ctx.attribute("equation"), len(node.input))
    g = grads[0]
    result = [None] * len(node.input)
    for index, (name, term) in enumerate(zip(node.input, terms)):
        if not ctx.needs[index]:
            continue
        letters = _letters(term)
        if len(set(letters)) != len(letters):
            ctx.refuse(f"operand {index} repeats a subscript ({term!r}); diagonals are not supported")
        elsewhere = set(_letters(output)).union(*[_letters(t) for j, t in enumerate(terms) if j != index])
        kept = "".join(c for c in term if c == "." or c in elsewhere)
        others = [(t, n) for j, (t, n) in enumerate(zip(terms, node.input)) if j != index]
        equation = ",".join([output] + [t for t, _ in others]) + "->" + kept
        grad = ctx.op("Einsum", [g] + [n for _, n in others], equation=equation)
        if kept != term:
            if "..." in term:
                ctx.refuse(f"operand {index} sums a subscript away alone next to an ellipsis")
            missing = [axis for axis, c in enumerate(letters) if c not in elsewhere]
            grad = ctx.op("Expand", [ctx.unsqueeze(grad, missing), ctx.shape(name)])
        result[index] = grad
    return result


def _spatial_pads(ctx, x, kernel, strides, dilations):
    """Explicit (begin, end) pads of a Conv/pool node, resolving auto_pad from static sizes."""
    n = len(kernel)
    auto_pad = ctx.attribute("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        pads = list(ctx.attribute("pads", [0] * (2 * n)))
        return pads[:n], pads[n:]
    if auto_pad == "VALID":
        return [0] * n, [0] * n
    shape = ctx.static_shape(x)
    if shape is None or any(dim is None for dim in shape[2:]):
        ctx.refuse(f"auto_pad={auto_pad} with dynamic spatial sizes is not supported")
    begin, end = [], []
    for size, k, s, d in zip(shape[2:], kernel, strides, dilations):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin, end


def _geometry(ctx, x, weight_shape):
    n = ctx.rank(x) - 2
    kernel = list(ctx.attribute("kernel_shape", weight_shape[2:] if weight_shape else None) or [])
    if len(kernel) != n or any(k is None for k in kernel):
        ctx.refuse("the kernel shape is unknown")
    strides = list(ctx.attribute("strides", [1] * n))
    dilations = list(ctx.attribute("dilations", [1] * n))
    begin, end = _spatial_pads(ctx, x, kernel, strides, dilations)
    return kernel, strides, dilations, begin, end


def transposed_window(ctx, grad, weight, like, x, kernel, strides, dilations, begin, end, group=1):
    """ConvTranspose of ``grad`` by ``weight``: the gradient of a strided window op, sized like ``like``.

    A strided window does not always reach the last rows of its (padded) input: the end
    padding is cropped only as far as the windows reached, and the rows no window reached get
    zeros. Static shapes decide it at edit time; otherwise a Pad and a Slice fit the result
    to ``Shape(like)`` at run time. (Cropping the full end padding and zero-filling after it
    would drop the real gradient of the last rows.)
    """
    n = len(kernel)
    missing = _missing(ctx, x, kernel, strides, dilations, begin, end)
    attributes = {"kernel_shape": kernel, "strides": strides, "dilations": dilations, "group": group}
    if missing is not None:
        crop_end = [max(0, e - m) for e, m in zip(end, missing)]
        zeros_end = [max(0, m - e) for e, m in zip(end, missing)]
        result = ctx.op("ConvTranspose", [grad, weight], pads=begin + crop_end, **attributes)
        if any(zeros_end):
            result = ctx.op("Pad", [result, ctx.int64([0] * (n + 2) + [0, 0] + zeros_end)])
        return result
    result = ctx.op("ConvTranspose", [grad, weight], pads=begin + [0] * n, **attributes)
    target = ctx.shape(like)
    difference = ctx.op("Sub", [target, ctx.op("Shape", [result])])
    grow = ctx.op("Max", [difference, ctx.int64([0])])
    padded = ctx.op("Pad", [result, ctx.op("Concat", [ctx.int64([0] * (n + 2)), grow], axis=0)])
    return ctx.op("Slice", [padded, ctx.int64([0] * (n + 2)), target])


def _missing(ctx, x, kernel, strides, dilations, begin, end):
    """Per spatial axis, the trailing padded-input rows no window reaches, when static shapes tell it."""
    shape = ctx.static_shape(x)
    if shape is None or any(dim is None for dim in shape[2:]):
        return None
    missing = []
    for size, k, s, d, b, e in zip(shape[2:], kernel, strides, dilations, begin, end):
        out = (size + b + e - d * (k - 1) - 1) // s + 1
        missing.append(size + b + e - ((out - 1) * s + d * (k - 1) + 1))
    return missing


def _flipped_transposed(weight, group):
    """The Conv weight whose stride-1 convolution is the transpose of the one by ``weight``."""
    out_channels, in_per_group = weight.shape[:2]
    spatial = weight.shape[2:]
    grouped = weight.reshape(group, out_channels // group, in_per_group, *spatial)
    swapped = np.swapaxes(grouped, 1, 2).reshape(group * in_per_group, out_channels // group, *spatial)
    return np.ascontiguousarray(np.flip(swapped, axis=tuple(range(2, weight.ndim))))


def conv(ctx, node, grads):
    """d Conv wrt its input: the transposed convolution of g, and the bias gradient (sum over N, space).

    Stride 1 with constant weights is emitted as a Conv with the flipped, group-transposed
    kernel (precomputed): ONNX Runtime's depthwise ConvTranspose is far slower than the
    equivalent grouped Conv. Other strides use ConvTranspose, fitted to the input size.

    Lesson (EfficientNet-Lite0, ORT 1.31 CPU): a strided depthwise ConvTranspose is slow, but
    its polyphase form (one stride-1 Conv with s*s phase kernels, then DepthToSpace) was
    slower still, DepthToSpace being a generic 6-D transpose; ConvTranspose stays. Zero-insertion
    and a stride-1 depthwise Conv (96 channels, 56 -> 112, batch 16, between two 1x1 Convs: 37 ms
    for ConvTranspose) cost 33 ms with the insertion by a 1x1 ConvTranspose, 37 ms by nearest
    Resize and a checkerboard Mul, 68 ms by a 6-D Pad: too little gained for a second path.
    """
    x, w = node.input[0], node.input[1]
    g = grads[0]
    result = [None] * len(node.input)
    if ctx.needs[1]:
        ctx.refuse("the weights depend on a wrt tensor; weight gradients are not built")
    weight = ctx.initializer(w)
    kernel, strides, dilations, begin, end = _geometry(ctx, x, weight.shape if weight is not None
                                                       else ctx.static_shape(w))
    group = ctx.attribute("group", 1)
    n = len(kernel)
    if ctx.needs[0]:
        reach = [d * (k - 1) for k, d in zip(kernel, dilations)]
        pads = [r - b for r, b in zip(reach, begin)] + [r - e for r, e in zip(reach, end)]
        if weight is not None and all(s == 1 for s in strides) and min(pads) >= 0:
            flipped = ctx.constant(_flipped_transposed(weight, group))
            result[0] = ctx.op("Conv", [g, flipped], pads=pads, dilations=dilations, group=group,
                               kernel_shape=kernel)
        else:
            result[0] = transposed_window(ctx, g, w, x, x, kernel, strides, dilations, begin, end, group)
    if len(node.input) > 2 and node.input[2] and ctx.needs[2]:
        result[2] = ctx.reduce("ReduceSum", g, [0] + list(range(2, n + 2)), keepdims=0)
    return result


def conv_transpose(ctx, node, grads):
    """d ConvTranspose wrt its input: the Conv of g by the same weights, strides, pads and group."""
    x, w = node.input[0], node.input[1]
    g = grads[0]
    result = [None] * len(node.input)
    if ctx.needs[1]:
        ctx.refuse("the weights depend on a wrt tensor; weight gradients are not built")
    if ctx.attribute("output_shape") is not None:
        ctx.refuse("output_shape is not supported; give explicit pads")
    auto_pad = ctx.attribute("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", "", "VALID"):
        ctx.refuse("auto_pad SAME_* is not supported; give explicit pads")
    n = ctx.rank(x) - 2
    weight_shape = ctx.static_shape(w)
    kernel = list(ctx.attribute("kernel_shape", weight_shape[2:] if weight_shape else [None] * n))
    if any(k is None for k in kernel):
        ctx.refuse("the kernel shape is unknown")
    if ctx.needs[0]:
        result[0] = ctx.op(
            "Conv", [g, w], kernel_shape=kernel, strides=list(ctx.attribute("strides", [1] * n)),
            pads=list(ctx.attribute("pads", [0] * (2 * n))), dilations=list(ctx.attribute("dilations", [1] * n)),
            group=ctx.attribute("group", 1),
        )
    if len(node.input) > 2 and node.input[2] and ctx.needs[2]:
        result[2] = ctx.reduce("ReduceSum", g, [0] + list(range(2, n + 2)), keepdims=0)
    return result
