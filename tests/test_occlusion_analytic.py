"""Occlusion against answers derived by hand on small ONNX graphs."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.perturbation.baselines import blur
from agnostic_explain.explainers.occlusion import window_slices

F32 = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture
def x(rng):
    return rng.normal(size=(5, 4)).astype(np.float32)


def test_single_feature_windows_give_weight_times_difference(linear, x):
    baseline, target = 0.7, 2
    explanation = ae.Occlusion(linear.proto, window=(1,), baseline=baseline).explain(x, target=target)
    expected = linear.W[:, target] * (x - baseline)
    np.testing.assert_allclose(explanation.values, expected, **F32)


def test_int_window_on_one_axis_rows_matches_tuple(linear, x):
    as_int = ae.Occlusion(linear.proto, window=1).explain(x, target=0)
    np.testing.assert_allclose(as_int.values, linear.W[:, 0] * x, **F32)


def test_overlapping_windows_average_the_drops_of_covering_windows(linear, x):
    # window 2, stride 1 over 4 features: windows {0,1}, {1,2}, {2,3}.
    # With c_j = W[j, t] * (x_j - b): a_0 = c0 + c1, a_1 = (c0 + 2 c1 + c2) / 2,
    # a_2 = (c1 + 2 c2 + c3) / 2, a_3 = c2 + c3.
    baseline, target = -0.5, 1
    c = linear.W[:, target].astype(np.float64) * (x - baseline)
    expected = np.stack(
        [
            c[:, 0] + c[:, 1],
            (c[:, 0] + 2 * c[:, 1] + c[:, 2]) / 2,
            (c[:, 1] + 2 * c[:, 2] + c[:, 3]) / 2,
            c[:, 2] + c[:, 3],
        ],
        axis=1,
    )
    explanation = ae.Occlusion(linear.proto, window=(2,), stride=(1,), baseline=baseline).explain(x, target=target)
    np.testing.assert_allclose(explanation.values, expected, **F32)
    assert explanation.n_evals == len(x) * (1 + 3)


def test_window_clipped_at_the_far_edge():
    # 5 features, window 2, stride 2: starts 0, 2, 4; the last window covers feature 4 alone
    assert window_slices((5,), (2,), (2,)) == [(slice(0, 2),), (slice(2, 4),), (slice(4, 5),)]
    # 12 pixels, window 3, stride 2: starts 0..10, the last one clipped to [10, 12)
    slices = window_slices((12,), (3,), (2,))
    assert [s[0].start for s in slices] == [0, 2, 4, 6, 8, 10]
    assert slices[-1] == (slice(10, 12),)


def test_clipped_windows_on_a_linear_model(make_linear):
    case = make_linear(n_features=5)
    x = np.arange(1, 11, dtype=np.float32).reshape(2, 5) / 10
    c = case.W[:, 0].astype(np.float64) * x
    expected = np.stack([c[:, 0] + c[:, 1]] * 2 + [c[:, 2] + c[:, 3]] * 2 + [c[:, 4]], axis=1)
    explanation = ae.Occlusion(case.proto, window=(2,), stride=(2,)).explain(x, target=0)
    np.testing.assert_allclose(explanation.values, expected, **F32)


def test_sum_of_squares_gives_the_squares(sum_of_squares, x):
    model = sum_of_squares.proto
    explanation = ae.Occlusion(model, window=(1,)).explain(x, target=None)
    np.testing.assert_allclose(explanation.values, x**2, **F32)
    np.testing.assert_allclose(explanation.base_values, (x.astype(np.float64) ** 2).sum(axis=1), **F32)
    pairs = ae.Occlusion(model, window=(2,)).explain(x, target=0)
    expected = np.repeat(x[:, 0::2] ** 2 + x[:, 1::2] ** 2, 2, axis=1)
    np.testing.assert_allclose(pairs.values, expected, **F32)


def test_square_of_sum_captures_interactions(square_of_sum, x):
    # y = S^2 with S = sum x; occluding x_i (baseline 0) leaves (S - x_i)^2
    model = square_of_sum.proto
    total = x.astype(np.float64).sum(axis=1, keepdims=True)
    expected = total**2 - (total - x) ** 2
    explanation = ae.Occlusion(model, window=(1,)).explain(x, target=0)
    np.testing.assert_allclose(explanation.values, expected, rtol=1e-4, atol=1e-4)


def test_mean_baseline_uses_each_rows_mean(linear, x):
    explanation = ae.Occlusion(linear.proto, window=(1,), baseline="mean").explain(x, target=0)
    expected = linear.W[:, 0] * (x - x.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(explanation.values, expected, **F32)


def test_array_baseline_per_row_and_per_feature(linear, x, rng):
    per_row = rng.normal(size=x.shape).astype(np.float32)
    explanation = ae.Occlusion(linear.proto, window=(1,), baseline=per_row).explain(x, target=2)
    np.testing.assert_allclose(explanation.values, linear.W[:, 2] * (x - per_row), **F32)
    per_feature = per_row[0]
    explanation = ae.Occlusion(linear.proto, window=(1,), baseline=per_feature).explain(x, target=2)
    np.testing.assert_allclose(explanation.values, linear.W[:, 2] * (x - per_feature), **F32)


def test_blur_baseline_equals_passing_the_blurred_array(image_nchw, rng):
    model = ae.load(image_nchw.proto, providers="cpu")
    images = rng.uniform(size=(2, 3, 8, 8)).astype(np.float32)
    by_name = ae.Occlusion(model, window=(3, 2, 2), baseline="blur").explain(images, target=1)
    by_array = ae.Occlusion(model, window=(3, 2, 2), baseline=blur(images)).explain(images, target=1)
    np.testing.assert_allclose(by_name.values, by_array.values, **F32)
    # and the blurred baseline really differs from the image, so the check is not vacuous
    assert np.abs(by_name.values).max() > 1e-3


def test_blur_does_not_mix_channels_in_either_layout(rng):
    images = rng.uniform(size=(2, 3, 8, 8))
    nhwc = np.transpose(images, (0, 2, 3, 1))
    np.testing.assert_allclose(np.transpose(blur(nhwc), (0, 3, 1, 2)), blur(images), atol=1e-12)
    # a constant channel stays constant: no blur across channels
    images[:, 1] = 0.25
    np.testing.assert_allclose(blur(images)[:, 1], 0.25, atol=1e-12)


def test_tuple_target_on_a_multi_dimensional_output(grid_output, x):
    explanation = ae.Occlusion(grid_output.proto, window=(1,)).explain(x, target=(1, 2))
    np.testing.assert_allclose(explanation.values, grid_output.W[:, 5] * x, **F32)
    np.testing.assert_allclose(explanation.base_values, x @ grid_output.W[:, 5], **F32)
    np.testing.assert_array_equal(explanation.target, np.tile([1, 2], (len(x), 1)))


def test_callable_target_on_a_multi_dimensional_output(grid_output, x):
    explanation = ae.Occlusion(grid_output.proto, window=(1,)).explain(
        x, target=lambda out: out.sum(axis=(1, 2))
    )
    np.testing.assert_allclose(explanation.values, grid_output.W.sum(axis=1) * x, **F32)
    assert explanation.target is None


def test_callable_model_equals_the_onnx_model(linear, x):
    w, b = linear.W, linear.b
    by_function = ae.Occlusion(lambda rows: rows @ w + b, window=(2,), stride=(1,), baseline=0.3).explain(x, target=1)
    by_onnx = ae.Occlusion(linear.proto, window=(2,), stride=(1,), baseline=0.3).explain(x, target=1)
    np.testing.assert_allclose(by_function.values, by_onnx.values, **F32)
    np.testing.assert_allclose(by_function.base_values, by_onnx.base_values, **F32)
    assert by_function.n_evals == by_onnx.n_evals


def test_token_ids_occluded_with_id_zero(tokens):
    ids = np.array([[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]], dtype=np.int64)
    target = 1
    explanation = ae.Occlusion(tokens.proto, window=(1,), baseline=0).explain(ids, target=target)
    # replacing token l by id 0 changes the sum by E[ids_l] - E[0]
    expected = tokens.E[ids, target] - tokens.E[0, target]
    np.testing.assert_allclose(explanation.values, expected, **F32)
    np.testing.assert_allclose(explanation.base_values, tokens.E[ids, target].sum(axis=1), **F32)
    assert explanation.data.dtype == np.int64


def test_token_ids_given_as_whole_floats(tokens):
    ids = np.array([[3, 1, 4, 1, 5, 9]], dtype=np.int64)
    as_float = ae.Occlusion(tokens.proto, window=(2,), baseline=0).explain(ids.astype(np.float64), target=0)
    as_int = ae.Occlusion(tokens.proto, window=(2,), baseline=0).explain(ids, target=0)
    np.testing.assert_allclose(as_float.values, as_int.values, **F32)


def test_nhwc_and_nchw_give_the_same_numbers(image_nchw, image_nhwc, rng):
    nchw_model, nhwc_model = image_nchw.proto, image_nhwc.proto
    images = rng.uniform(size=(2, 3, 8, 8)).astype(np.float32)
    nchw = ae.Occlusion(nchw_model, window=(3, 2, 2), stride=(3, 1, 1), baseline=0.2).explain(images, target=0)
    nhwc = ae.Occlusion(nhwc_model, window=(2, 2, 3), stride=(1, 1, 3), baseline=0.2).explain(
        np.transpose(images, (0, 2, 3, 1)), target=0
    )
    np.testing.assert_allclose(np.transpose(nhwc.values, (0, 3, 1, 2)), nchw.values, **F32)
    # occluding one pixel of all 3 channels: the mean over covering 2x2 windows of linear drops
    assert np.abs(nchw.values).max() > 1e-3


def test_one_row_without_batch_axis(linear, x):
    explanation = ae.Occlusion(linear.proto, window=(1,)).explain(x[0], target=0)
    assert explanation.values.shape == (1, 4)
    np.testing.assert_allclose(explanation.values[0], linear.W[:, 0] * x[0], **F32)


def test_n_evals_base_values_and_metadata(linear, x):
    window, stride = (2,), (1,)
    explanation = ae.Occlusion(linear.proto, window=window, stride=stride, baseline=0.0).explain(x, target=[0, 1, 2, 0, 1])
    n_windows = 3
    assert explanation.n_evals == len(x) + len(x) * n_windows
    expected_base = (x @ linear.W + linear.b)[np.arange(5), [0, 1, 2, 0, 1]]
    np.testing.assert_allclose(explanation.base_values, expected_base, **F32)
    np.testing.assert_array_equal(explanation.target, [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(explanation.data, x)
    assert explanation.method == "occlusion"
    assert explanation.params["window"] == [2] and explanation.params["stride"] == [1]
    assert explanation.input_name == "x" and explanation.output_name == "y"
    assert explanation.values.dtype == np.float32


def test_sigmoid_output_transform_on_a_linear_model(linear, x):
    from scipy.special import expit

    explanation = ae.Occlusion(linear.proto, window=(1,)).explain(x, target=0, output_transform="sigmoid")
    logits = (x @ linear.W + linear.b).astype(np.float64)
    expected = expit(logits[:, :1]) - expit(logits[:, :1] - linear.W[:, 0] * x)
    np.testing.assert_allclose(explanation.values, expected, **F32)
    np.testing.assert_allclose(explanation.base_values, expit(logits[:, 0]), **F32)


def test_explained_second_input_with_fixed_first(two_input, rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    z = rng.normal(size=(3, 4)).astype(np.float32)
    explanation = ae.Occlusion(two_input.proto, window=(1,)).explain(z, target=1, input="z", fixed_inputs={"x": x})
    np.testing.assert_allclose(explanation.values, two_input.W[:, 1] * x * z, **F32)
    assert explanation.input_name == "z"
