"""KernelShap: exact Shapley values by brute force, the linear closed form, efficiency, shap parity."""

from __future__ import annotations

import itertools
from math import comb, factorial

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain.perturbation.background import Background, summarize, validate_background
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.kernel_shap import KernelShap, budget, coalitions

ATOL = 1e-5


def build_interacting(make_onnx_model, n_features: int, seed: int = 3, n_classes: int = 3):
    """y = (tanh(x W1 + b1) * relu(x W2 + b2)) W3 + b3: products of nonlinear features interact."""
    rng = np.random.default_rng(seed)
    hidden = 6
    arrays = {
        "W1": rng.normal(size=(n_features, hidden)), "b1": rng.normal(size=hidden),
        "W2": rng.normal(size=(n_features, hidden)), "b2": rng.normal(size=hidden),
        "W3": rng.normal(size=(hidden, n_classes)), "b3": rng.normal(size=n_classes),
    }
    arrays = {name: value.astype(np.float32) for name, value in arrays.items()}
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["a"]),
        helper.make_node("Tanh", ["a"], ["ta"]),
        helper.make_node("Gemm", ["x", "W2", "b2"], ["c"]),
        helper.make_node("Relu", ["c"], ["rc"]),
        helper.make_node("Mul", ["ta", "rc"], ["p"]),
        helper.make_node("Gemm", ["p", "W3", "b3"], ["y"]),
    ]
    proto = make_onnx_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_classes])],
        list(arrays.items()),
    )
    return proto


def build_mlp(make_onnx_model, n_features: int, hidden: int = 16, seed: int = 9, n_classes: int = 2):
    """y = relu(x W1 + b1) W2 + b2, weights scaled by 1 / sqrt(fan-in): a tabular MLP."""
    rng = np.random.default_rng(seed)
    arrays = {
        "W1": rng.normal(size=(n_features, hidden)) / np.sqrt(n_features), "b1": rng.normal(size=hidden) * 0.1,
        "W2": rng.normal(size=(hidden, n_classes)) / np.sqrt(hidden), "b2": rng.normal(size=n_classes) * 0.1,
    }
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["a"]),
        helper.make_node("Relu", ["a"], ["h"]),
        helper.make_node("Gemm", ["h", "W2", "b2"], ["y"]),
    ]
    return make_onnx_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_classes])],
        [(name, value.astype(np.float32)) for name, value in arrays.items()],
    )


def session_function(proto):
    """The model as a plain numpy function, run by ONNX Runtime outside the library."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return lambda rows: session.run(None, {"x": np.asarray(rows, dtype=np.float32)})[0]


def exact_shapley(function, x, background, weights, mask, target):
    """Shapley values of v(S) = sum_b w_b f(x_S, b_rest)[target], by enumerating every coalition."""
    m = int(mask.max()) + 1
    subsets = np.array(list(itertools.product([False, True], repeat=m)))
    rows = np.where(subsets[:, None, mask], x, background[None])  # (2^m, n_background, n_features)
    values = function(rows.reshape(-1, x.shape[-1]))[:, target].reshape(len(subsets), len(background)) @ weights
    value = {tuple(subset): v for subset, v in zip(subsets.tolist(), values.astype(np.float64))}
    phi = np.zeros(m)
    for subset in subsets:
        size = int(subset.sum())
        for group in np.flatnonzero(~subset):
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            added = subset.copy()
            added[group] = True
            phi[group] += weight * (value[tuple(added.tolist())] - value[tuple(subset.tolist())])
    return phi, value[(False,) * m]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return rng.normal(size=(3, 12)).astype(np.float32), rng.normal(size=(5, 12)).astype(np.float32)


@pytest.mark.parametrize(
    ("n_features", "mask"),
    [
        pytest.param(8, None, id="8-features"),
        pytest.param(12, None, id="12-features"),
        pytest.param(12, np.array([2, 0, 0, 3, 1, 1, 0, 2, 3, 3, 1, 2]), id="12-features-in-4-groups"),
    ],
)
def test_equals_brute_force_shapley_values(make_onnx_model, data, n_features, mask):
    proto = build_interacting(make_onnx_model, n_features)
    x, background = data[0][:, :n_features], data[1][:, :n_features]
    explanation = KernelShap(proto, background, feature_mask=mask).explain(x, target=1)
    group_mask = np.arange(n_features) if mask is None else mask
    function = session_function(proto)
    weights = np.full(len(background), 1 / len(background))
    assert explanation.extras["exact"]
    for row in range(len(x)):
        phi, expected = exact_shapley(function, x[row], background, weights, group_mask, 1)
        assert np.abs(phi).max() > 1e-2
        np.testing.assert_allclose(explanation.extras["group_values"][row], phi, atol=ATOL, rtol=0)
        np.testing.assert_allclose(explanation.values[row], phi[group_mask], atol=ATOL, rtol=0)
        np.testing.assert_allclose(explanation.extras["expected_value"][row], expected, atol=ATOL, rtol=0)


def test_weighted_background_summary_is_exact_too(make_onnx_model, data):
    proto = build_interacting(make_onnx_model, 6)
    x, pool = data[0][:, :6], np.random.default_rng(4).normal(size=(40, 6)).astype(np.float32)
    summary = summarize(pool, k=4)
    explanation = KernelShap(proto, summary).explain(x, target=0)
    for row in range(len(x)):
        phi, _ = exact_shapley(session_function(proto), x[row], summary.rows, summary.weights, np.arange(6), 0)
        np.testing.assert_allclose(explanation.extras["group_values"][row], phi, atol=ATOL, rtol=0)


def test_linear_model_closed_form(make_linear):
    case = make_linear(n_features=30, seed=5)
    rng = np.random.default_rng(2)
    x, background = rng.normal(size=(4, 30)).astype(np.float32), rng.normal(size=(10, 30)).astype(np.float32)
    explanation = KernelShap(case.proto, background, nsamples=500).explain(x, target=2, random_state=0)
    expected = case.W[:, 2] * (x - background.mean(axis=0))  # w_i (x_i - E[x_i]), sampled design or not
    assert not explanation.extras["exact"]
    np.testing.assert_allclose(explanation.values, expected, atol=1e-4, rtol=0)


def test_efficiency_on_every_row_when_sampling(make_onnx_model):
    rng = np.random.default_rng(8)
    proto = build_interacting(make_onnx_model, 20)
    x, background = rng.normal(size=(6, 20)).astype(np.float32), rng.normal(size=(4, 20)).astype(np.float32)
    explanation = KernelShap(proto, background, nsamples=300).explain(x, target=0, random_state=1)
    group_values = explanation.extras["group_values"]
    change = explanation.base_values - explanation.extras["expected_value"]
    np.testing.assert_allclose(group_values.sum(axis=1), change, atol=ATOL, rtol=0)
    np.testing.assert_allclose(explanation.values.sum(axis=1, dtype=np.float64), change, atol=ATOL, rtol=0)
    assert explanation.n_evals == 6 + 6 * (300 + 1) * 4  # f(x), then every coalition and E[f(background)]


def test_logit_link_with_probabilities(make_onnx_model, data):
    proto = build_interacting(make_onnx_model, 8)
    x, background = data[0][:, :8], data[1][:, :8]
    explanation = KernelShap(proto, background, link="logit").explain(x, target=2, output_transform="softmax")
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    change = logit(explanation.base_values) - explanation.extras["expected_value"]
    np.testing.assert_allclose(explanation.extras["group_values"].sum(axis=1), change, atol=ATOL, rtol=0)
    with pytest.raises(ParameterError, match="link='logit'"):
        KernelShap(proto, background, link="logit").explain(x, target=2)  # raw logits are not probabilities


def test_random_state_reproducible(make_onnx_model, data):
    proto = build_interacting(make_onnx_model, 12)
    explainer = KernelShap(proto, data[1], nsamples=200)
    first, second = (explainer.explain(data[0], target=0, random_state=5) for _ in range(2))
    np.testing.assert_array_equal(first.values, second.values)


def test_coalition_design_follows_shap():
    shap = pytest.importorskip("shap")
    keep, kernel = coalitions(12, 2072, np.random.default_rng(0))
    explainer = shap.KernelExplainer(lambda z: z.sum(axis=1), np.zeros((1, 12)))
    explainer.explain(np.arange(1.0, 13.0)[None], nsamples=2072, l1_reg=False)
    sizes, theirs = keep.sum(axis=1), explainer.maskMatrix.astype(bool)
    enumerated = 2 * (comb(12, 1) + comb(12, 2) + comb(12, 3))  # sizes 1-3 and 9-11 fit the budget
    np.testing.assert_array_equal(keep[:enumerated], theirs[:enumerated])  # same order, same weights
    np.testing.assert_allclose(kernel[:enumerated], explainer.kernelWeights[:enumerated], rtol=1e-12)
    assert len(keep) == len(theirs) == 2072 and len(np.unique(keep, axis=0)) == 2072
    assert set(sizes[enumerated:]) == set(theirs[enumerated:].sum(axis=1)) == {4, 5, 6, 7, 8}
    assert np.isclose(kernel.sum(), 1.0) and np.isclose(explainer.kernelWeights.sum(), 1.0)
    sampled = keep[enumerated:][sizes[enumerated:] != 6]
    complements = {tuple(row) for row in (~sampled).tolist()}
    assert all(tuple(row) in complements for row in sampled[:-1].tolist())  # sampled in pairs
    assert budget("auto", 12) == 4094 and budget("auto", 30) == 2108 and budget(10**6, 4) == 14


def test_matches_shap_kernel_explainer(make_onnx_model):
    shap = pytest.importorskip("shap")
    rng = np.random.default_rng(21)
    proto = build_mlp(make_onnx_model, 30)
    x, background = rng.normal(size=(3, 30)).astype(np.float32), rng.normal(size=(10, 30)).astype(np.float32)
    function = session_function(proto)
    ours = KernelShap(proto, background, nsamples=2048).explain(x, target=1, random_state=0)
    np.random.seed(0)  # shap samples with the global numpy generator
    theirs = shap.KernelExplainer(lambda z: function(z)[:, 1], background).shap_values(
        x, nsamples=2048, l1_reg=False, silent=True
    )
    for row in range(len(x)):
        assert np.corrcoef(ours.values[row], theirs[row])[0, 1] >= 0.99


def test_summaries():
    data = np.random.default_rng(0).normal(size=(50, 3))
    summary = summarize(data, k=5, random_state=0)
    assert summary.rows.shape == (5, 3) and np.isclose(summary.weights.sum(), 1.0)
    assert all(np.isin(summary.rows[:, column], data[:, column]).all() for column in range(3))  # snapped
    drawn = summarize(data, k=5, method="random", random_state=1)
    assert np.isin(drawn.rows, data).all() and np.allclose(drawn.weights, 0.2)
    np.testing.assert_array_equal(summarize(data, k=5, method="random", random_state=1).rows, drawn.rows)
    with pytest.raises(ParameterError, match="k must be"):
        summarize(data, k=51)
    with pytest.raises(ParameterError, match="method"):
        summarize(data, k=5, method="median")


def test_summary_matches_shap_kmeans():
    shap = pytest.importorskip("shap")
    data = np.random.default_rng(3).normal(size=(60, 4))
    ours, theirs = summarize(data, k=6), shap.kmeans(data, 6)
    np.testing.assert_allclose(ours.rows, theirs.data)
    np.testing.assert_allclose(ours.weights, theirs.weights)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            {"background": np.zeros((5, 7))}, r"background of shape \(5, 7\).*\(n_background, 4\)", id="background-width"
        ),
        pytest.param({"background": np.zeros((0, 4))}, "background", id="background-empty"),
        pytest.param({"background": np.full((2, 4), np.nan)}, "NaN", id="background-nan"),
        pytest.param({"nsamples": 3}, "nsamples=3 is too small", id="nsamples-too-small"),
        pytest.param({"nsamples": 0.5}, "nsamples must be", id="nsamples-float"),
        pytest.param({"feature_mask": np.zeros(3, dtype=int)}, "feature_mask of shape", id="mask-broadcast"),
        pytest.param({"feature_mask": np.array([0, 2, 2, 0])}, "feature_mask ids", id="mask-missing-id"),
        pytest.param({"link": "probit"}, "link must be", id="link"),
        pytest.param({"background": Background(np.zeros((2, 4)), np.array([1.0]))}, "weights", id="weights"),
    ],
)
def test_bad_input(linear, arguments, message):
    settings = {"background": np.zeros((2, 4)), **arguments}
    model = ae.load(linear.proto)
    calls = []
    model_run = model.run
    model.run = lambda *args, **kwargs: calls.append(1) or model_run(*args, **kwargs)
    with pytest.raises(ParameterError, match=message):
        KernelShap(model, **settings).explain(np.ones((2, 4), dtype=np.float32), target=0)
    assert not calls  # validated before any model call


def test_single_background_row_and_group():
    rows = np.ones((2, 3), dtype=np.float32)
    assert validate_background(np.zeros(3), rows).rows.shape == (1, 3)
    model = ae.load(lambda z: z.sum(axis=1, keepdims=True) ** 2)
    explanation = KernelShap(model, np.zeros(3), feature_mask=np.zeros(3, dtype=int)).explain(rows, target=0)
    np.testing.assert_allclose(explanation.values, 9.0)
