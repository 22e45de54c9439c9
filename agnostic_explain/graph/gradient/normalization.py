"""Backward rules of normalisations and softmaxes: BatchNormalization, LayerNormalization,
Softmax, LogSoftmax. Scales, biases and running statistics get no gradient.
"""

from __future__ import annotations

import numpy as np


def _refuse_parameters(ctx, first):
    if any(ctx.needs[first:]):
        ctx.refuse("a scale, bias or statistic depends on a wrt tensor; parameter gradients are not built")


def batch_normalization(ctx, node, grads):
    """Inference BatchNormalization: dx = g * scale / sqrt(var + eps), per channel (axis 1)."""
    if ctx.attribute("training_mode", 0):
        ctx.refuse("training_mode=1 is not supported (export the model in eval mode)")
    _refuse_parameters(ctx, 1)
    x, scale, _, _, variance = node.input[:5]
    epsilon = ctx.attribute("epsilon", 1e-5)
    rank = ctx.rank(x)
    scale_value, variance_value = ctx.initializer(scale), ctx.initializer(variance)
    if scale_value is not None and variance_value is not None:
        factor = (scale_value.astype(np.float64) / np.sqrt(variance_value.astype(np.float64) + epsilon))
        factor = ctx.constant(factor.reshape((-1,) + (1,) * (rank - 2)), like=x)
    else:
        root = ctx.op("Sqrt", [ctx.op("Add", [variance, ctx.constant(epsilon, like=variance)])])
        per_channel = ctx.op("Div", [scale, root])
        factor = ctx.unsqueeze(per_channel, list(range(1, rank - 1)))
    return [ctx.mul(grads[0], factor)]


def layer_normalization(ctx, node, grads):
    """LayerNormalization: dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), gh = g * scale.

    Mean and inverse deviation are recomputed from x (the optional outputs are not needed).
    """
    if grads[0] is None or any(grad is not None for grad in grads[1:]):
        ctx.refuse("only the gradient of the normalised output (not Mean/InvStdDev) is supported")
    _refuse_parameters(ctx, 1)
    x, scale = node.input[0], node.input[1]
    rank = ctx.rank(x)
    axis = ctx.attribute("axis", -1)
    axes = list(range(axis % rank, rank))
    epsilon = ctx.attribute("epsilon", 1e-5)
    centred = ctx.op("Sub", [x, ctx.reduce("ReduceMean", x, axes)])
    variance = ctx.reduce("ReduceMean", ctx.mul(centred, centred), axes)
    inverse = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [variance, ctx.constant(epsilon, like=x)])])])
    normalised = ctx.mul(centred, inverse)
    scaled = ctx.mul(grads[0], scale)
    mean_grad = ctx.reduce("ReduceMean", scaled, axes)
    mean_projection = ctx.reduce("ReduceMean", ctx.mul(scaled, normalised), axes)
    inner = ctx.op("Sub", [ctx.op("Sub", [scaled, mean_grad]), ctx.mul(normalised, mean_projection)])
    return [ctx.mul(inverse, inner)]


def softmax(ctx, node, grads):
    """Softmax (opset 13+, one axis): dx = y * (g - sum(g * y, axis))."""
    y, g = node.output[0], grads[0]
    axis = ctx.attribute("axis", -1)
    projection = ctx.reduce("ReduceSum", ctx.mul(g, y), [axis])
    return [ctx.mul(y, ctx.op("Sub", [g, projection]))]


def log_softmax(ctx, node, grads):
    """LogSoftmax (opset 13+, one axis): dx = g - exp(y) * sum(g, axis)."""
    y, g = node.output[0], grads[0]
    axis = ctx.attribute("axis", -1)
    total = ctx.reduce("ReduceSum", g, [axis])
    return [ctx.op("Sub", [g, ctx.mul(ctx.op("Exp", [y]), total)])]
