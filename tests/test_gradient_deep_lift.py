"""DeepLift (rescale rule) against Captum on ReLU networks, and summation-to-delta."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import export_torch
from gradient_cases import assert_close

import agnostic_explain as ae

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")


def relu_cnn():
    """Conv/BatchNorm/ReLU/Conv/ReLU/Linear (no max pooling: Captum has its own rule for it)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.Conv2d(6, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 6 * 6, 16), torch.nn.Sigmoid(), torch.nn.Linear(16, 5),
    )
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("baseline", [0.0, 0.25])
def test_deep_lift_matches_captum_on_a_relu_cnn(baseline):
    net = relu_cnn()
    model = ae.load(export_torch(net, torch.zeros(1, 3, 12, 12)), providers="cpu")
    images = np.random.default_rng(0).normal(size=(4, 3, 12, 12)).astype(np.float32)
    ours = ae.DeepLift(model, baseline=baseline).explain(images, target=[0, 1, 2, 3])
    # Captum on a float64 copy: the secant slopes (f(x) - f(x_ref)) / (x - x_ref) lose digits in
    # float32 where x is close to x_ref, and Captum's float32 values are further from the
    # float64 ones (2e-4 of the largest at baseline 0.25) than ours (2e-5).
    expected, delta = captum_attr.DeepLift(relu_cnn().double()).attribute(
        torch.tensor(images).double(), baselines=baseline, target=torch.tensor([0, 1, 2, 3]),
        return_convergence_delta=True)
    assert_close(ours.values, expected.detach().numpy())
    in_float32 = captum_attr.DeepLift(net).attribute(torch.tensor(images), baselines=baseline,
                                                     target=torch.tensor([0, 1, 2, 3]))
    assert_close(ours.values, in_float32.detach().numpy(), rtol=1e-3)
    # summation-to-delta: the values sum to f(x) - f(baseline)
    scale = np.abs(ours.values).reshape(4, -1).sum(1)
    np.testing.assert_allclose(ours.extras["delta"], 0, atol=1e-4 * scale.max())
    np.testing.assert_allclose(ours.extras["delta"], delta.detach().numpy(), atol=1e-4 * scale.max())
    assert ours.n_evals == 3 * len(images)


def test_deep_lift_matches_captum_on_an_mlp(torch_mlp):
    net, onnx_bytes = torch_mlp
    rows = np.random.default_rng(1).normal(size=(6, 10)).astype(np.float32)
    background = np.random.default_rng(2).normal(size=(1, 10)).astype(np.float32)
    ours = ae.DeepLift(ae.load(onnx_bytes, providers="cpu"), baseline=background).explain(rows, target="predicted")
    with torch.no_grad():
        target = net(torch.tensor(rows)).argmax(1)
    expected = captum_attr.DeepLift(net).attribute(torch.tensor(rows), baselines=torch.tensor(background),
                                                   target=target)
    assert_close(ours.values, expected.detach().numpy())
    np.testing.assert_allclose(ours.extras["delta"], 0, atol=1e-5)


def test_deep_lift_max_pool_rule():
    torch.manual_seed(0)
    pool = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 3)).eval()
    images = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    ours = ae.DeepLift(ae.load(export_torch(pool, torch.zeros(1, 3, 8, 8)), providers="cpu"), baseline=0.1).explain(
        images, target=[0, 1])
    expected = captum_attr.DeepLift(pool).attribute(torch.tensor(images), baselines=0.1, target=torch.tensor([0, 1]))
    assert_close(ours.values, expected.detach().numpy())
    # a ReLU feeding a max pool: Captum's values stop summing to f(x) - f(baseline); ours still do
    from test_gradient_explainers import small_cnn

    net = small_cnn()
    model = ae.load(export_torch(net, torch.zeros(1, 3, 16, 16)), providers="cpu")
    images = np.random.default_rng(1).normal(size=(3, 3, 16, 16)).astype(np.float32)
    explanation = ae.DeepLift(model, baseline=0.2).explain(images, target=[0, 1, 2])
    with torch.no_grad():
        f_x = net(torch.tensor(images))[torch.arange(3), torch.tensor([0, 1, 2])].numpy()
        f_b = net(torch.full((1, 3, 16, 16), 0.2))[0, [0, 1, 2]].numpy()
    np.testing.assert_allclose(explanation.values.reshape(3, -1).sum(1), f_x - f_b, rtol=1e-5, atol=1e-5)
