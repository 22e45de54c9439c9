"""LIME: batched surrogates equal scikit-learn, analytic answers on hand-built graphs, lime parity."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_linear, build_tokens, float_input, make_model
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain import masks
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.lime import LimeImage, LimeTabular, LimeText
from agnostic_explain.perturbation.surrogates import fit_local, fit_surrogate, weighted_ridge


def build_region_energy(size=8, region=(slice(0, 4), slice(0, 4))) -> object:
    """y = mean(x[:, region]**2) over an HWC image (N, size, size, 3): depends on one region only."""
    starts = np.array([region[0].start, region[1].start], dtype=np.int64)
    ends = np.array([region[0].stop, region[1].stop], dtype=np.int64)
    return make_model(
        [
            helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["part"]),
            helper.make_node("Mul", ["part", "part"], ["squares"]),
            helper.make_node("ReduceMean", ["squares"], ["channels"], axes=[1, 2], keepdims=0),
            helper.make_node("ReduceMean", ["channels"], ["y"], axes=[1], keepdims=1),
        ],
        [float_input("x", ["N", size, size, 3])],
        [float_input("y", ["N", 1])],
        [("starts", starts), ("ends", ends), ("axes", np.array([1, 2], dtype=np.int64))],
    )


def build_tokens_attention(vocabulary=10, length=6, n_classes=2, seed=41):
    """y[n, c] = sum_l att[n, l] * E[ids[n, l], c]: a token model with an attention mask."""
    embedding = np.random.default_rng(seed).normal(size=(vocabulary, n_classes)).astype(np.float32)
    proto = make_model(
        [
            helper.make_node("Gather", ["E", "ids"], ["embedded"], axis=0),
            helper.make_node("Unsqueeze", ["att", "last"], ["att3"]),
            helper.make_node("Mul", ["embedded", "att3"], ["weighted"]),
            helper.make_node("ReduceSum", ["weighted", "axes"], ["y"], keepdims=0),
        ],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", length]), float_input("att", ["N", length])],
        [float_input("y", ["N", n_classes])],
        [("E", embedding), ("axes", np.array([1], dtype=np.int64)), ("last", np.array([2], dtype=np.int64))],
    )
    return proto, embedding


# --- surrogates ------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 0.01])
@pytest.mark.parametrize("shared", [False, True])
def test_weighted_ridge_equals_sklearn(alpha, shared):
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(50, 6)) if shared else rng.integers(0, 2, size=(4, 50, 6)).astype(float)
    y, w = rng.normal(size=(4, 50)), rng.random((4, 50))
    coef, intercept, r2 = weighted_ridge(Z, y, w, alpha=alpha)
    for row in range(4):
        z = Z if shared else Z[row]
        reference = Ridge(alpha=alpha).fit(z, y[row], sample_weight=w[row])
        np.testing.assert_allclose(coef[row], reference.coef_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(intercept[row], reference.intercept_, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(r2[row], reference.score(z, y[row], sample_weight=w[row]), rtol=1e-9, atol=1e-12)


def test_user_regressor_and_feature_selection():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    Z = rng.integers(0, 2, size=(3, 80, 7)).astype(float)
    Z[:, 0] = 1.0  # the explained point, as in LIME (highest_weights scores coef * Z[:, 0])
    y = Z @ np.array([3.0, 0, 0, -2.0, 0, 0.1, 0]) + 0.01 * rng.normal(size=(3, 80))
    w = rng.random((3, 80))
    batched = weighted_ridge(Z, y, w)
    looped = fit_surrogate(Ridge(alpha=1.0), Z, y, w)
    for ours, theirs in zip(batched, looped):
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    for method in ("auto", "forward_selection", "highest_weights", "lasso_path"):
        fit = fit_local(Z, y, w, num_features=2, feature_selection=method)
        chosen = [set(np.flatnonzero(row)) for row in fit["coef"]]
        assert chosen == [{0, 3}] * 3, method


# --- tabular ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def linear():
    return build_linear(n_features=5, n_classes=2, seed=3)


@pytest.fixture(scope="module")
def training():
    scales = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    return (np.random.default_rng(2).normal(size=(400, 5)) * scales + 1.0).astype(np.float32)


def test_tabular_continuous_recovers_scaled_weights(linear, training):
    explainer = LimeTabular(linear.proto, training, discretize_continuous=False, num_features=None, num_samples=3000)
    explanation = explainer.explain(training[:3], target=1, random_state=0, progress=False)
    expected = linear.W[:, 1] * training.astype(np.float64).std(axis=0)  # lime standardises features
    np.testing.assert_allclose(explanation.values, np.broadcast_to(expected, (3, 5)), rtol=0.02, atol=0.02)
    assert np.all(explanation.extras["score"] > 0.999)
    np.testing.assert_allclose(explanation.extras["local_prediction"], explanation.base_values, rtol=0.02, atol=0.05)
    assert explanation.n_evals == 3 + 3 * 3000


def test_tabular_discretized_matches_lime(linear, training):
    from lime.lime_tabular import LimeTabularExplainer

    session = ae.load(linear.proto, providers="cpu")
    predict = lambda rows: session.predict(rows.astype(np.float32))  # noqa: E731
    x = training[:2]
    ours = LimeTabular(session, training, num_features=None, num_samples=4000).explain(x, target=1, random_state=0, progress=False)
    theirs = LimeTabularExplainer(training, mode="regression", random_state=0)
    for row in range(len(x)):
        exp = theirs.explain_instance(x[row], lambda r: predict(r)[:, 1], num_features=5, num_samples=4000)
        reference = np.zeros(5)
        for feature, weight in exp.as_map()[1]:
            reference[feature] = weight
        assert np.corrcoef(ours.values[row], reference)[0, 1] > 0.95
        # Signs must agree wherever lime's coefficient stands above its sampling noise; a
        # coefficient near zero (feature 2 here) changes sign with the seed, in lime as in ours.
        clear = np.abs(reference) > 0.2 * np.abs(reference).max()
        assert clear.any()
        assert np.array_equal(np.sign(ours.values[row][clear]), np.sign(reference[clear]))
    assert ours.extras["score"].shape == (2,) and ours.extras["intercept"].shape == (2,)


def test_tabular_categorical_and_selection(linear, training):
    data = training.copy()
    data[:, 2] = np.round(np.abs(data[:, 2]) * 2) % 3  # a categorical column with 3 codes
    explanation = LimeTabular(linear.proto, data, categorical_features=[2], num_features=2, num_samples=500).explain(
        data[:4], target=0, random_state=0, progress=False
    )
    assert np.all((explanation.values != 0).sum(axis=1) == 2)


# --- image -----------------------------------------------------------------------------------

def test_image_region_and_lime_overlap():
    from lime.lime_image import LimeImageExplainer

    proto = build_region_energy()
    image = np.random.default_rng(3).random((8, 8, 3)).astype(np.float32)
    segments = masks.grid((8, 8), 2)  # 16 superpixels; the region holds 0, 1, 4, 5
    region = {0, 1, 4, 5}
    model = ae.load(proto, providers="cpu")
    ours = LimeImage(model, segmentation=segments, num_samples=300).explain(image, target=0, random_state=0, progress=False)
    group_values = ours.extras["group_values"][0]
    top = set(np.argsort(-group_values)[:4].tolist())
    assert top == region
    assert np.abs(np.delete(group_values, sorted(region))).max() < 0.02 * group_values[sorted(region)].min()
    assert ours.values.shape == (1, 8, 8, 3) and ours.extras["segments"].shape == (1, 8, 8)
    np.testing.assert_array_equal(ours.values[0, :2, :2, 0], group_values[0])

    theirs = LimeImageExplainer(random_state=0).explain_instance(
        image.astype(np.float64), lambda batch: model.predict(batch.astype(np.float32)), labels=(0,), top_labels=None,
        num_samples=300, segmentation_fn=lambda img: segments, hide_color=None,
    )
    lime_top = {feature for feature, _ in sorted(theirs.local_exp[0], key=lambda item: -item[1])[:4]}
    assert lime_top == top


def test_image_chw_per_row_segments_and_hide_color():
    rows = np.random.default_rng(4).random((2, 3, 6, 6)).astype(np.float32)
    model = ae.CallableModel(lambda x: x[:, 0, :3, :3].sum(axis=(1, 2))[:, None])
    segments = np.stack([masks.grid((6, 6), 3), masks.grid((6, 6), 2)])
    explanation = LimeImage(model, segmentation=segments, hide_color=0.0, num_samples=200).explain(rows, target=0, random_state=1)
    assert explanation.extras["n_groups"].tolist() == [4, 9]
    assert explanation.extras["group_values"].shape == (2, 9)
    assert np.argmax(explanation.extras["group_values"][0]) == 0
    np.testing.assert_array_equal(explanation.values[:, 0], explanation.values[:, 2])


# --- text ------------------------------------------------------------------------------------

def test_text_recovers_embedding_differences():
    case = build_tokens(vocabulary=10, length=6)
    ids = np.array([[1, 2, 3, 4, 5, 6], [7, 7, 8, 9, 1, 2]])
    vocabulary = [f"w{i}" for i in range(10)]
    explanation = LimeText(case.proto, mask_token_id=0, num_samples=400, num_features=None, alpha=0.0, vocabulary=vocabulary).explain(
        ids, target=2, random_state=0, progress=False
    )
    expected = case.E[ids, 2] - case.E[0, 2]
    np.testing.assert_allclose(explanation.values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(explanation.extras["score"], 1.0, atol=1e-9)
    assert explanation.extras["tokens"][1, 2] == "w8"


def test_text_words_and_attention():
    proto, embedding = build_tokens_attention()
    ids = np.array([[1, 2, 3, 4, 5, 6]])
    attention = np.ones((1, 6), dtype=np.float32)
    words = np.array([0, 0, 1, 2, 2, 3])
    kept = LimeText(proto, mask_token_id=0, groups=words, num_samples=300, num_features=None, alpha=0.0).explain(
        ids, target=1, fixed_inputs={"att": attention}, random_state=0, progress=False
    )
    masked = LimeText(proto, mask_token_id=0, groups=words, num_samples=300, num_features=None, alpha=0.0, mask_attention=True).explain(
        ids, target=1, fixed_inputs={"att": attention}, random_state=0, progress=False
    )
    per_token_kept = embedding[ids[0], 1] - embedding[0, 1]
    per_token_masked = embedding[ids[0], 1]  # a removed token no longer counts at all
    for explanation, per_token in ((kept, per_token_kept), (masked, per_token_masked)):
        expected = np.bincount(words, weights=per_token)
        np.testing.assert_allclose(explanation.extras["group_values"][0], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(explanation.values[0], expected[words], rtol=1e-4, atol=1e-5)


# --- determinism and errors ------------------------------------------------------------------

def test_determinism():
    rows = np.random.default_rng(5).random((2, 3, 6, 6)).astype(np.float32)
    model = ae.CallableModel(lambda x: (x[:, :, :3] ** 2).mean(axis=(1, 2, 3))[:, None])
    make = lambda: LimeImage(model, segmentation=masks.grid((6, 6), 2), num_samples=50)  # noqa: E731
    first, second = make().explain(rows, target=0, random_state=3), make().explain(rows, target=0, random_state=3)
    other = make().explain(rows, target=0, random_state=4)
    np.testing.assert_array_equal(first.values, second.values)
    assert not np.array_equal(first.values, other.values)


@pytest.mark.parametrize(
    "make, x, match",
    [
        (lambda m: LimeTabular(m, np.zeros((10, 3))), np.zeros((1, 5), np.float32), "training_data"),
        (lambda m: LimeTabular(m, np.zeros((10, 5)), feature_selection="best"), np.zeros((1, 5), np.float32), "feature_selection"),
        (lambda m: LimeTabular(m, np.zeros((10, 5)), num_samples=1), np.zeros((1, 5), np.float32), "num_samples"),
        (lambda m: LimeTabular(m, np.zeros((10, 5)), num_features=0), np.zeros((1, 5), np.float32), "num_features"),
        (lambda m: LimeTabular(m, np.zeros((10, 5)), discretizer="entropy"), np.zeros((1, 5), np.float32), "discretizer"),
        (lambda m: LimeTabular(m, np.zeros((10, 5)), kernel_width=-1), np.zeros((1, 5), np.float32), "kernel_width"),
    ],
)
def test_tabular_errors(linear, make, x, match):
    with pytest.raises(ParameterError, match=match):
        make(linear.proto).explain(x, target=0)


def test_image_and_text_errors():
    image_model = ae.CallableModel(lambda x: x.reshape(len(x), -1).sum(axis=1, keepdims=True))
    rows = np.zeros((1, 3, 4, 4), np.float32)
    with pytest.raises(ParameterError, match="segmentation"):
        LimeImage(image_model, segmentation=np.zeros((5, 5), int)).explain(rows, target=0)
    with pytest.raises(ParameterError, match="segmentation"):
        LimeImage(image_model, segmentation="watershed").explain(rows, target=0)
    with pytest.raises(ParameterError, match="hide_color"):
        LimeImage(image_model, segmentation=masks.grid((4, 4), 2), hide_color=[1.0, 2.0]).explain(rows, target=0)
    case = build_tokens()
    ids = np.ones((1, 6), dtype=np.int64)
    with pytest.raises(ParameterError, match="mask_token_id"):
        LimeText(case.proto).explain(ids, target=0)
    with pytest.raises(ParameterError, match="groups"):
        LimeText(case.proto, mask_token_id=0, groups=np.arange(4)).explain(ids, target=0)
    with pytest.raises(ParameterError, match="attention_input"):
        LimeText(case.proto, mask_token_id=0, mask_attention=True).explain(ids, target=0)


def test_tabular_binned_sampler_is_lime_truncated_normal():
    from scipy import stats

    from agnostic_explain.explainers.lime_tabular import _sample_binned

    rng = np.random.default_rng(7)
    train = np.stack([rng.normal(size=400), np.r_[np.zeros(200), rng.exponential(size=200)]], axis=1)  # column 1: a zero-width bin
    rows = np.array([[0.1, 0.0]])
    binary = np.empty((1, 20000, 2), dtype=bool)
    inverse = np.empty((1, 20000, 2))
    _sample_binned(train, rows, (25, 50, 75), rng, binary, inverse, slice(None))
    column = train[:, 0]
    edges = np.percentile(column, (25, 50, 75))
    lows, highs = np.r_[column.min(), edges], np.r_[edges, column.max()]
    drawn = np.searchsorted(edges, inverse[0, :, 0])
    np.testing.assert_array_equal(binary[0, :, 0], drawn == np.searchsorted(edges, 0.1))
    for b in range(4):
        inside = column[np.searchsorted(edges, column) == b]
        values = inverse[0, drawn == b, 0]
        assert abs(len(values) / 20000 - len(inside) / 400) < 0.02
        low, high, mean, std = lows[b], highs[b], inside.mean(), inside.std() + 1e-11
        law = stats.truncnorm((low - mean) / std, (high - mean) / std, loc=mean, scale=std)
        assert stats.kstest(values, law.cdf).pvalue > 1e-3
    assert np.all(inverse[0, binary[0, :, 1], 1] == 0.0)  # the row's bin holds zeros only
