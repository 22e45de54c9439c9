"""FeatureAblation against hand-derived answers on linear ONNX graphs and against Captum."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.ablation import FeatureAblation
from agnostic_explain.perturbation.masks import column_groups, grid

F32 = {"rtol": 1e-5, "atol": 1e-5}
RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def x(rng):
    return rng.normal(size=(5, 4)).astype(np.float32)


def group_sums(contributions: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row sums of ``contributions`` (n, F) over each group of ``mask`` (F,), spread back on F."""
    n_groups = mask.max() + 1
    sums = np.stack([contributions[:, mask == g].sum(axis=1) for g in range(n_groups)], axis=1)
    return sums[:, mask]


# -- analytic ---------------------------------------------------------------------------------
def test_no_mask_gives_weight_times_difference_per_element(linear, x):
    explanation = FeatureAblation(linear.proto, baseline=0.3).explain(x, target=1)
    np.testing.assert_allclose(explanation.values, linear.W[:, 1] * (x - 0.3), **F32)
    assert explanation.n_evals == len(x) * (1 + x.shape[1])
    np.testing.assert_array_equal(explanation.extras["feature_mask"], np.arange(4))


@pytest.mark.parametrize("baseline", [0.0, -1.5, "row"], ids=["zero", "scalar", "per-row-array"])
def test_group_value_is_weighted_sum_of_differences_over_the_group(linear, x, rng, baseline):
    if baseline == "row":
        baseline = rng.normal(size=x.shape).astype(np.float32)
    mask = np.array([1, 0, 1, 2])
    target = [0, 2, 1, 1, 0]
    explanation = FeatureAblation(linear.proto, feature_mask=mask, baseline=baseline).explain(x, target=target)
    contributions = linear.W[:, target].T * (x - np.asarray(baseline, dtype=np.float32))
    np.testing.assert_allclose(explanation.values, group_sums(contributions, mask), **F32)
    groups = explanation.extras["group_values"]
    assert groups.shape == (len(x), 3)
    np.testing.assert_allclose(groups[:, 1], contributions[:, [0, 2]].sum(axis=1), **F32)
    np.testing.assert_array_equal(explanation.extras["feature_mask"], mask)
    assert explanation.n_evals == len(x) * (1 + 3)
    assert explanation.method == "feature_ablation"


def test_per_row_masks_with_different_group_counts(linear, x):
    masks = np.array([[0, 0, 1, 1], [0, 1, 2, 3], [0, 0, 0, 0], [1, 0, 0, 1], [0, 1, 1, 2]])
    explanation = FeatureAblation(linear.proto, feature_mask=masks).explain(x, target=2)
    contributions = linear.W[:, 2] * x
    expected = np.stack([group_sums(contributions[i : i + 1], masks[i])[0] for i in range(len(x))])
    np.testing.assert_allclose(explanation.values, expected, **F32)
    assert explanation.n_evals == len(x) + (2 + 4 + 1 + 2 + 3)
    assert explanation.extras["group_values"].shape == (len(x), 4)
    assert explanation.extras["group_values"][2, 1:].tolist() == [0.0, 0.0, 0.0]
    assert "feature_mask" not in explanation.extras


def test_mask_with_a_leading_axis_of_one_is_shared(linear, x):
    mask = np.array([0, 1, 1, 0])
    shared = FeatureAblation(linear.proto, feature_mask=mask).explain(x, target=0)
    leading = FeatureAblation(linear.proto, feature_mask=mask[None]).explain(x, target=0)
    np.testing.assert_array_equal(shared.values, leading.values)


def test_image_mask_broadcast_over_channels(image_nchw, rng):
    images = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    mask = grid((8, 8), 4)  # (8, 8): every group spans the three channels
    explanation = FeatureAblation(image_nchw.proto, feature_mask=mask).explain(images, target=1)
    contributions = (images.reshape(2, -1) * image_nchw.W[:, 1]).reshape(images.shape)
    for group in range(4):
        expected = contributions[:, :, mask == group].sum(axis=(1, 2))
        expected = np.broadcast_to(expected[:, None, None], (2, 3, 16))
        np.testing.assert_allclose(explanation.values[:, :, mask == group], expected, rtol=1e-4, atol=1e-4)


def test_integer_token_rows_are_ablated_to_the_baseline_id(tokens, rng):
    ids = rng.integers(1, 10, size=(3, 6))
    explanation = FeatureAblation(tokens.proto, baseline=0).explain(ids, target=2)
    expected = tokens.E[ids, 2] - tokens.E[0, 2]  # y = sum over positions of E[id]
    np.testing.assert_allclose(explanation.values, expected, **F32)


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.array([0, 1, 2]), "does not broadcast"),
        (np.array([0.0, 1.0, 1.0, 0.0]), "integer group ids"),
        (np.array([0, 2, 2, 0]), "none missing"),
        (np.array([1, 1, 2, 2]), "none missing"),
        (np.zeros((3, 4), dtype=int), "1 or 5 masks"),
        (np.array([[0, 1, 1, 0]] * 4 + [[0, 0, 2, 2]]), "row 4"),
        (np.zeros((5, 4, 1), dtype=int), "does not broadcast"),
    ],
    ids=["wrong-length", "float", "gap", "not-from-zero", "wrong-row-count", "per-row-gap", "too-many-axes"],
)
def test_bad_masks_raise_before_any_model_call(linear, x, mask, match):
    calls = []
    model = ae.load(linear.proto)
    original = model.run
    model.run = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    with pytest.raises(ParameterError, match=match):
        FeatureAblation(model, feature_mask=mask).explain(x, target=0)
    assert calls == []


def test_bad_baseline_raises(linear, x):
    with pytest.raises(ParameterError, match="baseline"):
        FeatureAblation(linear.proto, baseline=np.zeros(3)).explain(x, target=0)


# -- Captum -----------------------------------------------------------------------------------
def captum_ablation(forward, x, mask, baseline, target):
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    baselines = torch.as_tensor(baseline) if isinstance(baseline, np.ndarray) else baseline
    with torch.no_grad():
        result = captum_attr.FeatureAblation(forward).attribute(
            torch.from_numpy(x),
            baselines=baselines,
            target=target,
            feature_mask=torch.as_tensor(mask),
            perturbations_per_eval=64,
        )
    return result.numpy()


@pytest.mark.parametrize(
    ("mask", "baseline", "target"),
    [
        pytest.param(grid((12, 12), 4), 0.0, 2, id="grid-over-channels"),
        pytest.param(grid((12, 12), (3, 5)), 0.5, [0, 3, 4], id="uneven-grid-per-row-targets"),
        pytest.param(
            np.stack([grid((12, 12), 6), grid((12, 12), 6) + 4, grid((12, 12), 4) + 8]), -0.25, 1, id="per-channel"
        ),
    ],
)
def test_matches_captum_on_cnn(torch_cnn, mask, baseline, target):
    net, onnx_bytes = torch_cnn
    images = np.random.default_rng(7).uniform(-1.0, 1.0, size=(3, 3, 12, 12)).astype(np.float32)
    ours = FeatureAblation(onnx_bytes, feature_mask=mask, baseline=baseline).explain(images, target=target)
    theirs = captum_ablation(net, images, mask.reshape((1,) * (4 - mask.ndim) + mask.shape), baseline, target)
    assert np.abs(theirs).max() > 1e-3  # a comparison of zeros would prove nothing
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


def test_matches_captum_on_cnn_with_per_row_masks_and_baselines(torch_cnn):
    net, onnx_bytes = torch_cnn
    generator = np.random.default_rng(8)
    images = generator.uniform(-1.0, 1.0, size=(2, 3, 12, 12)).astype(np.float32)
    baseline = generator.normal(size=images.shape).astype(np.float32)
    masks = np.stack([grid((12, 12), 3), grid((12, 12), 4)])[:, None]  # 16 and 9 groups
    ours = FeatureAblation(onnx_bytes, feature_mask=masks, baseline=baseline).explain(images, target=3)
    theirs = captum_ablation(net, images, masks, baseline, 3)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("baseline", [0.0, -0.3])
def test_matches_captum_on_tabular_mlp_with_column_groups(torch_mlp, baseline):
    net, onnx_bytes = torch_mlp
    x = np.random.default_rng(5).normal(size=(6, 10)).astype(np.float32)
    mask = column_groups(10, [[0, 4, 5], [1, 9], [7, 8]])
    ours = FeatureAblation(onnx_bytes, feature_mask=mask, baseline=baseline).explain(x, target=3)
    theirs = captum_ablation(net, x, mask[None], baseline, 3)
    assert np.abs(theirs).max() > 1e-3
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


def test_matches_captum_with_softmax_output(torch_mlp):
    torch = pytest.importorskip("torch")
    net, onnx_bytes = torch_mlp
    x = np.random.default_rng(6).normal(size=(4, 10)).astype(np.float32)
    mask = column_groups(10, [[0, 1, 2], [3, 4]])
    ours = FeatureAblation(onnx_bytes, feature_mask=mask).explain(x, target=1, output_transform="softmax")
    theirs = captum_ablation(lambda t: torch.softmax(net(t), dim=1), x, mask[None], 0.0, 1)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)
