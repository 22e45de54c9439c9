"""Global surrogates: fidelity on a real MLP, readable rules, linear coefficients, errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")

from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import r2_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeRegressor  # noqa: E402

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.errors import InputError, InputShapeError, ParameterError  # noqa: E402
from agnostic_explain.inspection.global_surrogate import GlobalSurrogate, simplify_path  # noqa: E402
from converters.sklearn import from_sklearn  # noqa: E402

from conftest import build_linear, build_sum_of_squares  # noqa: E402


@pytest.fixture(scope="module")
def cancer():
    """A breast-cancer MLP converted to ONNX, with its names in the metadata."""
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    mlp = make_pipeline(
        StandardScaler(), MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=0))
    mlp.fit(x, data.target)
    proto = from_sklearn(mlp, x, feature_names=list(data.feature_names),
                         class_names=list(data.target_names))
    return ae.load(proto, providers="cpu"), x, data


def test_tree_surrogate_of_mlp_is_faithful_and_readable(cancer):
    model, x, data = cancer
    surrogate = GlobalSurrogate(model, "tree", max_depth=4, random_state=0).fit(x)
    assert surrogate.task == "classification"
    assert surrogate.fidelity >= 0.9
    assert surrogate.n_heldout == 143  # ceil(0.25 * 569)
    assert surrogate.coverage == 1.0
    # fidelity is the agreement with the model's own labels on held-out rows, recomputed here
    labels = model.predict(x).argmax(axis=1)
    _, x_test, _, y_test = train_test_split(x.astype(np.float64), labels, test_size=0.25,
                                            random_state=0)
    assert surrogate.fidelity == pytest.approx(np.mean(surrogate.estimator.predict(x_test) == y_test))
    rules = surrogate.rules()
    assert len(rules) == surrogate.estimator.get_n_leaves()
    names = set(data.feature_names)
    for rule in rules:
        assert rule.startswith("IF ") and " THEN " in rule
        outcome = rule.split(" THEN ")[1].split(" (")[0]
        assert outcome in ("malignant", "benign")
        for term in rule[3:].split(" THEN ")[0].split(" AND "):
            assert any(name in term for name in names), term
    # per-rule supports partition the held-out rows
    supports = [int(rule.rsplit(" on ", 1)[1].split()[0]) for rule in rules]
    assert sum(supports) == surrogate.n_heldout
    text = str(surrogate)
    assert "fidelity" in text and rules[0] in text


def test_rules_kind_keeps_supported_rules_and_reports_coverage(cancer):
    model, x, _ = cancer
    tree = GlobalSurrogate(model, "tree", random_state=0).fit(x)
    rules = GlobalSurrogate(model, "rules", random_state=0, min_support=0.05).fit(x)
    assert rules.fidelity == tree.fidelity
    kept = rules.rules()
    assert 0 < len(kept) < len(tree.rules()) and set(kept) <= set(tree.rules())
    supports = [int(rule.rsplit(" on ", 1)[1].split()[0]) for rule in kept]
    assert rules.coverage == pytest.approx(sum(supports) / rules.n_heldout)
    assert 0.5 < rules.coverage < 1.0


def test_linear_coefficients_equal_sklearn_on_standardised_rows(cancer):
    model, x, data = cancer
    surrogate = GlobalSurrogate(model, "linear", random_state=3).fit(x)
    labels = model.predict(x).argmax(axis=1)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float64), labels, test_size=0.25, random_state=3)
    scaler = StandardScaler().fit(x_train)
    reference = LogisticRegression(max_iter=1000).fit(scaler.transform(x_train), y_train)
    coefficients = dict(surrogate.coefficients())
    expected = dict(zip(data.feature_names, reference.coef_[0]))
    assert coefficients == pytest.approx(expected, rel=1e-6)
    magnitudes = [abs(value) for _, value in surrogate.coefficients()]
    assert magnitudes == sorted(magnitudes, reverse=True)
    assert surrogate.fidelity == pytest.approx(reference.score(scaler.transform(x_test), y_test))
    assert surrogate.fidelity >= 0.9
    with pytest.raises(ParameterError, match="kind"):
        surrogate.rules()


def test_linear_regression_recovers_scaled_weights():
    case = build_linear(n_features=4, n_classes=1, seed=5)
    x = np.random.default_rng(0).normal(size=(300, 4)).astype(np.float32) * [1, 2, 3, 4]
    surrogate = GlobalSurrogate(case.proto, "linear", random_state=0,
                                feature_names=["a", "b", "c", "d"]).fit(x)
    assert surrogate.task == "regression"
    assert surrogate.fidelity == pytest.approx(1.0, abs=1e-6)
    x_train, _ = train_test_split(x.astype(np.float64), test_size=0.25, random_state=0)
    # a standardised coefficient is the raw weight times the feature's spread
    expected = dict(zip("abcd", case.W[:, 0] * x_train.std(axis=0)))
    assert dict(surrogate.coefficients()) == pytest.approx(expected, rel=1e-4)


def test_tree_regression_reports_r2():
    proto = build_sum_of_squares(n_features=3).proto
    x = np.random.default_rng(1).normal(size=(400, 3)).astype(np.float32)
    surrogate = GlobalSurrogate(proto, "tree", max_depth=3, random_state=0).fit(x)
    y = (x.astype(np.float64) ** 2).sum(axis=1)
    x_train, x_test, y_train, y_test = train_test_split(
        x.astype(np.float64), y, test_size=0.25, random_state=0)
    reference = DecisionTreeRegressor(max_depth=3, random_state=0).fit(x_train, y_train)
    assert surrogate.fidelity == pytest.approx(r2_score(y_test, reference.predict(x_test)), rel=1e-4)
    assert 0.3 < surrogate.fidelity < 1.0
    rules = surrogate.rules()
    assert len(rules) == 8
    assert all("mean abs. error" in rule or "n/a on 0 rows" in rule for rule in rules)
    # the regression leaf values are the tree's means
    leaves = reference.tree_.value[reference.tree_.children_left == -1, 0, 0]
    printed = sorted(float(rule.split(" THEN ")[1].split(" (")[0]) for rule in rules)
    assert printed == pytest.approx(sorted(leaves), rel=1e-3)
    assert "R²" in str(surrogate)


def test_same_random_state_gives_same_surrogate(cancer):
    model, x, _ = cancer
    first = GlobalSurrogate(model, "tree", random_state=7).fit(x)
    second = GlobalSurrogate(model, "tree", random_state=7).fit(x)
    assert first.rules() == second.rules() and first.fidelity == second.fidelity
    other = GlobalSurrogate(model, "tree", random_state=8).fit(x)
    assert other.rules() != first.rules()


def test_simplify_path_merges_bounds_into_the_tightest():
    path = [(3, "<=", 10.0), (1, ">", 0.5), (3, "<=", 7.5), (3, ">", 2.0), (1, ">", 0.9),
            (3, ">", 1.0)]
    assert simplify_path(path) == ((3, 2.0, 7.5), (1, 0.9, None))
    assert simplify_path([]) == ()
    with pytest.raises(ParameterError, match="operator"):
        simplify_path([(0, "<", 1.0)])


def test_rule_text_uses_merged_bounds_and_class_names():
    case = build_linear(n_features=2, n_classes=2, seed=0)
    x = np.random.default_rng(2).normal(size=(400, 2)).astype(np.float32)
    surrogate = GlobalSurrogate(case.proto, max_depth=4, random_state=0, class_names=["no", "yes"],
                                feature_names=["left", "right"]).fit(x)
    for rule in surrogate.rules():
        condition = rule[3:].split(" THEN ")[0]
        for name in ("left", "right"):
            assert condition.count(name) <= 1  # one merged term per feature
        assert rule.split(" THEN ")[1].split(" (")[0] in ("no", "yes")


@pytest.mark.parametrize("kwargs, parameter", [
    ({"kind": "forest"}, "kind"), ({"max_depth": 0}, "max_depth"),
    ({"max_depth": 2.5}, "max_depth"), ({"test_size": 1.0}, "test_size"),
])
def test_invalid_parameters_are_named(kwargs, parameter):
    case = build_linear()
    x = np.zeros((10, 4), dtype=np.float32)
    with pytest.raises(ParameterError, match=parameter):
        GlobalSurrogate(case.proto, **kwargs).fit(x)


def test_invalid_rows():
    case = build_linear()
    with pytest.raises(InputError, match="X"):
        GlobalSurrogate(case.proto).fit(np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(InputShapeError):
        GlobalSurrogate(case.proto).fit(np.zeros((10, 5), dtype=np.float32))
    with pytest.raises(InputShapeError, match="X"):
        GlobalSurrogate(case.proto).fit(np.zeros(10, dtype=np.float32))
    with pytest.raises(ParameterError, match="class_names"):
        GlobalSurrogate(case.proto, class_names=["a"]).fit(np.ones((10, 4), dtype=np.float32))
