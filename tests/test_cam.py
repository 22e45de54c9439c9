"""UnitAblation, AblationCam and ScoreCam against Captum's LayerFeatureAblation and direct
PyTorch computations on the source model; the tail-only cost; error paths."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import InputShapeError, ParameterError

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

RELU = "/1/Relu_output_0"  # torch_cnn: (batch, 6, 12, 12)
TANH = "/3/Tanh_output_0"  # torch_cnn: (batch, 8, 5, 5), the last spatial activation


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(3, 3, 12, 12)).astype(np.float32)


def _layer_output(module, layer, x):
    """The activation of ``layer`` (a submodule of ``module``) at ``x``, from a forward hook."""
    found = {}
    handle = layer.register_forward_hook(lambda _, __, output: found.setdefault("value", output.detach()))
    with torch.no_grad():
        module(torch.from_numpy(x))
    handle.remove()
    return found["value"].numpy()


def _captum_channel_ablation(net, layer, x, target, baselines=None):
    """y - y_k per channel k of ``layer``, from Captum's LayerFeatureAblation."""
    channels = _layer_output(net, layer, x[:1]).shape[1]
    mask = torch.arange(channels).view(1, channels, 1, 1)
    with torch.no_grad():
        attribution = captum_attr.LayerFeatureAblation(net, layer).attribute(
            torch.from_numpy(x), target=torch.from_numpy(target), layer_mask=mask,
            layer_baselines=baselines,
        )
    return attribution.numpy()[:, :, 0, 0]


def test_unit_ablation_matches_captum_layer_feature_ablation(torch_cnn, images):
    net, onnx_bytes = torch_cnn
    ours = ae.UnitAblation(onnx_bytes, layer=RELU).explain(images)
    theirs = _captum_channel_ablation(net, net[1], images, ours.target)
    assert ours.values.shape == (3, 6)
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-4, atol=1e-5)
    assert ours.extras["n_evals_head"] == 3 and ours.extras["n_evals_tail"] == 3 * 6


def test_unit_ablation_mean_baseline_matches_captum(torch_cnn, images):
    net, onnx_bytes = torch_cnn
    data = np.random.default_rng(1).normal(size=(10, 3, 12, 12)).astype(np.float32)
    ours = ae.UnitAblation(onnx_bytes, layer=RELU, baseline="mean", data=data).explain(images)
    mean = _layer_output(net, net[1], data).mean(axis=0, keepdims=True)
    theirs = _captum_channel_ablation(net, net[1], images, ours.target, baselines=torch.from_numpy(mean))
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-4, atol=1e-5)
    assert ours.extras["n_evals_head"] == 3 + 10


def test_unit_ablation_of_neurons_matches_captum(torch_mlp):
    net, onnx_bytes = torch_mlp
    x = np.random.default_rng(2).normal(size=(4, 10)).astype(np.float32)
    ours = ae.UnitAblation(onnx_bytes, layer="/1/Relu_output_0").explain(x, target=2)
    with torch.no_grad():
        theirs = captum_attr.LayerFeatureAblation(net, net[1]).attribute(torch.from_numpy(x), target=2).numpy()
    np.testing.assert_allclose(ours.values, theirs, rtol=1e-4, atol=1e-5)


def _interpolate(maps, size):
    tensor = torch.from_numpy(np.asarray(maps, dtype=np.float32))[:, None]
    return torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False).numpy()


def test_ablation_cam_weights_and_map(torch_cnn, images):
    net, onnx_bytes = torch_cnn
    explanation = ae.AblationCam(onnx_bytes).explain(images, target=[0, 1, 4])
    assert explanation.params["layer"] == TANH and explanation.params["layer_chosen_automatically"]
    # Desai & Ramaswamy: w_k = (y - y_k) / y, map = ReLU(sum_k w_k A_k), upsampled bilinearly.
    deltas = _captum_channel_ablation(net, net[3], images, explanation.target)
    weights = deltas / explanation.base_values[:, None]
    np.testing.assert_allclose(explanation.extras["channel_weights"], weights, rtol=1e-3, atol=1e-5)
    activations = _layer_output(net, net[3], images)
    low = np.maximum(np.einsum("nc,nchw->nhw", weights, activations), 0)
    np.testing.assert_allclose(explanation.extras["layer_map"], low, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(explanation.values, _interpolate(low, (12, 12)), rtol=1e-3, atol=1e-5)
    # one row of the exposed model per image, one tail row per channel: never the full model per channel
    assert explanation.extras["n_evals_head"] == 3
    assert explanation.extras["n_evals_tail"] == 3 * 8
    assert explanation.n_evals == 3 * (1 + 8)


def test_score_cam_matches_a_direct_torch_computation(torch_cnn, images):
    net, onnx_bytes = torch_cnn
    explanation = ae.ScoreCam(onnx_bytes, layer=TANH).explain(images, output_transform="softmax")
    activations = torch.from_numpy(_layer_output(net, net[3], images))
    tail = net[4:]
    expected = []
    with torch.no_grad():
        for row, target in zip(activations, explanation.target):
            low = row.amin(dim=(1, 2), keepdim=True)
            masks = (row - low) / (row.amax(dim=(1, 2), keepdim=True) - low)
            scores = torch.softmax(tail(row[None] * masks[:, None]), dim=1)[:, int(target)]
            weights = torch.softmax(scores, dim=0)
            expected.append(torch.relu((weights[:, None, None] * row).sum(0)).numpy())
    np.testing.assert_allclose(explanation.extras["layer_map"], np.stack(expected), rtol=1e-4, atol=1e-6)
    assert explanation.values.shape == (3, 1, 12, 12)
    assert explanation.extras["n_evals_tail"] == 3 * 8


@pytest.mark.parametrize("method", [ae.AblationCam, ae.ScoreCam])
def test_cam_is_deterministic_and_batch_size_free(torch_cnn, images, method):
    _, onnx_bytes = torch_cnn
    small = method(ae.load(onnx_bytes, providers="cpu", batch_size=3)).explain(images)
    large = method(ae.load(onnx_bytes, providers="cpu", batch_size=64)).explain(images)
    again = method(ae.load(onnx_bytes, providers="cpu", batch_size=64)).explain(images)
    np.testing.assert_allclose(small.values, large.values, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(large.values, again.values)


def test_cam_finds_no_layer_in_a_model_without_spatial_activations(torch_mlp):
    with pytest.raises(ParameterError, match="no 4-D"):
        ae.AblationCam(torch_mlp[1]).explain(np.zeros((2, 10), np.float32))


class _ChannelsLast(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.conv(x.permute(0, 3, 1, 2)))


def test_cam_maps_come_back_channels_last_for_channels_last_inputs(images):
    from conftest import export_torch

    torch.manual_seed(4)
    net = _ChannelsLast().eval()
    rows = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    explanation = ae.AblationCam(export_torch(net, torch.zeros(1, 12, 12, 3))).explain(rows)
    assert explanation.values.shape == (3, 12, 12, 1)
    np.testing.assert_allclose(
        explanation.values[..., 0], _interpolate(explanation.extras["layer_map"], (12, 12))[:, 0], rtol=1e-5, atol=1e-6
    )


def test_cam_refuses_a_layer_without_spatial_dimensions(torch_mlp):
    _, onnx_bytes = torch_mlp
    x = np.zeros((2, 10), np.float32)
    with pytest.raises(InputShapeError, match="4-D"):
        ae.AblationCam(onnx_bytes, layer="/1/Relu_output_0").explain(x)


def test_layer_errors_name_the_parameter(torch_cnn, images):
    _, onnx_bytes = torch_cnn
    with pytest.raises(ParameterError, match="did you mean '/1/Relu_output_0'"):
        ae.ScoreCam(onnx_bytes, layer="/1/Relu_outptu_0").explain(images)
    with pytest.raises(ParameterError, match="layer: .*graph input"):
        ae.UnitAblation(onnx_bytes, layer="input").explain(images)
    with pytest.raises(ParameterError, match="needs an ONNX model"):
        ae.AblationCam(lambda x: x.reshape(len(x), -1)[:, :3]).explain(images)
    with pytest.raises(ParameterError, match="data"):
        ae.UnitAblation(onnx_bytes, layer=RELU, baseline="mean").explain(images)
    with pytest.raises(ParameterError, match="axis"):
        ae.UnitAblation(onnx_bytes, layer=RELU, axis=4).explain(images)


def test_cam_on_a_static_batch_export(images):
    torch.manual_seed(3)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(4, 3),
    ).eval()
    import io

    import warnings

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        torch.onnx.export(net, torch.zeros(1, 3, 12, 12), buffer, dynamo=False, opset_version=17)
    explanation = ae.AblationCam(buffer.getvalue()).explain(images)
    assert explanation.params["layer"] == "/1/Relu_output_0"
    deltas = _captum_channel_ablation(net, net[1], images, explanation.target)
    np.testing.assert_allclose(
        explanation.extras["channel_weights"], deltas / explanation.base_values[:, None], rtol=1e-3, atol=1e-5
    )
