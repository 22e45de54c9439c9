"""Layer gradient explainers (Grad-CAM, Grad-CAM++, gradient x activation) against Captum and
pytorch-grad-cam's formulas on the source PyTorch module."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import export_torch
from gradient_cases import assert_close
from test_gradient_explainers import cnn_case, targets_of

import agnostic_explain as ae

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

#: ONNX tensor names of the small CNN's layers, by the torch module that produces them
LAYERS = {3: "/3/MaxPool_output_0", 5: "/5/Relu_output_0"}


@pytest.fixture(scope="module")
def cnn():
    return cnn_case(2)


def layer_values(net, index, images, target):
    """The activation at ``net[index]`` and the target's gradient there (torch autograd)."""
    captured = {}

    def keep(_, __, output):
        output.retain_grad()
        captured["a"] = output

    handle = net[index].register_forward_hook(keep)
    try:
        out = net(torch.tensor(images))
        out[torch.arange(len(images)), torch.tensor(target)].sum().backward()
    finally:
        handle.remove()
    return captured["a"].detach().numpy().astype(np.float64), captured["a"].grad.numpy().astype(np.float64)


@pytest.mark.parametrize("index", sorted(LAYERS))
@pytest.mark.parametrize("relu", [True, False])
def test_grad_cam_matches_captum(cnn, index, relu):
    net, model, images = cnn
    target = targets_of(net, images)
    ours = ae.GradCam(model, layer=LAYERS[index], relu=relu).explain(images, target="predicted")
    expected = captum_attr.LayerGradCam(net, net[index]).attribute(
        torch.tensor(images), target=torch.tensor(target), relu_attributions=relu)
    assert_close(ours.extras["layer_map"], expected.detach().numpy()[:, 0])
    upsampled = captum_attr.LayerAttribution.interpolate(expected, (16, 16), interpolate_mode="bilinear")
    assert_close(ours.values, upsampled.detach().numpy())
    assert ours.params["layer"] == LAYERS[index] and not ours.params["layer_chosen_automatically"]


def test_grad_cam_chooses_the_last_map(cnn):
    _, model, images = cnn
    assert ae.GradCam(model).explain(images[:1]).params["layer"] == LAYERS[5]


def test_grad_cam_plus_plus_matches_pytorch_grad_cam_formula(cnn):
    net, model, images = cnn
    ours = ae.GradCamPlusPlus(model, layer=LAYERS[5]).explain(images, target=[1, 2, 3])
    activations, grads = layer_values(net, 5, images, [1, 2, 3])
    # pytorch-grad-cam 1.5, GradCAMPlusPlus.get_cam_weights
    grads_power_2 = grads ** 2
    grads_power_3 = grads_power_2 * grads
    sum_activations = np.sum(activations, axis=(2, 3))
    aij = grads_power_2 / (2 * grads_power_2 + sum_activations[:, :, None, None] * grads_power_3 + 1e-6)
    aij = np.where(grads != 0, aij, 0)
    weights = np.sum(np.maximum(grads, 0) * aij, axis=(2, 3))
    expected = np.maximum((weights[:, :, None, None] * activations).sum(1), 0)
    assert_close(ours.extras["layer_map"], expected)


def test_guided_backprop_matches_captum(cnn):
    net, model, images = cnn
    ours = ae.GuidedBackprop(model).explain(images, target=[4, 0, 2])
    expected = captum_attr.GuidedBackprop(net).attribute(torch.tensor(images), target=torch.tensor([4, 0, 2]))
    assert_close(ours.values, expected.detach().numpy())
    plain = ae.Saliency(model, absolute=False).explain(images, target=[4, 0, 2]).values
    assert not np.allclose(ours.values, plain)  # the guided rule changed something


@pytest.mark.parametrize("index", sorted(LAYERS))
def test_guided_grad_cam_matches_captum(cnn, index):
    net, model, images = cnn
    ours = ae.GuidedGradCam(model, layer=LAYERS[index]).explain(images, target="predicted")
    expected = captum_attr.GuidedGradCam(net, net[index]).attribute(
        torch.tensor(images), target=torch.tensor(targets_of(net, images)))
    assert_close(ours.values, expected.detach().numpy())


@pytest.mark.parametrize("index", sorted(LAYERS))
def test_layer_gradient_x_activation_matches_captum(cnn, index):
    net, model, images = cnn
    ours = ae.LayerGradientXActivation(model, LAYERS[index]).explain(images, target=[1, 1, 0],
                                                                     output_transform="softmax")
    expected = captum_attr.LayerGradientXActivation(lambda x: torch.softmax(net(x), 1), net[index]).attribute(
        torch.tensor(images), target=torch.tensor([1, 1, 0]))
    assert_close(ours.values, expected.detach().numpy())
    assert ours.n_evals == 2 * len(images) and ours.extras["n_evals_tail"] == len(images)


class ChannelsLast(torch.nn.Module):
    """A convolution whose activation is laid out (batch, height, width, channels) before pooling."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.head = torch.nn.Linear(6, 4)

    def forward(self, x):
        activation = torch.relu(self.conv(x).permute(0, 2, 3, 1))
        self.activation = activation
        return self.head(activation.mean(dim=(1, 2)))


def test_grad_cam_reads_a_channels_last_layer():
    net = ChannelsLast().eval()
    model = ae.load(export_torch(net, torch.zeros(1, 3, 10, 10)), providers="cpu")
    images = np.random.default_rng(3).normal(size=(2, 3, 10, 10)).astype(np.float32)
    ours = ae.GradCam(model).explain(images, target=[0, 3])
    assert ours.params["layer_layout"] == "nhwc"
    out = net(torch.tensor(images))
    net.activation.retain_grad()
    out[torch.arange(2), torch.tensor([0, 3])].sum().backward()
    activation, grads = net.activation.detach().numpy(), net.activation.grad.numpy()
    expected = np.maximum((grads.mean(axis=(1, 2))[:, None, None, :] * activation).sum(-1), 0)
    assert_close(ours.extras["layer_map"], expected)
