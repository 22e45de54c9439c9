"""LayerActivations: recorded values against numpy and Captum, statistics, PCA embeddings, plots."""

from __future__ import annotations

import doctest
import importlib
import json

import numpy as np
import pytest
from onnx import helper

import agnostic_explain as ae
from agnostic_explain.activations import record as activations_module
from agnostic_explain.activations import Activations, LayerActivations
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import InputShapeError, ParameterError, TargetError
from agnostic_explain.plot.activations import activation_maps, embedding_plot, trajectory

RELU3 = "/relu3/Relu_output_0"
RELU1 = "/relu1/Relu_output_0"


def build_relu_mlp(make_onnx_model, class_names=None):
    """h = x @ W, r = relu(h), y = r + b, with a Constant c that carries no batch axis."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    proto = make_onnx_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Constant", [], ["c"], value=helper.make_tensor("cv", 1, [3], b.tolist())),
            helper.make_node("Add", ["r", "c"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", 1, ["N", 4])],
        [helper.make_tensor_value_info("y", 1, ["N", 3])],
        [("W", w)],
        metadata={"class_names": json.dumps(class_names)} if class_names else None,
    )
    return proto, w, b


@pytest.fixture(scope="module")
def mlp(make_onnx_model):
    return build_relu_mlp(make_onnx_model)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32)[:, None], data.target


@pytest.fixture(scope="module")
def digits_recorded(digits):
    images, _ = digits
    recorder = LayerActivations(DEFAULT_MODEL_PATH, layers=[RELU1, "/pool/MaxPool_output_0", RELU3])
    return recorder, recorder.activations(images)


# -- (a) values known analytically ---------------------------------------------------------
def test_every_intermediate_value_equals_numpy(mlp, rng):
    proto, w, b = mlp
    x = rng.normal(size=(6, 4)).astype(np.float32)
    recorded = LayerActivations(proto, layers="all").activations(x)
    h = x.astype(np.float64) @ w
    assert recorded.layers == ("h", "r", "y")  # the Constant has no batch axis: skipped by "all"
    np.testing.assert_allclose(recorded["h"], h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recorded["r"], np.maximum(h, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(recorded["y"], np.maximum(h, 0) + b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(recorded.outputs, recorded["y"])
    np.testing.assert_array_equal(recorded.predictions, np.argmax(recorded["y"], axis=1))
    assert recorded.output_name == "y" and recorded.input_name == "x" and recorded.n_rows == 6
    assert recorded.op_types == {"h": "MatMul", "r": "Relu", "y": "Add"}
    np.testing.assert_array_equal(recorded.data, x)


def test_one_row_without_batch_axis_and_a_predicate(mlp, rng):
    proto, w, _ = mlp
    x = rng.normal(size=4).astype(np.float32)
    recorded = LayerActivations(proto, layers=lambda info: info.producer and "Relu" in info.producer).activations(x)
    assert recorded.layers == ("r",)
    np.testing.assert_allclose(recorded["r"], np.maximum(x[None].astype(np.float64) @ w, 0), rtol=1e-5, atol=1e-6)


def test_loaded_model_is_accepted_and_exposed_once(mlp, rng, monkeypatch):
    proto, w, _ = mlp
    calls = []
    real = activations_module.expose
    monkeypatch.setattr(activations_module, "expose", lambda *args: calls.append(1) or real(*args))
    recorder = LayerActivations(ae.load(proto, providers="cpu", batch_size=3), layers=["r", "h"])
    x = rng.normal(size=(8, 4)).astype(np.float32)
    first = recorder.activations(x)
    recorder.statistics(x)
    recorder.embedding(x, "h")
    assert len(calls) == 1
    assert first.layers == ("r", "h")
    np.testing.assert_allclose(first["h"], x.astype(np.float64) @ w, rtol=1e-5, atol=1e-6)


def test_fixed_inputs_reach_the_recorded_layers(two_input, rng):
    x, z = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(1, 4)).astype(np.float32)
    recorded = LayerActivations(two_input.proto, layers=["xz"]).activations(x, fixed_inputs={"z": z}, batch_size=2)
    np.testing.assert_allclose(recorded["xz"], x * z, rtol=1e-6)
    np.testing.assert_allclose(recorded.outputs, (x * z).astype(np.float64) @ two_input.W, rtol=1e-5, atol=1e-6)


# -- (b) parity with Captum -----------------------------------------------------------------
def test_matches_captum_layer_activation(torch_cnn):
    torch = pytest.importorskip("torch")
    captum_attr = pytest.importorskip("captum.attr")
    net, onnx_bytes = torch_cnn
    x = np.random.default_rng(5).uniform(-1, 1, size=(4, 3, 12, 12)).astype(np.float32)
    names = {"/1/Relu_output_0": net[1], "/3/Tanh_output_0": net[3]}
    recorded = LayerActivations(onnx_bytes, layers=list(names)).activations(x)
    with torch.no_grad():
        expected = captum_attr.LayerActivation(net, list(names.values())).attribute(torch.from_numpy(x))
    for name, value in zip(names, expected):
        assert recorded[name].shape == tuple(value.shape)
        np.testing.assert_allclose(recorded[name], value.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(recorded.outputs, net(torch.from_numpy(x)).detach().numpy(), rtol=1e-4, atol=1e-5)


# -- (c) statistics -------------------------------------------------------------------------
def test_statistics_match_numpy_and_argsort(digits, digits_recorded):
    _, labels = digits
    recorder, recorded = digits_recorded
    stats = recorder.statistics(recorded, target=labels, top_k=4)
    assert stats.classes == tuple(range(10)) and len(stats) == 3
    for layer in stats:
        values = recorded[layer.name].astype(np.float64)
        assert layer.shape == values.shape[1:]
        np.testing.assert_allclose([layer.mean, layer.std], [values.mean(), values.std()], rtol=1e-9)
        assert layer.fraction_zero == np.mean(values == 0)
        channel_means = values.mean(axis=(2, 3))
        for digit in (0, 3, 9):
            score = channel_means[labels == digit].mean(axis=0)
            expected = np.argsort(-score, kind="stable")[:4]
            np.testing.assert_array_equal(layer.top_channels[digit], expected)
            np.testing.assert_allclose(layer.top_values[digit], score[expected], rtol=1e-9)
    assert stats[RELU1].fraction_zero > 0.1  # after a ReLU, exact zeros are common
    text = str(stats)
    assert RELU3 in text and "class 9" in text and "zeros" in text


def test_statistics_for_one_row_and_2d_layers(mlp, rng):
    proto, w, b = mlp
    x = rng.normal(size=(1, 4)).astype(np.float32)
    stats = LayerActivations(proto, layers=["h", "r"]).statistics(x, top_k=2)
    h = (x.astype(np.float64) @ w)[0]
    predicted = int(np.argmax(np.maximum(h, 0) + b))
    assert stats.classes == (predicted,)
    np.testing.assert_array_equal(stats["h"].top_channels[predicted], np.argsort(-h, kind="stable")[:2])
    np.testing.assert_allclose(stats["h"].top_values[predicted], np.sort(h)[::-1][:2], rtol=1e-5)
    assert stats["r"].fraction_zero == np.mean(h <= 0)
    everyone = LayerActivations(proto, layers=["h"]).statistics(rng.normal(size=(5, 4)), target=None)
    assert everyone.classes == (None,) and "all rows" in str(everyone)


def test_statistics_with_a_fixed_class(mlp, rng):
    proto, w, _ = mlp
    x = rng.normal(size=(7, 4)).astype(np.float32)
    stats = LayerActivations(proto, layers=["r"]).statistics(x, target=2, top_k=3)
    assert stats.classes == (2,)
    score = np.maximum(x.astype(np.float64) @ w, 0).mean(axis=0)
    np.testing.assert_allclose(stats["r"].top_values[2], np.sort(score)[::-1], rtol=1e-5)


# -- (d) embedding --------------------------------------------------------------------------
def _same_up_to_sign(actual, expected):
    for column in range(expected.shape[1]):
        sign = np.sign(actual[:, column] @ expected[:, column])
        np.testing.assert_allclose(actual[:, column], sign * expected[:, column], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("pool", ["mean", None])
def test_embedding_equals_sklearn_pca(digits, digits_recorded, pool):
    from sklearn.decomposition import PCA

    _, labels = digits
    recorder, recorded = digits_recorded
    found = recorder.embedding(recorded, RELU3, labels=labels, pool=pool, n_components=3)
    values = recorded[RELU3].astype(np.float64)
    matrix = values.mean(axis=(2, 3)) if pool == "mean" else values.reshape(len(values), -1)
    reference = PCA(n_components=3).fit(matrix)
    _same_up_to_sign(found.coordinates, reference.transform(matrix))
    np.testing.assert_allclose(found.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-6)
    assert found.n_features == matrix.shape[1] and found.pooled == (pool == "mean")
    np.testing.assert_array_equal(found.predictions, recorded.predictions)
    assert np.mean(found.predictions == labels) > 0.95


def test_embedding_pools_images_by_default_and_separates_classes(digits, digits_recorded):
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    _, labels = digits
    recorder, recorded = digits_recorded
    pooled = recorder.embedding(recorded, RELU3, labels=labels)
    assert pooled.pooled and pooled.n_features == 32
    flat = recorder.embedding(recorded, RELU3, labels=labels, pool=None)
    knn = KNeighborsClassifier(n_neighbors=5)
    # chance is 0.10 on ten balanced classes
    assert cross_val_score(knn, pooled.coordinates, labels, cv=5).mean() > 0.2
    assert cross_val_score(knn, flat.coordinates, labels, cv=5).mean() > 0.5


# -- (e) batching ---------------------------------------------------------------------------
def test_batch_size_does_not_change_results():
    images, _ = load_samples()
    recorder = LayerActivations(DEFAULT_MODEL_PATH)
    one = recorder.activations(images, batch_size=1)
    seven = recorder.activations(images, batch_size=7)
    assert one.layers == seven.layers and len(one.layers) == 9
    for name in one.layers:
        np.testing.assert_allclose(one[name], seven[name], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(one.predictions, seven.predictions)


# -- (f) errors -----------------------------------------------------------------------------
def test_unknown_layer_suggests_close_names():
    with pytest.raises(ParameterError, match=r"layers: .*'/relu3/Relu_outptu_0'.*did you mean '/relu3/Relu_output_0'"):
        LayerActivations(DEFAULT_MODEL_PATH, layers=["/relu3/Relu_outptu_0"]).activations(load_samples()[0])


def test_layer_errors(mlp, rng):
    proto, _, _ = mlp
    x = rng.normal(size=(3, 4)).astype(np.float32)
    recorder = LayerActivations(proto, layers=["c"])
    assert recorder.layers == ["c"]  # the constructor validates nothing
    with pytest.raises(ParameterError, match="'c' has no batch axis"):
        recorder.activations(x)
    with pytest.raises(ParameterError, match="graph input"):
        LayerActivations(proto, layers=["x"]).activations(x)
    with pytest.raises(ParameterError, match="predicate selected no tensor"):
        LayerActivations(proto, layers=lambda info: False).activations(x)
    with pytest.raises(ParameterError, match="layers must be"):
        LayerActivations(proto, layers=3).activations(x)
    recorder = LayerActivations(proto, layers=["r"])
    with pytest.raises(ParameterError, match="'h' is not among the recorded layers"):
        recorder.embedding(x, "h")
    with pytest.raises(ParameterError, match="did you mean 'h'"):
        recorder.embedding(x, "hh")
    with pytest.raises(ParameterError, match="not among the recorded"):
        recorder.activations(x)["y"]


def test_argument_errors(mlp, rng):
    proto, _, _ = mlp
    recorder = LayerActivations(proto, layers=["h", "r"])
    x = rng.normal(size=(4, 4)).astype(np.float32)
    with pytest.raises(InputShapeError, match="x: input 'x'"):
        recorder.activations(rng.normal(size=(4, 5)))
    with pytest.raises(ParameterError, match=r"n_components .*min\(4, 3\) = 3.*got 4"):
        recorder.embedding(x, "h", n_components=4)
    with pytest.raises(InputShapeError, match="at least 2 rows"):
        recorder.embedding(x[:1], "h", n_components=1)
    with pytest.raises(ParameterError, match="labels: expected one label per row"):
        recorder.embedding(x, "h", labels=[0, 1])
    with pytest.raises(ParameterError, match="pool must be"):
        recorder.embedding(x, "h", pool="max")
    with pytest.raises(ParameterError, match="top_k must be"):
        recorder.statistics(x, top_k=0)
    with pytest.raises(ParameterError, match="not a callable"):
        recorder.statistics(x, target=lambda outputs: outputs[:, 0])
    with pytest.raises(TargetError, match="out of range"):
        recorder.statistics(x, target=7)
    recorded = recorder.activations(x)
    with pytest.raises(ParameterError, match="already recorded"):
        recorder.statistics(recorded, batch_size=2)
    with pytest.raises(ParameterError, match="unexpected keyword"):
        recorder.statistics(x, batchsize=2)


# -- plots ----------------------------------------------------------------------------------
def test_embedding_plot_legend_uses_label_names(make_onnx_model, rng, tmp_path):
    proto, _, _ = build_relu_mlp(make_onnx_model, class_names=["cat", "dog", "eel"])
    x = rng.normal(size=(30, 4)).astype(np.float32)
    recorder = LayerActivations(proto, layers=["h"])
    found = recorder.embedding(x, "h", labels=np.arange(30) % 3)
    ax = embedding_plot(found)
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:3] == ["cat", "dog", "eel"]
    assert ax.get_xlabel() == f"PC1 ({100 * found.explained_variance_ratio[0]:.1f}% variance)"
    by_prediction = embedding_plot(found, color_by="prediction")
    assert by_prediction.get_legend().get_title().get_text() == "prediction"
    ax.figure.savefig(tmp_path / "embedding.png")
    with pytest.raises(ParameterError, match="color_by"):
        embedding_plot(found, color_by="colour")


def test_activation_maps_share_one_colour_scale(digits_recorded, tmp_path):
    _, recorded = digits_recorded
    figure = activation_maps(recorded, RELU1, row=2, channels=6)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    assert len(images) == 6
    assert len({image.get_clim() for image in images}) == 1
    strongest = np.argsort(-recorded[RELU1][2].mean(axis=(1, 2)), kind="stable")[:6]
    assert [ax.get_title() for ax in figure.axes if ax.images] == [f"ch {c}" for c in strongest]
    assert len(figure.axes) == 7  # six maps and the colorbar
    figure.savefig(tmp_path / "maps.png")
    with pytest.raises(ParameterError, match=r"shape \(n_rows, C, H, W\)"):
        activation_maps(LayerActivations(DEFAULT_MODEL_PATH, ["logits"]).activations(load_samples()[0]), "logits")
    with pytest.raises(ParameterError, match="channels: indices"):
        activation_maps(recorded, RELU1, channels=[0, 99])
    with pytest.raises(ParameterError, match="row must be"):
        activation_maps(recorded, RELU1, row=10**6)


def test_trajectory_draws_input_maps_and_depth_profile(tmp_path):
    images, _ = load_samples()
    recorded = LayerActivations(DEFAULT_MODEL_PATH).activations(images)
    figure = trajectory(recorded, row=4)
    assert "predicted 4" in figure._suptitle.get_text()
    tiles = [ax for ax in figure.axes if ax.images]
    assert len(tiles) == 1 + 7  # the input and the seven (C, H, W) layers
    bars = [ax for ax in figure.axes if ax.get_ylabel() == "mean ± std"][0]
    heights = [patch.get_height() for patch in bars.patches]
    expected = [recorded[name][4].astype(np.float64).mean() for name in recorded.layers if name != "logits"]
    np.testing.assert_allclose(heights, expected, rtol=1e-6)
    figure.savefig(tmp_path / "trajectory.png")


@pytest.mark.parametrize("module", ["agnostic_explain.activations.record", "agnostic_explain.plot.activations"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_activations_repr_lists_layer_shapes(mlp, rng):
    recorded = LayerActivations(mlp[0], ["h"]).activations(rng.normal(size=(2, 4)))
    assert isinstance(recorded, Activations) and repr(recorded) == "Activations(n_rows=2, {h: (3,)}, output='y')"
