"""Backward rules of elementwise operators (with numpy broadcasting) and activations.

Every rule takes ``(ctx, node, grads)``: the :class:`RuleContext`, the forward node, and the
gradient tensor name of each node output (None where none flows), and returns one gradient
name (or None) per node input. Ties follow PyTorch; each rule's docstring says how.
"""

from __future__ import annotations

import math


def _binary(ctx, node, a_grad, b_grad):
    a, b = node.input[0], node.input[1]
    y = node.output[0]
    return [
        ctx.unbroadcast(a_grad(), a, y) if ctx.needs[0] else None,
        ctx.unbroadcast(b_grad(), b, y) if ctx.needs[1] else None,
    ]


def add(ctx, node, grads):
    """d(a+b) = (g, g), each summed over the axes it was broadcast along."""
    return _binary(ctx, node, lambda: grads[0], lambda: grads[0])


def sub(ctx, node, grads):
    """d(a-b) = (g, -g)."""
    return _binary(ctx, node, lambda: grads[0], lambda: ctx.op("Neg", [grads[0]]))


def mul(ctx, node, grads):
    """d(a*b) = (g*b, g*a)."""
    a, b = node.input[0], node.input[1]
    return _binary(ctx, node, lambda: ctx.mul(grads[0], b), lambda: ctx.mul(grads[0], a))


def div(ctx, node, grads):
    """d(a/b) = (g/b, -g*y/b)."""
    b, y = node.input[1], node.output[0]
    return _binary(ctx, node, lambda: ctx.op("Div", [grads[0], b]),
                   lambda: ctx.op("Neg", [ctx.op("Div", [ctx.mul(grads[0], y), b])]))


def pow_(ctx, node, grads):
    """d(a^p) = (g*p*a^(p-1), g*y*log(a)); a^(p-1), not y/a, so a = 0 stays finite for p >= 1 (as torch)."""
    a, p, y = node.input[0], node.input[1], node.output[0]

    def base():
        p_cast = p if ctx.elem_type(p) == ctx.elem_type(a) else ctx.op("Cast", [p], to=ctx.elem_type(a))
        constant = ctx.initializer(p)
        if constant is not None and constant.size == 1 and float(constant.reshape(-1)[0]) == 2.0:
            return ctx.mul(grads[0], ctx.mul(a, ctx.constant(2.0, like=a)))  # the common square, no Pow
        lowered = ctx.op("Sub", [p_cast, ctx.constant(1.0, like=a)])
        return ctx.mul(grads[0], ctx.mul(p_cast, ctx.op("Pow", [a, lowered])))

    def exponent():
        return ctx.mul(grads[0], ctx.mul(y, ctx.op("Log", [a])))

    return _binary(ctx, node, base, exponent)


def _scaled(ctx, grad, factor):
    return [ctx.mul(grad, factor)]


def sqrt(ctx, node, grads):
    """d sqrt(x) = g * 0.5 / y (inf at 0, as torch)."""
    y = node.output[0]
    return [ctx.op("Div", [ctx.mul(grads[0], ctx.constant(0.5, like=y)), y])]


def exp(ctx, node, grads):
    """d exp(x) = g * y."""
    return _scaled(ctx, grads[0], node.output[0])


def log(ctx, node, grads):
    """d log(x) = g / x."""
    return [ctx.op("Div", [grads[0], node.input[0]])]


def reciprocal(ctx, node, grads):
    """d (1/x) = -g * y^2."""
    y = node.output[0]
    return [ctx.op("Neg", [ctx.mul(grads[0], ctx.mul(y, y))])]


def neg(ctx, node, grads):
    """d(-x) = -g."""
    return [ctx.op("Neg", [grads[0]])]


def abs_(ctx, node, grads):
    """d|x| = g * sign(x); 0 at x = 0, as torch."""
    return _scaled(ctx, grads[0], ctx.op("Sign", [node.input[0]]))


def erf(ctx, node, grads):
    """d erf(x) = g * 2/sqrt(pi) * exp(-x^2)."""
    x = node.input[0]
    exp_term = ctx.op("Exp", [ctx.op("Neg", [ctx.mul(x, x)])])
    return _scaled(ctx, grads[0], ctx.mul(exp_term, ctx.constant(2.0 / math.sqrt(math.pi), like=x)))


def tanh(ctx, node, grads):
    """d tanh(x) = g * (1 - y^2)."""
    y = node.output[0]
    return _scaled(ctx, grads[0], ctx.op("Sub", [ctx.constant(1.0, like=y), ctx.mul(y, y)]))


def sigmoid(ctx, node, grads):
    """d sigmoid(x) = g * y * (1 - y)."""
    y = node.output[0]
    return _scaled(ctx, grads[0], ctx.mul(y, ctx.op("Sub", [ctx.constant(1.0, like=y), y])))


def softplus(ctx, node, grads):
    """d softplus(x) = g * sigmoid(x)."""
    return _scaled(ctx, grads[0], ctx.op("Sigmoid", [node.input[0]]))


def relu(ctx, node, grads):
    """d relu(x) = g where y > 0, else 0; 0 at x = 0 (as torch).

    The mask reads the output y (y > 0 exactly where x > 0), not x: ONNX Runtime then keeps
    fusing the Conv that produces x with its Relu.
    """
    y = node.output[0]
    return _scaled(ctx, grads[0], ctx.mask(ctx.op("Greater", [y, ctx.constant(0.0, like=y)]), y))


def guided_relu(ctx, node, grads):
    """Guided Backprop's Relu: pass g only where g > 0 and x > 0 (Springenberg et al., 2015).

    An example of a rule override: ``gradient(model, "x", rules={"Relu": guided_relu})``.
    """
    x, g = node.input[0], grads[0]
    zero = ctx.constant(0.0, like=x)
    both = ctx.op("And", [ctx.op("Greater", [x, zero]), ctx.op("Greater", [g, zero])])
    return _scaled(ctx, g, ctx.mask(both, x))


def leaky_relu(ctx, node, grads):
    """d leaky_relu(x) = g where x > 0, else alpha*g; alpha*g at x = 0 (as torch)."""
    x = node.input[0]
    alpha = ctx.attribute("alpha", 0.01)
    positive = ctx.mask(ctx.op("Greater", [x, ctx.constant(0.0, like=x)]), x)
    factor = ctx.op("Add", [ctx.mul(positive, ctx.constant(1.0 - alpha, like=x)), ctx.constant(alpha, like=x)])
    return _scaled(ctx, grads[0], factor)


def elu(ctx, node, grads):
    """d elu(x) = g where x > 0, else g*(y + alpha) (torch's formula)."""
    x, y = node.input[0], node.output[0]
    alpha = ctx.attribute("alpha", 1.0)
    positive = ctx.mask(ctx.op("Greater", [x, ctx.constant(0.0, like=x)]), x)
    negative_part = ctx.op("Add", [y, ctx.constant(alpha, like=x)])
    one_minus = ctx.op("Sub", [ctx.constant(1.0, like=x), positive])
    factor = ctx.op("Add", [positive, ctx.mul(one_minus, negative_part)])
    return _scaled(ctx, grads[0], factor)


def hard_sigmoid(ctx, node, grads):
    """d clip(alpha*x+beta, 0, 1) = g*alpha strictly inside (0, 1), else 0 (torch.hardsigmoid: -3 < x < 3)."""
    x = node.input[0]
    alpha, beta = ctx.attribute("alpha", 0.2), ctx.attribute("beta", 0.5)
    z = ctx.op("Add", [ctx.mul(x, ctx.constant(alpha, like=x)), ctx.constant(beta, like=x)])
    inside = ctx.op("And", [ctx.op("Greater", [z, ctx.constant(0.0, like=x)]),
                            ctx.op("Less", [z, ctx.constant(1.0, like=x)])])
    return _scaled(ctx, grads[0], ctx.mul(ctx.mask(inside, x), ctx.constant(alpha, like=x)))


def hard_swish(ctx, node, grads):
    """d x*hardsigmoid(x) as torch.hardswish: 0 for x <= -3, x/3 + 1/2 for -3 < x < 3, 1 for x >= 3.

    (The kinks belong to the outer pieces, as in torch 2.x's hardswish_backward.)
    """
    x = node.input[0]
    low = ctx.op("LessOrEqual", [x, ctx.constant(-3.0, like=x)])
    high = ctx.op("GreaterOrEqual", [x, ctx.constant(3.0, like=x)])
    middle = ctx.mask(ctx.op("Not", [ctx.op("Or", [low, high])]), x)
    slope = ctx.op("Add", [ctx.mul(x, ctx.constant(1.0 / 3.0, like=x)), ctx.constant(0.5, like=x)])
    factor = ctx.op("Add", [ctx.mul(middle, slope), ctx.mask(high, x)])
    return _scaled(ctx, grads[0], factor)


def clip(ctx, node, grads):
    """d clip(x, lo, hi) = g where lo < x < hi: the convention of torch.nn.ReLU6 and hardtanh, and of
    TensorFlow's relu6, the modules most Clip nodes of exported networks come from.

    torch.clamp passes the gradient at the bounds as well; a clamp exported as Clip therefore
    differs exactly at elements equal to a bound (tests count them). The bounds' own gradient
    (g where x is beyond them) is built only when a bound depends on a wrt tensor.

    The mask reads the output y alone (lo < y < hi holds exactly where lo < x < hi), so ONNX
    Runtime keeps the Conv before the Clip fused with it. Lesson (EfficientNet-Lite0, ORT 1.31
    CPU, gradient/forward time per row, same machine load): masks that read x (``Equal(x, y)``,
    two compares and an And on x, ``Where``) gave 3.0x to 3.6x, as they keep x alive and break
    the fusion; the strict compares on y gave 3.2x against 3.6x in the same run. Other masks,
    on 9.6M elements (ms, same run): Greater/Less/And/Cast then Mul 12.9; Where 17.6;
    Equal(y, Clip(y, next above lo, next below hi)) 14.5; Less(Abs(y - 3), 3) 16.0;
    Sign(y * (6 - y)) 24.7. Masks built from depthwise 1x1 Conv+Clip stages, to stay in ONNX
    Runtime's NCHWc layout (exact on CPU by power-of-two scaling, not under CUDA's TF32), made
    the whole EfficientNet-Lite0 gradient slower: 33.0 against 26.2 ms per row at batch 32.
    """
    x, g, y = node.input[0], grads[0], node.output[0]
    lo = node.input[1] if len(node.input) > 1 and node.input[1] else None
    hi = node.input[2] if len(node.input) > 2 and node.input[2] else None
    inside = None
    for bound, compare in ((lo, "Greater"), (hi, "Less")):
        if bound is not None:
            strict = ctx.op(compare, [y, bound])
            inside = strict if inside is None else ctx.op("And", [inside, strict])
    result = [None] * len(node.input)
    if ctx.needs[0]:
        result[0] = g if inside is None else ctx.mul(g, ctx.mask(inside, x))
    for index, (bound, compare) in ((1, (lo, "Less")), (2, (hi, "Greater"))):
        if bound is not None and index < len(ctx.needs) and ctx.needs[index]:
            beyond = ctx.mask(ctx.op(compare, [x, bound]), x)
            result[index] = ctx.unbroadcast(ctx.mul(g, beyond), bound, y)
    return result


def _extremum(ctx, node, grads):
    """Variadic Max/Min: the gradient is split evenly among the inputs equal to the result.

    For two inputs this is torch.maximum/torch.minimum (half to each at a tie).
    """
    y, g = node.output[0], grads[0]
    hits = [ctx.mask(ctx.op("Equal", [name, y]), y) for name in node.input]
    count = hits[0] if len(hits) == 1 else ctx.op("Sum", hits)
    share = ctx.op("Div", [g, count])
    return [ctx.unbroadcast(ctx.mul(share, hit), name, y) if needed else None
            for name, hit, needed in zip(node.input, hits, ctx.needs)]


maximum = minimum = _extremum


def where(ctx, node, grads):
    """d where(c, a, b) = (None, g*c, g*(1-c)), with c as a 0/1 mask (Mul, not Where: faster on ORT CPU).

    A non-finite g where the branch was not taken would give NaN with a mask (inf*0); such
    seeds do not occur for finite models.
    """
    condition, a, b = node.input
    y, g = node.output[0], grads[0]
    mask = ctx.mask(condition, y)
    result = [None, None, None]
    if ctx.needs[1]:
        result[1] = ctx.unbroadcast(ctx.mul(g, mask), a, y)
    if ctx.needs[2]:
        result[2] = ctx.unbroadcast(ctx.mul(g, ctx.op("Sub", [ctx.constant(1.0, like=y), mask])), b, y)
    return result


def sum_(ctx, node, grads):
    """d sum(x1, ..., xn) = g for each, summed over broadcast axes."""
    y = node.output[0]
    return [ctx.unbroadcast(grads[0], name, y) if needed else None for name, needed in zip(node.input, ctx.needs)]


def mean(ctx, node, grads):
    """d mean(x1, ..., xn) = g/n for each."""
    y = node.output[0]
    share = ctx.mul(grads[0], ctx.constant(1.0 / len(node.input), like=y))
    return [ctx.unbroadcast(share, name, y) if needed else None for name, needed in zip(node.input, ctx.needs)]


def identity(ctx, node, grads):
    """Identity and Dropout (inference): g passes unchanged to the first input."""
    return [grads[0]]


def cast(ctx, node, grads):
    """Cast: g cast back to the input's float type."""
    x = node.input[0]
    return [ctx.op("Cast", [grads[0]], to=ctx.elem_type(x))]


def float_range(ctx, node, grads):
    """Range: integer bounds carry no gradient (and never reach a rule); float bounds that
    depend on a wrt tensor are refused rather than given a wrong zero."""
    if any(ctx.needs):
        ctx.refuse("float start/limit/delta that depend on a wrt tensor are not differentiated")
    return [None] * len(node.input)


def zero(ctx, node, grads):
    """Piecewise-constant or non-float outputs (Sign, Floor, Shape, Equal, ArgMax...): no gradient."""
    return [None] * len(node.input)


