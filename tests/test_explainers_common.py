"""Every registered explainer through the same checks: shapes, determinism, shared names, error paths.

The explainers come from the registry (``agnostic_explain.explainers.registry``): a new method is
covered here as soon as it is registered. Each runs with its default settings; a parameter that
takes a data set (``data_params``: a background, training data) gets rows of the test's data.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import build_linear

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import InputShapeError, NonFiniteInputError, ParameterError, TargetError
from agnostic_explain.explainers.registry import explainers

N_FEATURES = 4


def _factory(cls):
    """Build ``cls`` for a model, filling its required data parameters from ``data``."""
    signature = inspect.signature(cls.__init__)
    required = [
        name for name, parameter in list(signature.parameters.items())[2:]
        if parameter.default is inspect.Parameter.empty and parameter.kind is not parameter.VAR_KEYWORD
    ]
    missing = [name for name in required if name not in cls.data_params]
    assert not missing, f"{cls.__name__} requires {missing}, which are not data parameters"
    return lambda model, data: cls(model, **{name: data[:5] for name in required})


def _registered(kind: str, family: str = "any") -> dict:
    return {name: _factory(cls) for name, cls in explainers().items()
            if kind in cls.row_kinds and cls.model_family == family}


EXPLAINERS = _registered("tabular")
IMAGE_EXPLAINERS = _registered("image")
TREE_EXPLAINERS = _registered("tabular", "trees")


@pytest.fixture(scope="module")
def case():
    return build_linear(n_features=N_FEATURES, n_classes=3, seed=5)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(40, N_FEATURES)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_shapes_fields_and_determinism(name, case, data):
    model = ae.load(case.proto, providers="cpu")
    x = data[:3]
    first = EXPLAINERS[name](model, data).explain(x, target=1, random_state=7, progress=False)
    second = EXPLAINERS[name](model, data).explain(x, target=1, random_state=7, progress=False)
    assert first.values.shape == x.shape
    assert np.all(np.isfinite(first.values))
    np.testing.assert_array_equal(first.values, second.values)
    expected_base = (x @ case.W + case.b)[:, 1]
    np.testing.assert_allclose(first.base_values, expected_base, rtol=1e-5, atol=1e-5)
    assert first.n_evals > len(x) and first.seconds > 0
    assert first.target.tolist() == [1, 1, 1]
    assert first.method and first.input_name == "x" and first.output_name == "y"


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explain_takes_the_shared_names(name, case, data):
    explainer = EXPLAINERS[name](ae.load(case.proto, providers="cpu"), data)
    parameters = inspect.signature(explainer.explain).parameters
    for shared in ("x", "target", "output", "input", "fixed_inputs", "output_transform", "progress", "random_state"):
        assert shared in parameters, f"{name}.explain lacks {shared!r}"


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_error_paths(name, case, data):
    explainer = EXPLAINERS[name](ae.load(case.proto, providers="cpu"), data)
    bad = data[:2].copy()
    bad[0, 1] = np.nan
    with pytest.raises(NonFiniteInputError):
        explainer.explain(bad, target=0)
    with pytest.raises(InputShapeError, match="expects shape"):
        explainer.explain(np.zeros((2, N_FEATURES + 1), dtype=np.float32), target=0)
    with pytest.raises(TargetError, match="out of range"):
        explainer.explain(data[:2], target=3)
    with pytest.raises(ParameterError, match="output_transform"):
        explainer.explain(data[:2], target=0, output_transform="tanh")


@pytest.fixture(scope="module")
def digits():
    images, _ = load_samples()
    return ae.load(DEFAULT_MODEL_PATH, providers="cpu"), images


@pytest.mark.parametrize("name", sorted(IMAGE_EXPLAINERS))
def test_image_methods_shapes_and_determinism(name, digits):
    model, images = digits
    x = images[:2]
    first = IMAGE_EXPLAINERS[name](model, images).explain(x, target=3, random_state=7, progress=False)
    second = IMAGE_EXPLAINERS[name](model, images).explain(x, target=3, random_state=7, progress=False)
    assert np.all(np.isfinite(first.values)) and len(first) == 2
    if explainers()[name].values_like_rows:
        assert first.values.shape == x.shape
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_allclose(first.base_values, model.predict(x)[:, 3], rtol=1e-5, atol=1e-5)
    assert first.target.tolist() == [3, 3] and first.method == name


@pytest.mark.parametrize("name", sorted(IMAGE_EXPLAINERS))
def test_a_callable_that_selects_a_class_equals_that_class(name, digits):
    """Gradient methods read a linear callable's weights as the seed; the others reduce outputs with it."""
    model, images = digits
    x = images[:2]
    by_index = IMAGE_EXPLAINERS[name](model, images).explain(x, target=3, random_state=7, progress=False)
    by_callable = IMAGE_EXPLAINERS[name](model, images).explain(x, target=lambda y: y[:, 3], random_state=7,
                                                                 progress=False)
    np.testing.assert_allclose(by_callable.values, by_index.values, rtol=1e-5,
                               atol=1e-6 * max(np.abs(by_index.values).max(), 1e-12))
    np.testing.assert_allclose(by_callable.base_values, by_index.base_values, rtol=1e-6)


def test_every_registered_method_is_covered_by_one_kind_of_rows():
    for name, cls in explainers().items():
        assert set(cls.row_kinds) <= {"tabular", "image", "tokens"}, name
        assert cls.row_kinds and cls.model_family in ("any", "trees"), name


@pytest.fixture(scope="module")
def trees():
    """A small gradient-boosted ensemble converted from scikit-learn (with its training cover)."""
    from sklearn.ensemble import GradientBoostingClassifier

    from converters.sklearn import from_sklearn

    rows = np.random.default_rng(0).normal(size=(200, N_FEATURES)).astype(np.float32)
    labels = (rows[:, 0] + rows[:, 1] * rows[:, 2] > 0).astype(int) + (rows[:, 3] > 1)
    native = GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0).fit(rows, labels)
    return ae.load(from_sklearn(native, rows[:20]), providers="cpu"), rows


@pytest.mark.parametrize("name", sorted(TREE_EXPLAINERS))
def test_tree_methods_shapes_determinism_and_errors(name, trees):
    model, rows = trees
    x = rows[:3]
    first = TREE_EXPLAINERS[name](model, rows).explain(x, target=1, random_state=7, progress=False)
    second = TREE_EXPLAINERS[name](model, rows).explain(x, target=1, random_state=7, progress=False)
    assert first.values.shape == x.shape and np.isfinite(first.values).all()
    np.testing.assert_array_equal(first.values, second.values)
    assert first.target.tolist() == [1, 1, 1] and first.method == name
    with pytest.raises(InputShapeError, match="expects shape"):
        TREE_EXPLAINERS[name](model, rows).explain(np.zeros((2, N_FEATURES + 1), np.float32), target=0)
    with pytest.raises(TargetError, match="out of range"):
        TREE_EXPLAINERS[name](model, rows).explain(x, target=7)

