"""Partial dependence: scikit-learn's numbers on converted models, analytic lines, errors, batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agnostic_explain.errors import ParameterError, TargetError
from agnostic_explain.inspection.partial_dependence import PartialDependence, grid_from_column, partial_dependence
from agnostic_explain.plot.dependence import partial_dependence_plot
from agnostic_explain.runtime import CallableModel
from tests.conftest import build_linear

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor  # noqa: E402
from sklearn.inspection import partial_dependence as sklearn_pd  # noqa: E402

from converters.sklearn import from_sklearn  # noqa: E402

PLOTS = Path("/tmp/plots")
GRID = 20
# ONNX Runtime computes the trees in float32 and scikit-learn in float64; on probabilities
# the gap measured is below 1e-7, so 1e-6 holds with margin.
ATOL = 1e-6


@pytest.fixture(scope="module")
def classifier():
    x, y = load_breast_cancer(return_X_y=True)
    x, y = x[::3].astype(np.float32), y[::3]
    fitted = GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0).fit(x, y)
    return fitted, from_sklearn(fitted, x), x


@pytest.fixture(scope="module")
def regressor():
    x, y = load_diabetes(return_X_y=True)
    x = x.astype(np.float32)
    # a standardised target keeps predictions near 1, where float32's spacing is ~1e-7
    # (on the raw target, ~150, float32 alone accounts for differences of ~2e-5)
    y = (y - y.mean()) / y.std()
    fitted = GradientBoostingRegressor(n_estimators=30, max_depth=2, random_state=0).fit(x, y)
    return fitted, from_sklearn(fitted, x), x


def _compare(ours: PartialDependence, theirs) -> None:
    assert len(ours.grid_values) == len(theirs["grid_values"])
    for mine, expected in zip(ours.grid_values, theirs["grid_values"]):
        np.testing.assert_array_equal(mine, expected)
    np.testing.assert_allclose(ours.average, theirs["average"][0], rtol=0, atol=ATOL)
    np.testing.assert_allclose(ours.individual, theirs["individual"][0], rtol=0, atol=ATOL)


def test_partial_dependence_equals_sklearn_classifier_one_feature(classifier):
    fitted, proto, x = classifier
    ours = partial_dependence(proto, x, 0, target=1, grid_resolution=GRID, kind="both")
    theirs = sklearn_pd(fitted, x, [0], method="brute", kind="both", grid_resolution=GRID,
                        response_method="predict_proba")
    assert ours.average.shape == (GRID,) and ours.individual.shape == (len(x), GRID)
    _compare(ours, theirs)
    assert ours.target == 1 and ours.output == "probabilities" and ours.n_evals == len(x) * GRID


def test_partial_dependence_equals_sklearn_classifier_pair(classifier):
    fitted, proto, x = classifier
    ours = partial_dependence(proto, x, (20, 27), target=1, grid_resolution=12, kind="both")
    theirs = sklearn_pd(fitted, x, [(20, 27)], method="brute", kind="both", grid_resolution=12,
                        response_method="predict_proba")
    assert ours.average.shape == (12, 12) and ours.individual.shape == (len(x), 12, 12)
    _compare(ours, theirs)
    PLOTS.mkdir(exist_ok=True)
    ax = partial_dependence_plot(ours)
    ax.figure.savefig(PLOTS / "pd_pair.png", dpi=90)
    assert ax.get_xlabel() == "feature 27" and ax.get_ylabel() == "feature 20"
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar


def test_partial_dependence_equals_sklearn_regressor(regressor):
    fitted, proto, x = regressor
    ours = partial_dependence(proto, x, 2, grid_resolution=GRID, kind="both")
    theirs = sklearn_pd(fitted, x, [2], method="brute", kind="both", grid_resolution=GRID)
    _compare(ours, theirs)
    assert ours.target is None
    # a feature with fewer unique values than grid_resolution (sex) gets them as its grid
    sex = partial_dependence(proto, x, 1, grid_resolution=GRID, kind="average")
    np.testing.assert_array_equal(sex.grid_values[0], np.unique(x[:, 1]))
    assert sex.individual is None and sex.average.shape == (2,)
    PLOTS.mkdir(exist_ok=True)
    ax = partial_dependence_plot(ours, max_ice=30)
    ax.figure.savefig(PLOTS / "pd_regressor.png", dpi=90)
    assert ax.get_xlabel() == "feature 2"
    assert len(ax.lines) == 30 + 2  # ICE curves, the legend's ICE entry, and the PD line


def test_linear_model_partial_dependence_is_a_line_with_the_weight_as_slope():
    case = build_linear()
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    result = partial_dependence(case.proto, x, 2, target=1, grid_resolution=7, kind="both",
                                percentiles=(0.1, 0.9))
    grid = result.grid_values[0]
    expected = (x @ case.W + case.b)[:, 1].mean() + case.W[2, 1] * (grid - x[:, 2].mean())
    np.testing.assert_allclose(result.average, expected, atol=1e-5)
    np.testing.assert_allclose(np.diff(result.individual, axis=1) / np.diff(grid), case.W[2, 1], rtol=1e-4)
    assert grid[0] > x[:, 2].min() and grid[-1] < x[:, 2].max()  # percentiles bound the grid
    assert "feature 2" in str(result)


def test_grid_matches_sklearn_percentiles():
    from sklearn.inspection._partial_dependence import _grid_from_X

    column = np.random.default_rng(1).gamma(2.0, size=(57, 1))
    _, expected = _grid_from_X(column, (0.05, 0.95), [False], 9, {})
    np.testing.assert_array_equal(grid_from_column(column[:, 0], 9, (0.05, 0.95)), expected[0])


def test_model_receives_all_grid_points_in_few_batches():
    calls = []

    def function(rows):
        calls.append(len(rows))
        return rows[:, :1] * 3.0

    model = CallableModel(function, batch_size=4096)
    x = np.random.default_rng(2).normal(size=(50, 3)).astype(np.float32)
    result = partial_dependence(model, x, 0, grid_resolution=30)
    assert sum(calls) == 50 * 30 and len(calls) == 1
    np.testing.assert_allclose(np.diff(result.average) / np.diff(result.grid_values[0]), 3.0, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"features": 5}, "out of range"),
        ({"features": (0, 1, 2)}, "one feature or a pair"),
        ({"features": (1, 1)}, "two different"),
        ({"features": 0, "grid_resolution": 1}, "grid_resolution"),
        ({"features": 0, "percentiles": (0.9, 0.1)}, "percentiles"),
        ({"features": 0, "kind": "mean"}, "kind"),
        ({"features": 0, "target": "predicted"}, "target"),
    ],
)
def test_errors(kwargs, match):
    case = build_linear()
    x = np.zeros((5, 4), dtype=np.float32) + np.arange(5, dtype=np.float32)[:, None]
    with pytest.raises(ParameterError, match=match):
        partial_dependence(case.proto, x, **kwargs)


def test_multi_value_output_needs_a_target():
    case = build_linear()
    x = np.random.default_rng(3).normal(size=(5, 4)).astype(np.float32)
    with pytest.raises(TargetError, match="target is required"):
        partial_dependence(case.proto, x, 0)
