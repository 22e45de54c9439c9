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
