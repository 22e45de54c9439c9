"""The backward rule table: one entry per ai.onnx operator kind, registered here and only here.

Print ``sorted(RULES)`` for the coverage. A rule is ``rule(ctx, node, grads) -> list`` (see
:mod:`agnostic_explain.graph.gradient`); ``gradient(..., rules={...})`` overrides entries per call.
"""

from __future__ import annotations

from . import elementwise as e
from . import linear, normalization, pooling, shape

__all__ = ["RULES", "ZERO_GRADIENT"]

#: operators whose output is piecewise constant in their float inputs (Sign, Floor...) or is an
#: integer or boolean tensor (Shape, Equal, ArgMax...: these never reach a rule, as no gradient
#: flows through a non-float tensor; they are listed so the coverage says so)
ZERO_GRADIENT = (
    "Shape", "Size", "ConstantOfShape", "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual",
    "Not", "And", "Or", "Xor", "ArgMax", "ArgMin", "Sign", "Floor", "Ceil", "Round", "IsNaN", "IsInf",
    "NonZero", "OneHot", "EyeLike", "RandomNormalLike", "RandomUniformLike", "Hardmax",
)

RULES = {
    # elementwise arithmetic, broadcast-aware
    "Add": e.add, "Sub": e.sub, "Mul": e.mul, "Div": e.div, "Pow": e.pow_, "Sum": e.sum_, "Mean": e.mean,
    "Max": e.maximum, "Min": e.minimum, "Where": e.where,
    # unary functions and activations
    "Sqrt": e.sqrt, "Exp": e.exp, "Log": e.log, "Reciprocal": e.reciprocal, "Neg": e.neg, "Abs": e.abs_,
    "Erf": e.erf, "Tanh": e.tanh, "Sigmoid": e.sigmoid, "Softplus": e.softplus, "Relu": e.relu,
    "LeakyRelu": e.leaky_relu, "Elu": e.elu, "HardSigmoid": e.hard_sigmoid, "HardSwish": e.hard_swish,
    "Clip": e.clip,
    # pass-through
    "Identity": e.identity, "Dropout": e.identity, "Cast": e.cast,
    # linear layers
    "MatMul": linear.matmul, "Gemm": linear.gemm, "Einsum": linear.einsum, "Conv": linear.conv,
    "ConvTranspose": linear.conv_transpose,
    # normalisation
    "BatchNormalization": normalization.batch_normalization,
    "LayerNormalization": normalization.layer_normalization,
    "Softmax": normalization.softmax, "LogSoftmax": normalization.log_softmax,
    # reductions and pools
    "ReduceSum": pooling.reduce_sum, "ReduceMean": pooling.reduce_mean, "ReduceMax": pooling.reduce_extremum,
    "ReduceMin": pooling.reduce_extremum, "GlobalAveragePool": pooling.global_average_pool,
    "GlobalMaxPool": pooling.global_max_pool, "AveragePool": pooling.average_pool, "MaxPool": pooling.max_pool,
    # data movement
    "Reshape": shape.reshape, "Flatten": shape.reshape, "Squeeze": shape.reshape, "Unsqueeze": shape.reshape,
    "Transpose": shape.transpose, "Expand": shape.expand, "Concat": shape.concat, "Split": shape.split,
    "Slice": shape.slice_, "Gather": shape.gather, "GatherElements": shape.gather_elements, "Pad": shape.pad,
    "Resize": shape.resize,
    "Range": e.float_range,
    **{op_type: e.zero for op_type in ZERO_GRADIENT},
}
