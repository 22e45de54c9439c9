"""ShapleySampling: exact efficiency, closed forms, convergence to brute-force values, Captum."""

from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain.perturbation.background import summarize
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.shapley_sampling import ShapleySampling


def build_quadratic(make_onnx_model, n_features: int, seed: int = 0):
    """y = x A x^T + c x^T, A strictly upper triangular: pairwise interactions only, shape (N, 1)."""
    rng = np.random.default_rng(seed)
    a = np.triu(rng.normal(size=(n_features, n_features)), k=1).astype(np.float32)
    c = rng.normal(size=(n_features, 1)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["xa"]),
        helper.make_node("Mul", ["xa", "x"], ["terms"]),
        helper.make_node("ReduceSum", ["terms", "axes"], ["pairs"], keepdims=1),
        helper.make_node("MatMul", ["x", "c"], ["linear"]),
        helper.make_node("Add", ["pairs", "linear"], ["y"]),
    ]
    proto = make_onnx_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [("A", a), ("c", c), ("axes", np.array([1], dtype=np.int64))],
    )
    return proto, a, c[:, 0]


def build_tanh_mlp(make_onnx_model, n_features: int, seed: int = 4):
    """y = tanh(x W1 + b1) W2: every subset of features interacts a little, shape (N, 2)."""
    rng = np.random.default_rng(seed)
    w1, b1 = rng.normal(size=(n_features, 8)).astype(np.float32), rng.normal(size=8).astype(np.float32)
    w2 = rng.normal(size=(8, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["a"]),
        helper.make_node("Tanh", ["a"], ["h"]),
        helper.make_node("MatMul", ["h", "W2"], ["y"]),
    ]
    proto = make_onnx_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [("W1", w1), ("b1", b1), ("W2", w2)],
    )
    return proto, lambda rows: np.tanh(rows @ w1.astype(np.float64) + b1) @ w2.astype(np.float64)


def exact_shapley(function, x, background, weights):
    """Shapley values of v(S) = sum_b w_b f(x_S, b_rest), every coalition enumerated; f returns scalars."""
    m = len(x)
    subsets = np.array(list(itertools.product([False, True], repeat=m)))
    rows = np.where(subsets[:, None, :], x, background[None])
    values = function(rows.reshape(-1, m)).reshape(len(subsets), len(background)) @ weights
    value = dict(zip(map(tuple, subsets.tolist()), values))
    phi = np.zeros(m)
    for subset in subsets:
        size = int(subset.sum())
        for group in np.flatnonzero(~subset):
            added = subset.copy()
            added[group] = True
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            phi[group] += weight * (value[tuple(added.tolist())] - value[tuple(subset.tolist())])
    return phi


def test_antithetic_walks_are_exact_for_pairwise_interactions(make_onnx_model):
    # A pair's interaction goes to whichever feature joins second, so a walk and its reverse split it evenly.
    proto, a, c = build_quadratic(make_onnx_model, 7)
    rng = np.random.default_rng(1)
    x, baseline = rng.normal(size=(3, 7)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    explanation = ShapleySampling(proto, baseline=baseline, n_permutations=1).explain(x, target=0, random_state=0)
    x64, b64, a64 = x.astype(np.float64), baseline.astype(np.float64), a.astype(np.float64) + a.T
    dx = x64 - b64
    # pair (i, j) gives i: A_ij (x_i - b_i) b_j when i joins first, A_ij (x_i - b_i) x_j when second
    pair = 0.5 * a64 * dx[:, :, None] * (x64[:, None, :] + b64[None, None, :])
    expected = c * dx + pair.sum(axis=2)
    np.testing.assert_allclose(explanation.values, expected, atol=1e-4, rtol=0)


def test_efficiency_is_exact_and_values_converge(make_onnx_model):
    proto, function = build_tanh_mlp(make_onnx_model, 6)
    rng = np.random.default_rng(2)
    x, background = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(3, 6)).astype(np.float32)
    weights = np.full(3, 1 / 3)
    exact = np.array([exact_shapley(lambda r: function(r)[:, 1], row, background, weights) for row in x])
    errors = []
    for count in (2, 200):
        explanation = ShapleySampling(proto, background=background, n_permutations=count).explain(
            x, target=1, random_state=3
        )
        group_values = explanation.extras["group_values"]
        change = explanation.base_values - explanation.extras["expected_value"]
        np.testing.assert_allclose(group_values.sum(axis=1), change, atol=1e-9, rtol=0)  # exact, any count
        errors.append(np.abs(group_values - exact).max())
    assert errors[1] < 0.05 * np.abs(exact).max() and errors[1] < errors[0]


def test_groups_get_one_value_each(make_onnx_model):
    proto, a, c = build_quadratic(make_onnx_model, 6)
    x = np.random.default_rng(5).normal(size=(2, 6)).astype(np.float32)
    mask = np.array([0, 1, 0, 2, 1, 2])
    explanation = ShapleySampling(proto, feature_mask=mask, n_permutations=3).explain(x, target=0, random_state=0)
    group_values = explanation.extras["group_values"]
    assert group_values.shape == (2, 3)
    np.testing.assert_array_equal(explanation.values, group_values[:, mask].astype(np.float32))
    np.testing.assert_allclose(group_values.sum(axis=1), explanation.base_values, atol=1e-5)  # baseline 0: f(0) = 0


def test_random_state_and_deduplicated_coalitions(make_onnx_model):
    proto, _ = build_tanh_mlp(make_onnx_model, 3)
    x = np.ones((2, 3), dtype=np.float32)
    explainer = ShapleySampling(proto, n_permutations=20)
    first, second = (explainer.explain(x, target=0, random_state=9) for _ in range(2))
    np.testing.assert_array_equal(first.values, second.values)
    assert first.extras["n_coalitions"] == 8  # every subset of 3 features, each run once per row
    assert first.n_evals == 2 + 2 * 7


def test_weighted_background(make_onnx_model):
    proto, function = build_tanh_mlp(make_onnx_model, 4)
    pool = np.random.default_rng(6).normal(size=(30, 4))
    summary = summarize(pool, k=3)
    x = np.random.default_rng(7).normal(size=(2, 4)).astype(np.float32)
    explanation = ShapleySampling(proto, background=summary, n_permutations=60).explain(x, target=0, random_state=1)
    for row in range(2):
        exact = exact_shapley(lambda r: function(r)[:, 0], x[row], summary.rows, summary.weights)
        np.testing.assert_allclose(explanation.extras["group_values"][row], exact, atol=0.05 * np.abs(exact).max())


def test_approaches_exact_values_like_captum(torch_mlp):
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    net, onnx_bytes = torch_mlp
    x = np.random.default_rng(8).normal(size=(3, 10)).astype(np.float32)
    baseline = np.full((1, 10), 0.25, dtype=np.float32)

    def forward(rows):
        with torch.no_grad():
            return net(torch.from_numpy(np.asarray(rows, dtype=np.float32))).numpy()[:, 2].astype(np.float64)

    exact = np.array([exact_shapley(forward, row, baseline, np.ones(1)) for row in x])
    ours = ShapleySampling(ae.load(onnx_bytes, providers="cpu"), baseline=baseline, n_permutations=100).explain(
        x, target=2, random_state=0
    )
    torch.manual_seed(0)
    with torch.no_grad():
        theirs = captum_attr.ShapleyValueSampling(net).attribute(
            torch.from_numpy(x), baselines=torch.from_numpy(baseline), target=2, n_samples=200,
            perturbations_per_eval=64,
        ).numpy()
    scale = np.abs(exact).max()
    ours_error, captum_error = np.abs(ours.values - exact).max(), np.abs(theirs - exact).max()
    assert scale > 1e-2
    assert ours_error < 0.05 * scale and captum_error < 0.1 * scale  # same walks budget: 200 each
    np.testing.assert_allclose(ours.values.sum(axis=1), theirs.sum(axis=1), atol=1e-4)  # both exactly efficient


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"n_permutations": 0}, "n_permutations must be", id="permutations-zero"),
        pytest.param({"n_permutations": 2.5}, "n_permutations must be", id="permutations-float"),
        pytest.param({"baseline": np.zeros(3)}, "baseline of shape", id="baseline-shape"),
        pytest.param({"background": np.zeros((2, 5))}, r"background of shape \(2, 5\)", id="background-width"),
        pytest.param({"feature_mask": np.zeros((2, 2), dtype=int)}, "feature_mask of shape", id="mask-broadcast"),
    ],
)
def test_bad_input(linear, arguments, message):
    model = ae.load(linear.proto)
    calls = []
    model_run = model.run
    model.run = lambda *args, **kwargs: calls.append(1) or model_run(*args, **kwargs)
    with pytest.raises(ParameterError, match=message):
        ShapleySampling(model, **arguments).explain(np.ones((2, 4), dtype=np.float32), target=0)
    assert not calls
