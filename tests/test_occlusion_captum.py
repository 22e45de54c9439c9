"""Occlusion on the ONNX export equals captum.attr.Occlusion on the torch module."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def cnn(torch_cnn):
    net, onnx_bytes = torch_cnn
    return net, ae.load(onnx_bytes, providers="cpu")


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).uniform(-1.0, 1.0, size=(3, 3, 12, 12)).astype(np.float32)


def captum_occlusion(forward, x, window, stride, baseline, target):
    occlusion = captum_attr.Occlusion(forward)
    baselines = torch.as_tensor(baseline) if isinstance(baseline, np.ndarray) else baseline
    with torch.no_grad():
        result = occlusion.attribute(
            torch.from_numpy(x),
            sliding_window_shapes=window,
            strides=stride,
            baselines=baselines,
            target=target,
            perturbations_per_eval=512,
        )
    return result.numpy()


@pytest.mark.parametrize(
    ("window", "stride", "baseline", "target"),
    [
        pytest.param((3, 4, 4), (3, 2, 2), 0.0, 2, id="overlapping"),
        pytest.param((1, 3, 3), (1, 2, 2), 0.0, 1, id="clipped-at-far-edge"),
        pytest.param((3, 5, 5), (3, 3, 3), 0.5, 4, id="scalar-baseline-clipped"),
        pytest.param((1, 4, 4), (1, 4, 4), 0.0, [0, 3, 4], id="per-row-targets"),
        pytest.param((2, 2, 3), (1, 1, 2), -0.25, 0, id="anisotropic"),
    ],
)
def test_matches_captum_on_cnn(cnn, images, window, stride, baseline, target):
    net, model = cnn
    ours = ae.Occlusion(model, window=window, stride=stride, baseline=baseline).explain(images, target=target)
    theirs = captum_occlusion(net, images, window, stride, baseline, target)
    assert ours.values.shape == images.shape
    assert np.abs(theirs).max() > 1e-3  # a comparison of zeros would prove nothing
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


def test_matches_captum_with_per_row_tensor_baseline(cnn, images):
    net, model = cnn
    baseline = np.random.default_rng(3).normal(size=images.shape).astype(np.float32)
    window, stride = (3, 3, 3), (3, 2, 2)
    ours = ae.Occlusion(model, window=window, stride=stride, baseline=baseline).explain(images, target=1)
    theirs = captum_occlusion(net, images, window, stride, baseline, 1)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


def test_matches_captum_with_one_row_baseline_broadcast(cnn, images):
    net, model = cnn
    row = np.random.default_rng(4).uniform(size=images.shape[1:]).astype(np.float32)
    window, stride = (1, 4, 4), (1, 2, 2)
    ours = ae.Occlusion(model, window=window, stride=stride, baseline=row).explain(images, target=3)
    theirs = captum_occlusion(net, images, window, stride, row[None], 3)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)


def test_predicted_target_and_base_values_match_torch(cnn, images):
    net, model = cnn
    with torch.no_grad():
        logits = net(torch.from_numpy(images)).numpy()
    predicted = logits.argmax(axis=1)
    explanation = ae.Occlusion(model, window=(3, 4, 4)).explain(images)
    np.testing.assert_array_equal(explanation.target, predicted)
    np.testing.assert_allclose(explanation.base_values, logits[np.arange(3), predicted], rtol=RTOL, atol=ATOL)
    theirs = captum_occlusion(net, images, (3, 4, 4), (3, 4, 4), 0.0, predicted.tolist())
    np.testing.assert_allclose(explanation.values, theirs, rtol=RTOL, atol=ATOL)


def test_matches_captum_with_softmax_output(cnn, images):
    net, model = cnn

    def probabilities(x):
        return torch.softmax(net(x), dim=1)

    window, stride = (3, 4, 4), (3, 3, 3)
    ours = ae.Occlusion(model, window=window, stride=stride).explain(images, target=2, output_transform="softmax")
    theirs = captum_occlusion(probabilities, images, window, stride, 0.0, 2)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)
    with torch.no_grad():
        expected_base = probabilities(torch.from_numpy(images))[:, 2].numpy()
    np.testing.assert_allclose(ours.base_values, expected_base, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("window", "stride", "baseline"),
    [((2,), (1,), -0.3), ((3,), (2,), 0.0), ((1,), None, 1.0)],
)
def test_matches_captum_on_tabular_mlp(torch_mlp, window, stride, baseline):
    net, onnx_bytes = torch_mlp
    x = np.random.default_rng(5).normal(size=(6, 10)).astype(np.float32)
    ours = ae.Occlusion(onnx_bytes, window=window, stride=stride, baseline=baseline).explain(x, target=3)
    theirs = captum_occlusion(net, x, window, stride or window, baseline, 3)
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL, atol=ATOL)
