"""Ties: inputs built to sit exactly on kinks, compared element by element with PyTorch.

Where the convention is PyTorch's, every element matches exactly (no tolerance hides a tie).
Where it is not (a torch.clamp exported as Clip follows ReLU6's convention), the differing
elements are counted and shown to be exactly the ties.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from gradient_cases import Function, export, run_gradient

from agnostic_explain.graph import gradient


def _compare(function, inputs, seed_value=None):
    module = Function(function)
    names = [f"x{i}" for i in range(len(inputs))]
    proto = export(module, tuple(torch.tensor(x) for x in inputs), names, ["out"])
    seeds = None
    if seed_value is not None:
        out = module(*[torch.tensor(x) for x in inputs])
        seeds = {"out__seed": np.full(tuple(out.shape), seed_value, dtype=np.float32)}
    seeds, grads = run_gradient(proto, dict(zip(names, inputs)), names, seeds=seeds)
    tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
    module(*tensors).backward(torch.tensor(seeds["out__seed"]))
    return [(grads[name], t.grad.numpy()) for name, t in zip(names, tensors)]


GRID = np.array([[-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 6.0]], dtype=np.float32)


@pytest.mark.parametrize("function", [F.relu, F.leaky_relu, torch.abs, F.hardswish, F.hardsigmoid, F.relu6,
                                      lambda x: F.hardtanh(x, -1.0, 1.0)],
                         ids=["relu", "leaky_relu", "abs", "hardswish", "hardsigmoid", "relu6", "hardtanh"])
def test_kinks_follow_torch_exactly(function):
    ((actual, expected),) = _compare(function, [GRID], seed_value=1.0)
    np.testing.assert_array_equal(actual, expected)


def test_clamp_exported_as_clip_differs_only_at_the_bounds():
    ((actual, expected),) = _compare(lambda x: torch.clamp(x, -1.0, 1.0), [GRID], seed_value=1.0)
    differ = actual != expected
    assert differ.sum() == 2
    assert set(GRID[differ].tolist()) == {-1.0, 1.0}  # torch.clamp passes the gradient there, ReLU6's rule gives 0
    np.testing.assert_array_equal(actual[differ], 0.0)


def test_maximum_minimum_ties_split_evenly_like_torch():
    a = np.array([[1.0, 2.0, 3.0, 2.0]], dtype=np.float32)
    b = np.array([[1.0, 1.0, 3.0, 5.0]], dtype=np.float32)
    for (actual, expected) in _compare(lambda x, y: torch.maximum(x, y) + 2 * torch.minimum(x, y), [a, b]):
        np.testing.assert_array_equal(actual, expected)


def test_amax_ties_split_evenly_like_torch():
    x = np.array([[[1.0, 4.0, 4.0, 0.0], [2.0, 2.0, 2.0, 2.0]]], dtype=np.float32)
    ((actual, expected),) = _compare(lambda t: torch.amax(t, dim=-1), [x])
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0)


def test_max_pool_ties_go_to_the_first_maximum_like_torch():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, 3, 8, 8)).astype(np.float32)  # many equal values in each window
    for kernel, stride in ((2, 2), (3, 2), (3, 1)):
        ((actual, expected),) = _compare(lambda t, k=kernel, s=stride: F.max_pool2d(t, k, s), [x])
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6)


def _pool_inputs(rng, shape):
    """Windows full of ties: small integers, all zeros, and ReLU's zeros next to small integers."""
    yield rng.integers(0, 3, shape).astype(np.float32)
    yield np.zeros(shape, dtype=np.float32)
    yield np.maximum(rng.integers(-3, 3, shape), 0).astype(np.float32)


# (kernel, stride, padding, ceil_mode, spatial size, the form the rule must take)
MAX_POOLS = {
    "2x2_stride2": (2, 2, 0, False, (8, 8), "prefix pools"),
    "3x3_stride3_uneven": (3, 3, 0, False, (10, 8), "prefix pools"),
    "2x3_stride2x3": ((2, 3), (2, 3), 0, False, (8, 9), "prefix pools"),
    "2x2_stride3_gaps": (2, 3, 0, False, (8, 8), "prefix pools"),
    "2x2_stride2_padded": (2, 2, 1, False, (7, 7), "indices"),
    "2x2_stride2_ceil_partial": (2, 2, 0, True, (7, 7), "indices"),
    "3x3_stride2_overlapping": (3, 2, 1, False, (9, 9), "scatter"),
}


@pytest.mark.parametrize("case", sorted(MAX_POOLS))
def test_max_pool_gradient_goes_to_the_first_maximum_exactly_at_two_batch_sizes(case):
    """Every form of the MaxPool rule against torch autograd, element by element, on a dynamic batch."""
    kernel, stride, padding, ceil_mode, size, form = MAX_POOLS[case]
    module = Function(lambda t: F.max_pool2d(t, kernel, stride, padding=padding, ceil_mode=ceil_mode))
    axes = {"x0": {0: "batch"}, "out": {0: "batch"}}
    proto = export(module, (torch.zeros(2, 3, *size),), ["x0"], ["out"], axes)
    edited = gradient(proto, "x0")
    scatters = [node for node in edited.graph.node if node.op_type == "ScatterElements"]
    adds = [a for node in scatters for a in node.attribute if a.name == "reduction" and a.s == b"add"]
    with_indices = any(node.op_type == "MaxPool" and len(node.output) > 1 for node in edited.graph.node)
    assert len(scatters) == 1 and bool(adds) == (form == "scatter")
    assert "MaxUnpool" not in [node.op_type for node in edited.graph.node]  # no CUDA kernel
    assert with_indices == (form != "prefix pools")
    rng = np.random.default_rng(1)
    for batch in (1, 4):
        for x in _pool_inputs(rng, (batch, 3, *size)):
            seeds, grads = run_gradient(proto, {"x0": x}, "x0", rng=rng)
            tensor = torch.tensor(x, requires_grad=True)
            module(tensor).backward(torch.tensor(seeds["out__seed"]))
            if form == "scatter":  # overlapping windows add up, perhaps in another order than torch
                np.testing.assert_allclose(grads["x0"], tensor.grad.numpy(), rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(grads["x0"], tensor.grad.numpy())
