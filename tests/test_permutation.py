"""Permutation importance against answers derived by hand and against scikit-learn."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import float_input, make_model
from onnx import helper
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

import agnostic_explain as ae
from agnostic_explain import masks
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers import base
from agnostic_explain.inspection import permutation
from agnostic_explain.inspection.permutation import SCORERS, PermutationImportance


# -- models ---------------------------------------------------------------------------------
def build_logistic(coef: np.ndarray, intercept: float, softmax: bool = True):
    """Binary logistic regression as softmax([0, x @ w + b]): column 1 is sigmoid(x @ w + b)."""
    n_features = len(coef)
    w = np.zeros((n_features, 2), dtype=np.float32)
    w[:, 1] = coef
    b = np.array([0.0, intercept], dtype=np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    else:
        nodes[-1].output[0] = "y"
    return make_model(nodes, [float_input("x", ["N", n_features])], [float_input("y", ["N", 2])], [("W", w), ("b", b)])


def build_regression(w: np.ndarray, b: float = 0.0):
    """y = x @ w + b, shape (N, 1)."""
    w = np.asarray(w, dtype=np.float32).reshape(-1, 1)
    return make_model(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        [float_input("x", ["N", len(w)])],
        [float_input("y", ["N", 1])],
        [("W", w), ("b", np.array([b], dtype=np.float32))],
    )


class _OnnxEstimator(BaseEstimator):
    """The same ONNX graph behind scikit-learn's estimator API, so that both sides see one function."""

    def __init__(self, proto=None):
        self.proto = proto

    def fit(self, X=None, y=None):
        self.session_ = ort.InferenceSession(self.proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return self

    def _run(self, X):
        return self.session_.run(None, {"x": np.asarray(X, dtype=np.float32)})[0]


class OnnxClassifier(ClassifierMixin, _OnnxEstimator):
    def fit(self, X=None, y=None):
        self.classes_ = np.array([0, 1])
        return super().fit(X, y)

    def predict_proba(self, X):
        return self._run(X)

    def predict(self, X):
        return self.classes_[np.argmax(self._run(X), axis=1)]


class OnnxRegressor(RegressorMixin, _OnnxEstimator):
    def predict(self, X):
        return self._run(X)[:, 0]


@pytest.fixture(scope="module")
def cancer():
    """Breast cancer, standardised, with a logistic regression trained by scikit-learn."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    fitted = LogisticRegression(max_iter=2000).fit(x, y)
    proto = build_logistic(fitted.coef_[0], float(fitted.intercept_[0]))
    estimator = OnnxClassifier(proto).fit()
    np.testing.assert_allclose(estimator.predict_proba(x), fitted.predict_proba(x), atol=1e-5)
    return x, y, proto, estimator


def _fast(proto):
    """Large batches: these tests evaluate about a million rows of a tiny model."""
    return ae.load(proto, providers="cpu", batch_size=4096)


@pytest.fixture(scope="module")
def gaussian():
    return np.random.default_rng(3).normal(size=(1000, 4)).astype(np.float32) * np.float32([1.0, 2.0, 0.5, 1.5])


def _close_in_distribution(ours, theirs, n_repeats, sigmas=5.0):
    """Two estimates of the same expected importances, each a mean over ``n_repeats`` shuffles."""
    spread = np.sqrt((ours.importances_std**2 + theirs.importances_std**2) / n_repeats)
    gap = np.abs(ours.importances_mean - theirs.importances_mean)
    assert np.all(gap <= sigmas * spread + 1e-9), (gap, spread)


class _Result:
    def __init__(self, explanation):
        self.importances_mean = explanation.extras["importances_mean"]
        self.importances_std = explanation.extras["importances_std"]


# -- scikit-learn -------------------------------------------------------------------------
@pytest.mark.parametrize("scoring", ["accuracy", "neg_log_loss"])
def test_matches_sklearn_permutation_importance(cancer, scoring):
    from sklearn.inspection import permutation_importance

    x, y, proto, estimator = cancer
    n_repeats = 10
    theirs = permutation_importance(estimator, x, y, scoring=scoring, n_repeats=n_repeats, random_state=0)
    explanation = PermutationImportance(_fast(proto), scoring=scoring, n_repeats=n_repeats).explain(x, y, random_state=0)
    _close_in_distribution(_Result(explanation), theirs, n_repeats)
    # the most important features agree (the top one by a wide margin on this data)
    assert np.argmax(explanation.extras["importances_mean"]) == np.argmax(theirs.importances_mean)


CLASSIFIER_SCORERS = [name for name, (_, _, response, _) in SCORERS.items() if response != "values"]
REGRESSION_SCORERS = [name for name, (_, _, response, _) in SCORERS.items() if response == "values"]


@pytest.mark.parametrize("scoring", CLASSIFIER_SCORERS)
def test_baseline_score_equals_sklearn_scorer_on_a_classifier(cancer, scoring):
    from sklearn.metrics import get_scorer

    x, y, proto, estimator = cancer
    one_group = np.zeros(x.shape[1], dtype=np.int64)
    explanation = PermutationImportance(proto, scoring=scoring, n_repeats=1, feature_mask=one_group).explain(x, y)
    expected = get_scorer(scoring)(estimator, x, y)
    np.testing.assert_allclose(explanation.base_values, [expected], rtol=1e-6, atol=1e-9)
    assert explanation.extras["scoring"] == scoring


@pytest.mark.parametrize("scoring", REGRESSION_SCORERS)
def test_baseline_score_equals_sklearn_scorer_on_a_regressor(gaussian, scoring):
    from sklearn.metrics import get_scorer

    w = np.array([1.0, -0.5, 0.0, 2.0])
    proto = build_regression(w, 0.3)
    y = gaussian @ w + np.random.default_rng(1).normal(size=len(gaussian))
    estimator = OnnxRegressor(proto).fit()
    explanation = PermutationImportance(proto, scoring=scoring, n_repeats=1, feature_mask=np.zeros(4, int)).explain(gaussian, y)
    np.testing.assert_allclose(explanation.base_values, [get_scorer(scoring)(estimator, gaussian, y)], rtol=1e-6)


def test_scorer_table_agrees_with_sklearn():
    from sklearn.metrics import get_scorer

    responses = {"labels": "predict", "values": "predict", "proba": "predict_proba"}
    for name, (function, sign, response, kwargs) in SCORERS.items():
        scorer = get_scorer(name)
        assert scorer._score_func.__name__ == function, name
        assert scorer._sign == sign, name
        method = scorer._response_method
        if response == "decision":
            assert method == ("decision_function", "predict_proba"), name
        else:
            assert method == responses[response], name
        for key, value in kwargs.items():
            assert scorer._kwargs[key] == value, name


def test_roc_auc_from_logits_equals_roc_auc_from_probabilities(cancer):
    # roc_auc ranks the rows: logit differences and probabilities of class 1 rank them alike
    x, y, proto, _ = cancer
    probabilities = PermutationImportance(proto, scoring="roc_auc", n_repeats=3).explain(x, y, random_state=4)
    logits = _logit_twin(proto)
    raw = PermutationImportance(logits, scoring="roc_auc", n_repeats=3).explain(x, y, random_state=4)
    np.testing.assert_allclose(raw.extras["importances"], probabilities.extras["importances"], atol=1e-9)


def _logit_twin(proto):
    """The same graph without its final Softmax."""
    return build_logistic(_initializer(proto, "W")[:, 1], float(_initializer(proto, "b")[1]), softmax=False)


def _initializer(proto, name: str) -> np.ndarray:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}[name].copy()


def test_log_loss_from_logits_needs_the_softmax_transform(cancer):
    x, y, proto, _ = cancer
    logits = _logit_twin(proto)
    with pytest.raises(ParameterError, match="output_transform='softmax'"):
        PermutationImportance(logits, scoring="neg_log_loss").explain(x, y)
    transformed = PermutationImportance(logits, scoring="neg_log_loss", n_repeats=2).explain(
        x, y, output_transform="softmax", random_state=1
    )
    direct = PermutationImportance(proto, scoring="neg_log_loss", n_repeats=2).explain(x, y, random_state=1)
    np.testing.assert_allclose(transformed.extras["importances"], direct.extras["importances"], rtol=1e-4, atol=1e-6)


# -- analytic answers -----------------------------------------------------------------------
def test_unused_feature_has_exactly_zero_importance(cancer):
    x, y, proto, _ = cancer
    coef = _initializer(proto, "W")[:, 1]
    coef[[3, 7]] = 0.0
    model = _fast(build_logistic(coef, 0.1))
    for scoring in ("accuracy", "neg_log_loss"):
        explanation = PermutationImportance(model, scoring=scoring, n_repeats=5).explain(x, y, random_state=0)
        assert np.all(explanation.extras["importances"][:, [3, 7]] == 0.0)
        assert np.any(explanation.extras["importances"] != 0.0)


def test_linear_regression_mse_importance_is_twice_weight_squared_times_variance(gaussian):
    # For a uniform permutation pi of the rows, E[mean_i (x_i - x_pi(i))^2] = 2 Var(x) exactly
    # (the population variance of the data set), so the MSE against the unshuffled
    # predictions grows by 2 w_j^2 Var(x_j) when column j is shuffled.
    w = np.array([1.0, -0.5, 0.0, 2.0])
    n_repeats = 40
    explanation = PermutationImportance(build_regression(w, 0.7), scoring="neg_mean_squared_error", n_repeats=n_repeats).explain(
        gaussian, random_state=0
    )
    expected = 2 * w**2 * gaussian.astype(np.float64).var(axis=0)
    mean, std = explanation.extras["importances_mean"], explanation.extras["importances_std"]
    assert np.all(np.abs(mean - expected) <= 5 * std / np.sqrt(n_repeats) + 1e-9), (mean, expected)
    assert np.all(explanation.extras["importances"][:, 2] == 0.0)
    assert explanation.base_values.tolist() == [0.0]  # the model agrees with itself
    np.testing.assert_allclose(explanation.values[0], mean, rtol=1e-6)


def test_default_scoring_on_one_value_is_r2_and_equals_mse_over_variance(gaussian):
    # R2 against the unshuffled predictions is 1 - MSE / Var(predictions): with the same
    # shuffles, r2 importances are the MSE importances divided by that variance.
    w = np.array([0.3, 1.0, -1.0, 0.0])
    model = build_regression(w)
    r2 = PermutationImportance(model, n_repeats=3).explain(gaussian, random_state=5)
    mse = PermutationImportance(model, scoring="neg_mean_squared_error", n_repeats=3).explain(gaussian, random_state=5)
    variance = (gaussian @ w.astype(np.float32)).astype(np.float64).var()
    assert r2.extras["scoring"] == "r2" and r2.base_values.tolist() == [1.0]
    np.testing.assert_allclose(r2.extras["importances"] * variance, mse.extras["importances"], rtol=1e-4, atol=1e-9)


def test_callable_scoring_equals_the_named_scorer(gaussian):
    model = build_regression([1.0, 2.0, 0.0, -1.0])

    def neg_mse(y_true, y_pred):
        return -np.mean((y_true - y_pred) ** 2)

    named = PermutationImportance(model, scoring="neg_mean_squared_error", n_repeats=4).explain(gaussian, random_state=2)
    custom = PermutationImportance(model, scoring=neg_mse, n_repeats=4).explain(gaussian, random_state=2)
    np.testing.assert_allclose(custom.extras["importances"], named.extras["importances"], rtol=1e-6)
    assert custom.params["scoring"] == "callable neg_mse"


def test_grouped_columns_move_together(gaussian):
    # Shuffling columns 0 and 1 by one permutation: the increase in MSE is
    # 2 Var(w0 x0 + w1 x1), which includes the covariance of the correlated pair.
    x = gaussian.copy()
    x[:, 1] = 0.8 * x[:, 0] + 0.3 * x[:, 1]
    w = np.array([1.0, 1.5, -1.0, 0.5])
    mask = masks.column_groups(4, [[0, 1]])  # [0, 0, 1, 2]
    n_repeats = 40
    explanation = PermutationImportance(
        build_regression(w), scoring="neg_mean_squared_error", n_repeats=n_repeats, feature_mask=mask
    ).explain(x, random_state=0)
    x64 = x.astype(np.float64)
    expected = 2 * np.array([(x64[:, :2] @ w[:2]).var(), w[2] ** 2 * x64[:, 2].var(), w[3] ** 2 * x64[:, 3].var()])
    extras = explanation.extras
    assert extras["importances"].shape == (n_repeats, 3)
    assert extras["group_values"].shape == (1, 3)
    np.testing.assert_array_equal(extras["feature_mask"], mask)
    assert np.all(np.abs(extras["importances_mean"] - expected) <= 5 * extras["importances_std"] / np.sqrt(n_repeats))
    assert explanation.values[0, 0] == explanation.values[0, 1] == np.float32(extras["importances_mean"][0])
    assert explanation.n_evals == len(x) * (1 + n_repeats * 3)


def test_target_selects_one_output_scored_as_regression(linear, gaussian):
    n_repeats = 40
    explanation = PermutationImportance(linear.proto, scoring="neg_mean_squared_error", n_repeats=n_repeats).explain(
        gaussian, target=1, random_state=0
    )
    expected = 2 * linear.W[:, 1].astype(np.float64) ** 2 * gaussian.astype(np.float64).var(axis=0)
    mean, std = explanation.extras["importances_mean"], explanation.extras["importances_std"]
    assert np.all(np.abs(mean - expected) <= 5 * std / np.sqrt(n_repeats))
    assert explanation.target.tolist() == [1]


def test_classifier_without_y_scores_agreement_with_its_own_predictions(linear, gaussian):
    explanation = PermutationImportance(linear.proto, n_repeats=2).explain(gaussian, random_state=0)
    assert explanation.extras["scoring"] == "accuracy"
    assert explanation.base_values.tolist() == [1.0]
    assert np.all(explanation.extras["importances"] > 0)  # every weight is non-zero
    np.testing.assert_allclose(explanation.data[0], gaussian.astype(np.float64).mean(axis=0), rtol=1e-12)


def test_fixed_inputs_stay_with_their_row(two_input):
    # y = (x * z) @ W with z per row: shuffling x_j moves (x_j, but not z_j) across rows, so
    # the expected MSE increase of output 0 is mean_i mean_k W_j0^2 z_ij^2 (x_ij - x_kj)^2.
    rng = np.random.default_rng(8)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    z = rng.uniform(0.0, 2.0, size=(300, 4)).astype(np.float32)
    n_repeats = 40
    explanation = PermutationImportance(two_input.proto, scoring="neg_mean_squared_error", n_repeats=n_repeats).explain(
        x, target=0, fixed_inputs={"z": z}, random_state=0
    )
    x64, z64 = x.astype(np.float64), z.astype(np.float64)
    gaps = ((x64[:, None, :] - x64[None, :, :]) ** 2).mean(axis=1)  # (rows, features)
    expected = two_input.W[:, 0].astype(np.float64) ** 2 * (z64**2 * gaps).mean(axis=0)
    mean, std = explanation.extras["importances_mean"], explanation.extras["importances_std"]
    assert np.all(np.abs(mean - expected) <= 5 * std / np.sqrt(n_repeats)), (mean, expected)


def test_image_rows_with_a_grid_mask(image_nchw):
    rng = np.random.default_rng(2)
    images = rng.normal(size=(30, 3, 8, 8)).astype(np.float32)
    mask = masks.grid((8, 8), 4)  # 4 patches, shared by the 3 channels
    explanation = PermutationImportance(image_nchw.proto, n_repeats=2, feature_mask=mask).explain(images, random_state=0)
    assert explanation.values.shape == (1, 3, 8, 8)
    assert explanation.extras["feature_mask"].shape == (3, 8, 8)
    np.testing.assert_allclose(explanation.values[0, :, :4, :4], explanation.extras["importances_mean"][0], rtol=1e-6)
    assert explanation.n_evals == 30 * (1 + 2 * 4)


# -- the shared pipeline ----------------------------------------------------------------------
def test_all_shuffles_go_through_one_evaluate_call(monkeypatch, gaussian):
    calls = []
    real = permutation.evaluate

    def counting(*args, **kwargs):
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(permutation, "evaluate", counting)
    monkeypatch.setattr(base, "evaluate", counting)  # the unperturbed rows run through the shared helper
    PermutationImportance(build_regression([1.0, 2.0, 3.0, 4.0]), n_repeats=3).explain(gaussian, random_state=0)
    assert calls == [len(gaussian), 3 * 4 * len(gaussian)]


def test_same_seed_same_result_other_seed_other_result(gaussian):
    model = ae.load(build_regression([1.0, 2.0, 0.5, -1.0]), providers="cpu")
    explainer = PermutationImportance(model, n_repeats=3)
    first = explainer.explain(gaussian[:200], random_state=11)
    second = explainer.explain(gaussian[:200], random_state=11)
    other = explainer.explain(gaussian[:200], random_state=12)
    np.testing.assert_array_equal(first.extras["importances"], second.extras["importances"])
    assert not np.array_equal(first.extras["importances"], other.extras["importances"])


def test_explanation_round_trips_through_save(tmp_path, gaussian):
    explanation = PermutationImportance(build_regression([1.0, 2.0, 0.5, -1.0]), n_repeats=2).explain(gaussian[:100], random_state=0)
    loaded = ae.Explanation.load(explanation.save(tmp_path / "importance"))
    np.testing.assert_array_equal(loaded.extras["importances"], explanation.extras["importances"])
    assert loaded.extras["scoring"] == "r2" and loaded.method == "permutation_importance"
    assert loaded.params["n_repeats"] == 2


# -- errors -----------------------------------------------------------------------------------
class _Counting:
    """A callable model that counts its calls: validation errors must come before any."""

    def __init__(self):
        self.calls = 0

    def __call__(self, rows):
        self.calls += 1
        return rows[:, :1] * 2.0


@pytest.mark.parametrize(
    "params, y, match",
    [
        ({"n_repeats": 0}, None, "n_repeats"),
        ({"n_repeats": 1.5}, None, "n_repeats"),
        ({"n_repeats": True}, None, "n_repeats"),
        ({"scoring": "no_such_score"}, None, "scoring"),
        ({"scoring": "jaccard"}, None, "scoring"),  # an sklearn scorer this table does not map
        ({"feature_mask": [0, 0, 2]}, None, "feature_mask"),
        ({"feature_mask": [0, 1]}, None, "feature_mask"),
        ({}, np.zeros(7), "y must have one value per row"),
        ({}, np.float64(1.0), "y must have one value per row"),
    ],
)
def test_invalid_arguments_fail_before_any_model_call(params, y, match):
    model = _Counting()
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with pytest.raises(ParameterError, match=match):
        PermutationImportance(model, **params).explain(x, y)
    assert model.calls == 0


def test_scorer_that_does_not_fit_the_output(linear, gaussian):
    x = gaussian[:50]
    with pytest.raises(ParameterError, match="one value per row"):
        PermutationImportance(linear.proto, scoring="r2").explain(x)
    with pytest.raises(ParameterError, match="compares classes"):
        PermutationImportance(build_regression([1.0, 0.0, 0.0, 0.0]), scoring="accuracy").explain(x)
    with pytest.raises(ParameterError, match="class indices 0 .. 2"):
        PermutationImportance(linear.proto, scoring="accuracy").explain(x, np.full(len(x), 3))
    with pytest.raises(ParameterError, match="y is required"):
        PermutationImportance(build_regression([1.0, 0.0, 0.0, 0.0]), scoring="roc_auc").explain(x)
    with pytest.raises(ParameterError, match="output_transform"):
        PermutationImportance(linear.proto, scoring="neg_log_loss").explain(x, np.zeros(len(x), int), output_transform="tanh")


def test_numpy_scorers_equal_sklearn_metrics():
    from sklearn import metrics

    rng = np.random.default_rng(0)
    labels, other = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    values, noisy = rng.normal(size=200), rng.normal(size=200)
    constant = np.full(200, 2.5)
    for name, function in permutation._FAST.items():
        reference = getattr(metrics, name)
        pairs = [(labels, other), (labels, labels)] if name == "accuracy_score" else [
            (values, noisy), (values, values), (constant, constant), (constant, noisy)
        ]
        for y_true, y_pred in pairs:
            np.testing.assert_allclose(function(y_true, y_pred), reference(y_true, y_pred), rtol=1e-12, err_msg=name)
