"""graph.gradient on elementwise operators and activations, against torch autograd.

Each case is a tiny torch function exported with a dynamic batch axis; its gradient graph
runs at two batch sizes, with broadcasting inputs reduced back to their own shapes.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gradient_cases import Function, assert_close, export, run_gradient, torch_vjp


def positive(shape):
    return lambda rng, batch: rng.uniform(0.5, 2.0, (batch, *shape)).astype(np.float32)


def normal(shape, batched=True):
    return lambda rng, batch: rng.standard_normal((batch, *shape) if batched else shape).astype(np.float32)


CASES = {
    "add_sub_broadcast": (lambda x, y: (x + y) - (y - x * 2), [normal((3, 4)), normal((4,), batched=False)]),
    "mul_broadcast_leading_one": (lambda x, y: x * y, [normal((3, 4)), normal((1, 1, 4), batched=False)]),
    "div": (lambda x, y: x / y, [normal((3, 4)), positive((3, 4))]),
    "pow_cube_and_square": (lambda x: x ** 3 + x ** 2, [normal((5,))]),
    "pow_tensor_exponent": (lambda x, y: torch.pow(x, y), [positive((5,)), normal((5,))]),
    "sqrt_log_exp_reciprocal": (lambda x: torch.sqrt(x) + torch.log(x) + torch.exp(-x) + 1 / x, [positive((6,))]),
    "neg_abs": (lambda x: -torch.abs(x), [normal((6,))]),
    "erf_tanh_sigmoid": (lambda x: torch.erf(x) * torch.tanh(x) + torch.sigmoid(x), [normal((6,))]),
    "gelu_exact": (lambda x: F.gelu(x), [normal((6,))]),
    "hardsigmoid_hardswish": (lambda x: F.hardsigmoid(x) + F.hardswish(x), [lambda rng, b: rng.uniform(
        -5, 5, (b, 40)).astype(np.float32)]),
    "relu_leaky_elu_softplus": (lambda x: F.relu(x) + F.leaky_relu(x, 0.1) + F.elu(x) + F.softplus(x),
                                [normal((6,))]),
    "clamp": (lambda x: torch.clamp(x, -0.5, 0.7), [normal((20,))]),
    "maximum_minimum": (lambda x, y: torch.maximum(x, y) - torch.minimum(x, y * 2), [normal((3, 4)), normal((3, 4))]),
    "where": (lambda x, y: torch.where(x > 0, x * y, y), [normal((3, 4)), normal((4,), batched=False)]),
    "sum_mean_reduce": (lambda x: x.sum(dim=1) + x.mean(dim=1) + x.amax(dim=1), [normal((7,))]),
    "cast_identity": (lambda x: x.double().float() * 2, [normal((4,))]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_elementwise_rule_matches_torch(case):
    function, makers = CASES[case]
    module = Function(function)
    rng = np.random.default_rng(1)
    names = [f"x{i}" for i in range(len(makers))]
    sample = [maker(rng, 2) for maker in makers]
    batched = [maker(rng, 3).shape[0] == 3 for maker in makers]
    dynamic = {name: {0: "batch"} for name, is_batched in zip(names, batched) if is_batched}
    dynamic["out"] = {0: "batch"}
    proto = export(module, tuple(torch.tensor(x) for x in sample), names, ["out"], dynamic)
    for batch in (2, 5):
        inputs = [maker(rng, batch) for maker in makers]
        seeds, grads = run_gradient(proto, dict(zip(names, inputs)), names)
        expected = torch_vjp(module, inputs, seeds["out__seed"])
        for name, want in zip(names, expected):
            assert_close(grads[name], want)
