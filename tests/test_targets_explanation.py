"""Target resolution, output transforms, and the Explanation result type."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.special import expit, softmax

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError, TargetError
from agnostic_explain.runtime.targets import resolve, transform


@pytest.fixture
def outputs(rng):
    return rng.normal(size=(4, 5))


@pytest.fixture
def grid(rng):
    return rng.normal(size=(3, 2, 3))


# -- targets ------------------------------------------------------------------------------------
def test_int_target_selects_that_class_for_every_row(outputs):
    target = resolve(2, outputs)
    np.testing.assert_array_equal(target.select(outputs, np.arange(4)), outputs[:, 2])
    np.testing.assert_array_equal(target.as_array(), [2, 2, 2, 2])


def test_negative_int_target_is_refused_rather_than_counting_from_the_end(outputs):
    with pytest.raises(TargetError, match=r"target -1 is out of range .* \(valid: 0\.\.4\); negative indices do not count"):
        resolve(-1, outputs)


def test_tuple_target_on_a_multi_dimensional_output(grid):
    target = resolve((1, 0), grid)
    np.testing.assert_array_equal(target.select(grid, np.arange(3)), grid[:, 1, 0])
    np.testing.assert_array_equal(target.as_array(), [[1, 0]] * 3)


def test_list_target_one_per_row(outputs):
    target = resolve([0, 3, 1, 4], outputs)
    np.testing.assert_array_equal(target.select(outputs, np.arange(4)), outputs[np.arange(4), [0, 3, 1, 4]])


def test_list_target_follows_the_owner_of_each_perturbed_row(outputs):
    target = resolve([0, 3, 1, 4], outputs)
    owners = np.array([3, 3, 0, 2])
    np.testing.assert_array_equal(target.select(outputs, owners), outputs[np.arange(4), [4, 4, 0, 1]])


def test_list_of_tuples_and_ndarray_targets(grid):
    target = resolve([(0, 0), (1, 2), (0, 1)], grid)
    np.testing.assert_array_equal(target.select(grid, np.arange(3)), [grid[0, 0, 0], grid[1, 1, 2], grid[2, 0, 1]])
    as_array = resolve(np.array([2, 0, 1, 3]), np.ones((4, 5)))
    np.testing.assert_array_equal(as_array.as_array(), [2, 0, 1, 3])


def test_predicted_target_is_the_argmax(outputs, grid):
    np.testing.assert_array_equal(resolve("predicted", outputs).as_array(), outputs.argmax(axis=1))
    flat = grid.reshape(3, -1).argmax(axis=1)
    expected = np.stack(np.unravel_index(flat, (2, 3)), axis=1)
    np.testing.assert_array_equal(resolve("predicted", grid).as_array(), expected)


def test_scalar_outputs_need_no_target():
    scalars = np.arange(3.0).reshape(3, 1)
    for target in (None, "predicted", 0):
        np.testing.assert_array_equal(resolve(target, scalars).select(scalars, np.arange(3)), [0.0, 1.0, 2.0])


def test_class_index_on_a_trailing_unit_axis():
    outputs = np.arange(6.0).reshape(2, 3, 1)
    np.testing.assert_array_equal(resolve(2, outputs).select(outputs, np.arange(2)), [2.0, 5.0])


def test_callable_target(grid):
    target = resolve(lambda out: out.sum(axis=(1, 2)), grid)
    np.testing.assert_allclose(target.select(grid, np.arange(3)), grid.sum(axis=(1, 2)))
    assert target.as_array() is None


@pytest.mark.parametrize(
    "function",
    [lambda out: out.sum(axis=1), lambda out: out.sum(), lambda out: out[:1, 0, 0]],
    ids=["per-row-vector", "one-scalar", "too-few-rows"],
)
def test_callable_target_returning_the_wrong_shape(grid, function):
    target = resolve(function, grid)
    with pytest.raises(TargetError, match=r"one scalar per row, shape \(3,\)"):
        target.select(grid, np.arange(3))


def test_callable_target_returning_the_wrong_shape_through_explain(linear):
    with pytest.raises(TargetError, match="one scalar per row"):
        ae.Occlusion(linear.proto, window=(1,)).explain(np.ones((2, 4)), target=lambda out: out)


@pytest.mark.parametrize("target", [5, -6, [0, 1, 2, 7]])
def test_out_of_range_target(outputs, target):
    with pytest.raises(TargetError, match=r"out of range .* \(valid: 0\.\.4\)"):
        resolve(target, outputs)


def test_out_of_range_tuple_target(grid):
    with pytest.raises(TargetError, match="out of range"):
        resolve((2, 0), grid)


@pytest.mark.parametrize("target", [1.0, True, {"class": 1}, (1.5,), [0, "a", 1, 2]])
def test_wrong_type_target(outputs, target):
    with pytest.raises(TargetError, match="target"):
        resolve(target, outputs)


def test_unknown_string_target(outputs):
    with pytest.raises(TargetError, match="'predicted'"):
        resolve("argmax", outputs)


def test_list_target_of_the_wrong_length(outputs):
    with pytest.raises(TargetError, match=r"one per explained row \(4\), got 3"):
        resolve([0, 1, 2], outputs)


def test_int_target_on_a_multi_dimensional_output_asks_for_a_tuple(grid):
    with pytest.raises(TargetError, match="tuple with one index per axis"):
        resolve(1, grid)


def test_missing_target_on_a_vector_output(outputs):
    with pytest.raises(TargetError, match="target is required"):
        resolve(None, outputs)


# -- transforms ---------------------------------------------------------------------------------
def test_softmax_matches_scipy(outputs):
    np.testing.assert_allclose(transform(outputs, "softmax"), softmax(outputs, axis=1), rtol=1e-12)
    large = outputs * 1000
    np.testing.assert_allclose(transform(large, "softmax"), softmax(large, axis=1), rtol=1e-12, atol=1e-300)


def test_softmax_normalises_the_class_axis_of_a_grid(grid):
    np.testing.assert_allclose(transform(grid, "softmax"), softmax(grid, axis=1), rtol=1e-12)


def test_sigmoid_matches_scipy(outputs):
    np.testing.assert_allclose(transform(outputs, "sigmoid"), expit(outputs), rtol=1e-12)
    extreme = np.array([[-800.0, 800.0, 0.0]])
    np.testing.assert_allclose(transform(extreme, "sigmoid"), expit(extreme), rtol=1e-12)


def test_transform_keeps_float32_logits_exact_in_float64():
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    assert transform(logits, "softmax").dtype == np.float64
    assert transform(logits, None) is logits


def test_softmax_of_a_one_dimensional_output_is_refused():
    with pytest.raises(ParameterError, match="class axis"):
        transform(np.ones(3), "softmax")


def test_unknown_transform_is_refused(outputs):
    with pytest.raises(ParameterError, match="output_transform"):
        transform(outputs, "tanh")


# -- Explanation ----------------------------------------------------------------------------------
@pytest.fixture
def explanation(labelled_linear, rng):
    x = rng.normal(size=(4, 4)).astype(np.float32)
    model = ae.load(labelled_linear.proto, providers="cpu")
    return ae.Occlusion(model, window=(2,), stride=(1,), baseline=0.25).explain(x, target=[0, 2, 1, 2])


def test_int_index_keeps_a_batch_axis_of_one(explanation):
    row = explanation[2]
    assert len(row) == 1
    assert row.values.shape == (1, 4) and row.data.shape == (1, 4)
    np.testing.assert_array_equal(row.values, explanation.values[2:3])
    np.testing.assert_array_equal(row.base_values, explanation.base_values[2:3])
    np.testing.assert_array_equal(row.target, [1])
    np.testing.assert_array_equal(explanation[-1].values, explanation.values[3:4])
    np.testing.assert_array_equal(explanation[np.int64(0)].values, explanation.values[:1])
    assert row.params == explanation.params and row.n_evals == explanation.n_evals


def test_slice_index(explanation):
    part = explanation[1:3]
    assert len(part) == 2
    np.testing.assert_array_equal(part.values, explanation.values[1:3])
    np.testing.assert_array_equal(part.target, [2, 1])
    np.testing.assert_array_equal(part.data, explanation.data[1:3])


@pytest.mark.parametrize("index", [4, -5])
def test_index_out_of_range(explanation, index):
    with pytest.raises(IndexError, match="out of range"):
        explanation[index]


def test_target_names_from_label_names(explanation):
    assert explanation.label_names == ("cat", "dog", "eel")
    assert explanation.target_names == ["cat", "eel", "dog", "eel"]
    assert explanation[1:3].target_names == ["eel", "dog"]


def test_target_names_without_label_names(linear):
    explanation = ae.Occlusion(linear.proto, window=(1,)).explain(np.ones((2, 4)), target=1)
    assert explanation.label_names is None and explanation.target_names is None


def test_save_and_load_round_trip(explanation, tmp_path):
    written = explanation.save(tmp_path / "result")
    assert written == tmp_path / "result.npz" and written.is_file()
    loaded = ae.Explanation.load(written)
    for name in ("values", "base_values", "data", "target"):
        original, restored = getattr(explanation, name), getattr(loaded, name)
        np.testing.assert_array_equal(restored, original)
        assert restored.dtype == original.dtype
    assert loaded.params == explanation.params
    assert loaded.params["window"] == [2] and loaded.params["baseline"] == 0.25
    for name in ("method", "n_evals", "seconds", "input_name", "output_name", "label_names", "feature_names", "providers"):
        assert getattr(loaded, name) == getattr(explanation, name), name
    assert isinstance(loaded.label_names, tuple) and isinstance(loaded.providers, tuple)
    assert loaded.target_names == explanation.target_names


def test_save_and_load_without_target(grid_output, tmp_path):
    explanation = ae.Occlusion(grid_output.proto, window=(1,)).explain(
        np.ones((2, 4), np.float32), target=lambda out: out[:, 0, 0]
    )
    loaded = ae.Explanation.load(explanation.save(tmp_path / "callable.npz"))
    assert loaded.target is None
    np.testing.assert_array_equal(loaded.values, explanation.values)
    assert loaded.params["target"] == explanation.params["target"]
    assert loaded.params["target"].startswith("callable")


def test_load_of_an_npz_that_is_not_an_explanation(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, values=np.ones(3))
    with pytest.raises(ParameterError, match="path"):
        ae.Explanation.load(path)


def test_load_of_an_npz_with_a_foreign_format(tmp_path):
    path = tmp_path / "foreign.npz"
    np.savez(path, meta=np.array(json.dumps({"format": "something-else/1"})), values=np.ones(3))
    with pytest.raises(ParameterError, match="not an agnostic-explain explanation"):
        ae.Explanation.load(path)


def test_load_of_a_text_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("hello")
    with pytest.raises(ParameterError):
        ae.Explanation.load(path)


def test_explanation_is_frozen(explanation):
    with pytest.raises(AttributeError):
        explanation.method = "other"


def test_a_target_callable_of_outputs_and_owners_sees_each_rows_source(linear):
    x = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    classes = np.array([2, 0, 1, 2])
    by_class = ae.Occlusion(linear.proto, window=(1,)).explain(x, target=list(classes))
    by_owner = ae.Occlusion(linear.proto, window=(1,)).explain(
        x, target=lambda outputs, owners: outputs[np.arange(len(outputs)), classes[owners]]
    )
    np.testing.assert_allclose(by_owner.values, by_class.values, rtol=1e-6)
    np.testing.assert_allclose(by_owner.base_values, by_class.base_values, rtol=1e-6)
    # a second argument with a default is not the owners
    scaled = ae.Occlusion(linear.proto, window=(1,)).explain(x, target=lambda outputs, scale=2.0: scale * outputs[:, 0])
    np.testing.assert_allclose(scaled.base_values, 2.0 * (x @ linear.W + linear.b)[:, 0], rtol=1e-5)


def test_many_rows_of_targets_resolve_alike_and_are_checked():
    """Per-row targets are checked per distinct value; a bool hidden in a list is still refused."""
    from agnostic_explain.runtime.targets import resolve

    outputs = np.zeros((6, 3))
    as_list = resolve([0, 2, 1, 2, 0, 1], outputs).indices
    as_array = resolve(np.array([0, 2, 1, 2, 0, 1]), outputs).indices
    np.testing.assert_array_equal(as_list, as_array)
    assert as_list.ravel().tolist() == [0, 2, 1, 2, 0, 1]
    np.testing.assert_array_equal(resolve(2, outputs).indices.ravel(), [2] * 6)
    with pytest.raises(TargetError, match="integers"):
        resolve([0, 1, True, 0, 1, 2], outputs)
    with pytest.raises(TargetError, match="out of range"):
        resolve(np.array([0, 1, 3, 0, 1, 2]), outputs)
