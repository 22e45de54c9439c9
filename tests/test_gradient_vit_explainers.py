"""Gradient explainers against Captum on a small Vision Transformer built in code.

The ViT is ``TinyViT`` of tests/test_gradient_models.py: a Conv patch embedding (3x32x32
images, 8x8 patches, width 32), a class token, position embeddings, two pre-norm encoder
blocks (hand-written 4-head attention, LayerNorm, exact-GELU MLP) and a head on the class
token, with seeded random weights, exported by the TorchScript exporter with a dynamic batch.
Each method must match Captum on the same torch module within 1e-4 of the largest attribution,
on three rows with explicit targets.
"""
# Left out: DeepLift, GuidedBackprop, GuidedGradCam (no ReLU-family op: Captum's rules reduce to the gradient); GradCam++ (no Captum peer).

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import export_torch
from gradient_cases import assert_close
from test_gradient_explainers import captum
from test_gradient_models import TinyViT
from test_gradient_sampling_explainers import feed_draws

import agnostic_explain as ae
from agnostic_explain.explainers.gradient_shap import gradient_shap_draws

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # TinyViT unpacks q, k, v from a tensor

#: the patch embedding's Conv output, and the first block's output (the input of the last attention block)
EMBEDDING, BLOCK = "/embed/Conv_output_0", "/blocks.0/Add_1_output_0"
TARGET = [0, 3, 1]


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    net = TinyViT(size=32, patch=8, dim=32, heads=4, depth=2, classes=5).eval()
    proto = onnx.load_from_string(export_torch(net, torch.zeros(1, 3, 32, 32)))
    assert {EMBEDDING, BLOCK} <= {name for node in proto.graph.node for name in node.output}
    images = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    return net, ae.load(proto, providers="cpu"), images


def check_delta(ours, expected_delta):
    """Our convergence delta against Captum's, within 1e-4 of each row's total attribution."""
    scale = np.abs(ours.values).reshape(len(ours.values), -1).sum(1)
    np.testing.assert_allclose(ours.extras["delta"], expected_delta.detach().numpy(), rtol=0, atol=1e-4 * scale.min())


@pytest.mark.parametrize("ours_class, captum_class", [(ae.Saliency, captum_attr.Saliency),
                                                      (ae.InputXGradient, captum_attr.InputXGradient)])
def test_gradient_methods_match_captum(vit, ours_class, captum_class):
    net, model, images = vit
    assert_close(ours_class(model).explain(images, target=TARGET).values, captum(captum_class, net, images, TARGET))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_integrated_gradients_matches_captum(vit, method):
    net, model, images = vit
    ours = ae.IntegratedGradients(model, steps=50, method=method).explain(images, target=TARGET)
    expected, delta = captum_attr.IntegratedGradients(net).attribute(
        torch.tensor(images), target=torch.tensor(TARGET), n_steps=50, method=method, return_convergence_delta=True)
    assert_close(ours.values, expected.detach().numpy())
    check_delta(ours, delta)


def test_smooth_grad_matches_captum_noise_tunnel(vit, monkeypatch):
    net, model, images = vit
    ours = ae.SmoothGrad(ae.Saliency(model), n_samples=4, stdev=0.3).explain(images, target=TARGET, random_state=4)
    feed_draws(monkeypatch, np.random.default_rng(4).normal(0.0, 0.3, size=(3, 4, 3, 32, 32)).astype(np.float32))
    expected = captum_attr.NoiseTunnel(captum_attr.Saliency(net)).attribute(
        torch.tensor(images), nt_type="smoothgrad", nt_samples=4, stdevs=0.3, target=torch.tensor(TARGET))
    assert_close(ours.values, expected.detach().numpy())


def test_gradient_shap_matches_captum_with_the_same_draws(vit, monkeypatch):
    net, model, images = vit
    background = np.random.default_rng(5).normal(size=(4, 3, 32, 32)).astype(np.float32)
    ours = ae.GradientShap(model, background, n_samples=6, stdev=0.2).explain(images, target=TARGET, random_state=3)
    feed_draws(monkeypatch, *gradient_shap_draws(np.random.default_rng(3), images, np.full(4, 0.25), 6, 0.2))
    expected = captum_attr.GradientShap(net).attribute(
        torch.tensor(images), baselines=torch.tensor(background), n_samples=6, stdevs=0.2, target=torch.tensor(TARGET))
    assert_close(ours.values, expected.detach().numpy())


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_layer_integrated_gradients_at_the_patch_embedding(vit, method):
    net, model, images = vit
    ours = ae.LayerIntegratedGradients(model, layer=EMBEDDING, baseline=0.1, steps=50, method=method).explain(
        images, target=TARGET)
    expected, delta = captum_attr.LayerIntegratedGradients(net, net.embed).attribute(
        torch.tensor(images), baselines=torch.full((1, 3, 32, 32), 0.1), target=torch.tensor(TARGET), n_steps=50,
        method=method, return_convergence_delta=True)
    assert ours.values.shape == expected.shape == (3, 32, 4, 4)
    assert_close(ours.values, expected.detach().numpy())
    check_delta(ours, delta)


def test_layer_gradient_x_activation_at_the_patch_embedding(vit):
    net, model, images = vit
    ours = ae.LayerGradientXActivation(model, EMBEDDING).explain(images, target=TARGET, output_transform="softmax")
    expected = captum_attr.LayerGradientXActivation(lambda x: torch.softmax(net(x), 1), net.embed).attribute(
        torch.tensor(images), target=torch.tensor(TARGET))
    assert_close(ours.values, expected.detach().numpy())


def grid_tap(block):
    """An identity module through which ``block``'s output passes as a (batch, dim, h, w) grid of its
    patch tokens (class token left out, as pytorch-grad-cam's ViT ``reshape_transform``), so that
    Captum's ``LayerGradCam`` reads the tokens as channel maps; returns (module, hook handle)."""
    grid = torch.nn.Identity()

    def through_grid(_, __, tokens):
        n, length, dim = tokens.shape
        side = round((length - 1) ** 0.5)
        patches = grid(tokens[:, 1:].transpose(1, 2).reshape(n, dim, side, side))
        return torch.cat([tokens[:, :1], patches.flatten(2).transpose(1, 2)], 1)

    return grid, block.register_forward_hook(through_grid)


@pytest.mark.parametrize("relu", [True, False])
def test_grad_cam_at_an_encoder_block_matches_captum(vit, relu):
    net, model, images = vit
    ours = ae.GradCam(model, relu=relu).explain(images, target=TARGET)
    assert ours.params["layer"] == BLOCK and ours.params["layer_chosen_automatically"]
    grid, handle = grid_tap(net.blocks[0])
    try:
        expected = captum_attr.LayerGradCam(net, grid).attribute(
            torch.tensor(images), target=torch.tensor(TARGET), relu_attributions=relu).detach()
    finally:
        handle.remove()
    assert (expected > 0).any() and (relu or (expected < 0).any())
    assert_close(ours.extras["layer_map"], expected.numpy()[:, 0])
    upsampled = captum_attr.LayerAttribution.interpolate(expected, (32, 32), interpolate_mode="bilinear")
    assert_close(ours.values, upsampled.numpy())
