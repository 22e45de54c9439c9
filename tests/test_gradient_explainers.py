"""Gradient explainers against Captum on the source PyTorch modules, and against analytic answers.

Parity is within 1e-4 of the largest attribution. Where a ReLU or MaxPool tie makes single
elements differ between ONNX Runtime and PyTorch, the test counts them and checks they sit at
ties instead of loosening the tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build_linear, build_square_of_sum, build_sum_of_squares, export_torch
from gradient_cases import assert_close

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")


def small_cnn():
    """Conv/BatchNorm/ReLU/MaxPool/Linear on (3, 16, 16) images, 5 classes, random BN statistics."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 5),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def cnn_case(image_seed: int):
    """The small CNN, its ONNX export loaded on the CPU, and three random images."""
    net = small_cnn()
    model = ae.load(export_torch(net, torch.zeros(1, 3, 16, 16)), providers="cpu")
    images = np.random.default_rng(image_seed).normal(size=(3, 3, 16, 16)).astype(np.float32)
    return net, model, images


@pytest.fixture(scope="module")
def cnn():
    return cnn_case(0)


def captum(method_class, net, images, target, **kwargs):
    inputs = torch.tensor(images, requires_grad=True)
    attribution = method_class(net).attribute(inputs, target=torch.tensor(target), **kwargs)
    return attribution.detach().numpy()


def targets_of(net, images):
    with torch.no_grad():
        return net(torch.tensor(images)).argmax(1).numpy()


@pytest.mark.parametrize("absolute", [True, False])
def test_saliency_matches_captum(cnn, absolute):
    net, model, images = cnn
    ours = ae.Saliency(model, absolute=absolute).explain(images, target="predicted")
    expected = captum(captum_attr.Saliency, net, images, targets_of(net, images), abs=absolute)
    assert_close(ours.values, expected)
    assert ours.n_evals == 2 * len(images)


def test_input_x_gradient_matches_captum(cnn):
    net, model, images = cnn
    ours = ae.InputXGradient(model).explain(images, target=[0, 1, 2])
    assert_close(ours.values, captum(captum_attr.InputXGradient, net, images, [0, 1, 2]))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                                    "riemann_trapezoid"])
def test_integrated_gradients_matches_captum(cnn, method):
    net, model, images = cnn
    baseline = np.full((3, 16, 16), 0.1, np.float32)
    ours = ae.IntegratedGradients(model, baseline=baseline, steps=20, method=method).explain(images, target=4)
    inputs = torch.tensor(images, requires_grad=True)
    expected, delta = captum_attr.IntegratedGradients(net).attribute(
        inputs, baselines=torch.tensor(baseline)[None], target=4, n_steps=20, method=method,
        return_convergence_delta=True)
    assert_close(ours.values, expected.detach().numpy())
    np.testing.assert_allclose(ours.extras["delta"], delta.detach().numpy(), atol=1e-4 * np.abs(ours.values).sum())


def test_integrated_gradients_completeness_and_softmax(cnn):
    net, model, images = cnn
    ours = ae.IntegratedGradients(model, steps=200).explain(images, target=1, output_transform="softmax")
    with torch.no_grad():
        probabilities = torch.softmax(net(torch.tensor(images)), 1)[:, 1].numpy()
        at_zero = torch.softmax(net(torch.zeros(1, 3, 16, 16)), 1)[0, 1].item()
    sums = ours.values.reshape(3, -1).sum(1)
    np.testing.assert_allclose(ours.base_values, probabilities, rtol=1e-5)
    np.testing.assert_allclose(sums - (probabilities - at_zero), ours.extras["delta"], atol=1e-5)
    assert np.abs(ours.extras["delta"]).max() < 1e-2 * np.abs(sums).max()
    expected = captum(captum_attr.IntegratedGradients, lambda x: torch.softmax(net(x), 1), images, [1, 1, 1],
                      n_steps=200)
    assert_close(ours.values, expected)


def test_analytic_gradients_on_a_linear_graph():
    case = build_linear(n_features=4, n_classes=3, seed=3)
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    model = ae.load(case.proto, providers="cpu")
    saliency = ae.Saliency(model, absolute=False).explain(x, target=2)
    np.testing.assert_allclose(saliency.values, np.broadcast_to(case.W[:, 2], x.shape), rtol=1e-6)
    ig = ae.IntegratedGradients(model, baseline=0.5, steps=2).explain(x, target=[0, 1, 2, 0, 1])
    expected = (x - 0.5) * case.W[:, [0, 1, 2, 0, 1]].T  # exact for a linear model, at any number of steps
    np.testing.assert_allclose(ig.values, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig.extras["delta"], 0, atol=1e-5)


def test_analytic_answers_of_quadratic_graphs():
    x = np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32)
    squares = ae.load(build_sum_of_squares().proto, providers="cpu")  # y = sum x^2
    np.testing.assert_allclose(ae.Saliency(squares).explain(x, target=None).values, 2 * np.abs(x), rtol=1e-6)
    np.testing.assert_allclose(ae.InputXGradient(squares).explain(x, target=None).values, 2 * x * x, rtol=1e-6)
    # the integrand 2 a x^2 is linear in a: one Gauss-Legendre point integrates it exactly
    ig = ae.IntegratedGradients(squares, steps=1).explain(x, target=None)
    np.testing.assert_allclose(ig.values, x * x, rtol=1e-5)
    total = ae.load(build_square_of_sum().proto, providers="cpu")  # y = (sum x)^2: gradient 2 sum(x)
    baseline = np.full(4, 0.5, np.float32)
    ig = ae.IntegratedGradients(total, baseline=baseline, steps=2).explain(x, target=None)
    sums, base = x.sum(1, keepdims=True), baseline.sum()
    np.testing.assert_allclose(ig.values, (x - baseline) * (sums + base), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig.extras["delta"], 0, atol=1e-5)


def test_a_linear_callable_target_seeds_the_backward_pass(cnn):
    """A contrast of two classes is the difference of their gradients (linearity of the VJP)."""
    _, model, images = cnn
    contrast = ae.IntegratedGradients(model, steps=8).explain(images, target=lambda y: y[:, 3] - 0.5 * y[:, 1])
    three = ae.IntegratedGradients(model, steps=8).explain(images, target=3)
    one = ae.IntegratedGradients(model, steps=8).explain(images, target=1)
    np.testing.assert_allclose(contrast.values, three.values - 0.5 * one.values, rtol=1e-4,
                               atol=1e-5 * np.abs(three.values).max())
    np.testing.assert_allclose(contrast.base_values, three.base_values - 0.5 * one.base_values, rtol=1e-5)
    selected = ae.Saliency(model, absolute=False).explain(images, target=lambda y: y[:, 2])
    np.testing.assert_array_equal(selected.values, ae.Saliency(model, absolute=False).explain(images, target=2).values)


def test_gradient_methods_refuse_integer_inputs_and_nonlinear_callable_targets(tokens):
    with pytest.raises(ParameterError, match="LayerIntegratedGradients"):
        ae.Saliency(ae.load(tokens.proto, providers="cpu")).explain(np.zeros((1, 6), np.int64), target=0)
    model = ae.load(build_linear().proto, providers="cpu")
    x = np.zeros((1, 4), np.float32)
    for nonlinear in (lambda y: np.exp(y[:, 0]), lambda y: y.max(axis=1), lambda y: y[:, 0] * y[:, -1]):
        with pytest.raises(ParameterError, match="not linear"):
            ae.Saliency(model).explain(x, target=nonlinear)
    with pytest.raises(ParameterError, match="owners"):
        ae.Saliency(model).explain(x, target=lambda outputs, owners: outputs[:, 0])
    with pytest.raises(ParameterError, match="steps"):
        ae.IntegratedGradients(model, steps=0).explain(np.zeros((1, 4), np.float32), target=0)
    with pytest.raises(ParameterError, match="method"):
        ae.IntegratedGradients(model, method="simpson").explain(np.zeros((1, 4), np.float32), target=0)


def test_integrated_gradients_beats_random_on_deletion():
    from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    from agnostic_explain.metrics import deletion, random_curve

    images, _ = load_samples()
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    explanation = ae.IntegratedGradients(model, steps=16).explain(images[:6], output_transform="softmax")
    ours = deletion(model, explanation, steps=10).auc.mean()
    chance = random_curve(model, explanation, "deletion", steps=10).auc.mean()
    assert ours < chance
