"""Weight statistics, weight plots and the topology drawing, on models built in code."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from agnostic_explain.data import DEFAULT_MODEL_PATH
from agnostic_explain.errors import MissingDependencyError, ModelLoadError, ParameterError
from agnostic_explain.graph import layers
from agnostic_explain.graph.weights import WeightTable, weights
from agnostic_explain.plot.topology import topology
from agnostic_explain.plot.weights import filter_grid, weight_heatmap, weight_histograms
from conftest import build_linear, float_input, make_model

# the module, not the function graph.weights that shadows it in the package
weights_module = importlib.import_module("agnostic_explain.graph.weights")

pytest.importorskip("matplotlib")


def _stats_model():
    """x -> Reshape(shape) -> MatMul(W) -> Add(b) -> Mul(b): b is read by two nodes."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(6, 4)).astype(np.float32)
    w[0, :2] = 0.0
    b = np.array([0.0, -2.0, 3.5, 0.25], dtype=np.float32)
    shape = np.array([-1, 6], dtype=np.int64)
    proto = make_model(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"], name="reshape"),
            helper.make_node("MatMul", ["flat", "W"], ["h"], name="dense"),
            helper.make_node("Add", ["h", "b"], ["shifted"]),  # unnamed: displayed "Add_2"
            helper.make_node("Mul", ["shifted", "b"], ["y"], name="scale"),
        ],
        [float_input("x", ["N", 2, 3])],
        [float_input("y", ["N", 4])],
        [("W", w), ("b", b), ("shape", shape)],
    )
    proto.graph.initializer.append(helper.make_tensor("vocabulary", TensorProto.STRING, [2], [b"cat", b"dog"]))
    return proto, {"W": w, "b": b, "shape": shape}


def _check_row(row, values):
    exact = values.astype(np.float64)
    assert row.shape == values.shape and row.dtype == values.dtype and row.size == values.size
    np.testing.assert_allclose(
        [row.mean, row.std, row.min, row.max, row.mean_abs, row.zero_fraction],
        [exact.mean(), exact.std(), exact.min(), exact.max(), np.abs(exact).mean(), np.mean(exact == 0)],
        rtol=1e-12, atol=1e-12,
    )


def test_weight_statistics_match_numpy_and_consumers():
    proto, arrays = _stats_model()
    table = weights(proto)
    assert isinstance(table, WeightTable) and [row.name for row in table] == ["W", "b", "shape"]
    assert table.skipped == ("vocabulary",)
    for name, values in arrays.items():
        _check_row(table[name], values)
    assert table["shape"].dtype == np.int64 and table["shape"].mean == 2.5
    assert table["W"].layers == ("dense",) and table["W"].op_types == ("MatMul",)
    assert table["b"].layers == ("Add_2", "scale") and table["b"].op_types == ("Add", "Mul")
    assert table["shape"].layers == ("reshape",)
    assert table.n_params == 24 + 4 + 2 and table[1].name == "b" and "W" in table and "x" not in table
    with pytest.raises(KeyError):
        table["missing"]


def test_chunked_statistics_merge_exactly(monkeypatch):
    values = np.random.default_rng(0).normal(5.0, 3.0, size=(37, 11)).astype(np.float32)
    values[values < 2.0] = 0.0
    proto = make_model([helper.make_node("Add", ["x", "V"], ["y"])], [float_input("x", [37, 11])],
                       [float_input("y", [37, 11])], [("V", values)])
    monkeypatch.setattr(weights_module, "_CHUNK", 10)  # 41 uneven chunks
    _check_row(weights(proto)["V"], values)


def test_text_table_is_aligned_with_a_total_line():
    proto, _ = _stats_model()
    lines = str(weights(proto)).splitlines()
    assert lines[0].split()[:3] == ["name", "shape", "dtype"] and set(lines[1]) <= {"-", " "}
    assert lines[-1].startswith("3 initializers, 30 values") and "vocabulary" in lines[-1]
    mean_end = lines[0].index("mean") + len("mean")  # numbers right-aligned under their header
    assert all(line[mean_end - 1] != " " for line in lines[2:-1])
    assert "Add_2 (Add), scale (Mul)" in lines[3]


def test_external_data_is_read_from_the_model_folder(tmp_path):
    proto, arrays = _stats_model()
    path = tmp_path / "model.onnx"
    onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    on_disk = onnx.load(str(path), load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in on_disk.graph.initializer)
    table = weights(path)
    for name, values in arrays.items():
        _check_row(table[name], values)
    with pytest.raises(ModelLoadError):
        weights(on_disk)  # in memory: the weights' folder is unknown


def test_default_model_weights():
    table = weights(DEFAULT_MODEL_PATH)
    assert table.n_params == layers(DEFAULT_MODEL_PATH).n_params == 19178
    assert table["classifier.weight"].layers == ("/classifier/Gemm",)


# -- filter_grid ------------------------------------------------------------------------------
def _first_conv(torch_cnn):
    net, data = torch_cnn
    proto = onnx.load_from_string(data)
    conv = next(layer for layer in layers(proto) if layer.op_type == "Conv")
    return proto, conv, net[0].weight.detach().numpy().astype(np.float64)


def test_filter_grid_tiles_are_the_filters(torch_cnn):
    proto, conv, w = _first_conv(torch_cnn)  # (6, 3, 3, 3): a 3 x 2 grid of 3 x 3 tiles, 1-pixel gaps
    ax = filter_grid(proto, conv.name)
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (7, 11) and len(ax.images) == 1 and len(ax.figure.axes) == 2  # + colorbar
    np.testing.assert_allclose(mosaic[0:3, 0:3], w[0].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(mosaic[4:7, 8:11], w[5].mean(axis=0), rtol=1e-6)
    assert mosaic.mask[3].all() and mosaic.mask[:, 3].all()  # the gaps are blank
    low, high = ax.images[0].get_clim()
    assert low == -high and high == pytest.approx(np.percentile(np.abs(w.mean(axis=1)), 99.5))
    assert conv.name in ax.get_title() and "(6,3,3,3)" in ax.get_title()
    by_weight = filter_grid(proto, conv.inputs[1], channel=2, max_filters=4).images[0].get_array()
    assert by_weight.shape == (7, 7)
    np.testing.assert_allclose(by_weight[4:7, 4:7], w[3, 2], rtol=1e-6)


def test_filter_grid_rgb(torch_cnn):
    proto, conv, w = _first_conv(torch_cnn)
    ax = filter_grid(proto, conv.name, channel="rgb", limit=0.5)
    mosaic = ax.images[0].get_array()
    assert mosaic.shape == (7, 11, 4) and len(ax.figure.axes) == 1
    expected = np.clip(0.5 + 0.5 * np.moveaxis(w[1], 0, -1) / 0.5, 0, 1)
    np.testing.assert_allclose(mosaic[0:3, 4:7, :3], expected, rtol=1e-6)
    assert (mosaic[3, :, 3] == 0).all()  # transparent gap


def test_filter_grid_errors(torch_cnn):
    proto, conv, _ = _first_conv(torch_cnn)
    second = [layer for layer in layers(proto) if layer.op_type == "Conv"][1]
    with pytest.raises(ParameterError, match="3 input channels"):
        filter_grid(proto, second.name, channel="rgb")
    with pytest.raises(ParameterError, match="channel"):
        filter_grid(proto, conv.name, channel=3)
    with pytest.raises(ParameterError, match="Gemm"):
        filter_grid(DEFAULT_MODEL_PATH, "/classifier/Gemm")
    with pytest.raises(ParameterError, match="no weight initializer"):
        filter_grid(DEFAULT_MODEL_PATH, "/relu1/Relu")
    with pytest.raises(ParameterError, match="did you mean '/conv1/Conv'"):
        filter_grid(DEFAULT_MODEL_PATH, "/conv1/Cnv")
    with pytest.raises(ParameterError, match="max_filters"):
        filter_grid(DEFAULT_MODEL_PATH, "/conv1/Conv", max_filters=0)


# -- weight_histograms and weight_heatmap -----------------------------------------------------
def test_weight_histograms_count_every_weight():
    figure = weight_histograms(DEFAULT_MODEL_PATH, bins=10)
    assert len(figure.axes) == 4
    sizes = [16 * 9, 32 * 16 * 9, 32 * 32 * 9, 10 * 512]
    for ax, size in zip(figure.axes, sizes):
        assert len(ax.patches) == 10 and sum(patch.get_height() for patch in ax.patches) == size
    capped = weight_histograms(DEFAULT_MODEL_PATH, max_layers=2)
    titles = [ax.get_title() for ax in capped.axes]
    assert len(titles) == 2 and "/conv1/Conv" in titles[0] and "/classifier/Gemm" in titles[1]
    assert "2 of 4" in capped.get_suptitle()
    chosen = weight_histograms(DEFAULT_MODEL_PATH, ["conv1.bias", "/conv3/Conv"], bins=5)
    assert [sum(p.get_height() for p in ax.patches) for ax in chosen.axes] == [16, 32 * 32 * 9]
    with pytest.raises(ParameterError, match="did you mean"):
        weight_histograms(DEFAULT_MODEL_PATH, ["conv1.weigth"])


def test_weight_heatmap_orients_outputs_as_rows():
    ax = weight_heatmap(DEFAULT_MODEL_PATH, "/classifier/Gemm")  # Gemm transB=1: stored (out, in)
    stored = numpy_helper.to_array(next(t for t in onnx.load(str(DEFAULT_MODEL_PATH)).graph.initializer
                                        if t.name == "classifier.weight"))
    np.testing.assert_array_equal(ax.images[0].get_array(), stored)
    assert ax.get_xlabel().startswith("inputs (512)") and ax.get_ylabel().startswith("outputs (10)")
    low, high = ax.images[0].get_clim()
    assert low == -high
    linear = build_linear()  # MatMul: W stored (in, out), drawn transposed
    np.testing.assert_array_equal(weight_heatmap(linear.proto, "W").images[0].get_array(), linear.W.T)
    conv = weight_heatmap(DEFAULT_MODEL_PATH, "conv2.weight").images[0].get_array()
    assert conv.shape == (32, 144)
    with pytest.raises(ParameterError, match="weight_histograms"):
        weight_heatmap(DEFAULT_MODEL_PATH, "conv1.bias")
    with pytest.raises(ParameterError, match="limit"):
        weight_heatmap(DEFAULT_MODEL_PATH, "conv2.weight", limit=-1.0)


# -- topology ---------------------------------------------------------------------------------
def _boxes(ax):
    return {patch.get_gid(): patch for patch in ax.patches if patch.get_gid()}


def _centre(patch):
    box = patch.get_bbox()
    return (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2


def test_topology_draws_every_node_and_highlights_one():
    names = [layer.name for layer in layers(DEFAULT_MODEL_PATH)]
    ax = topology(DEFAULT_MODEL_PATH, highlight="/relu3/Relu", highlight_color="#ff00ff")
    boxes = _boxes(ax)
    assert list(boxes) == ["input:image", *names, "output:logits"]
    heights = [_centre(boxes[gid])[1] for gid in boxes]
    assert heights == sorted(heights, reverse=True)  # a chain: one layer per node, top to bottom
    assert len(ax.patches) - len(boxes) == len(names) + 1  # one arrow per tensor edge
    magenta = (1.0, 0.0, 1.0, 1.0)
    assert boxes["/relu3/Relu"].get_facecolor() == magenta
    assert all(boxes[name].get_facecolor() != magenta for name in boxes if name != "/relu3/Relu")
    assert boxes["input:image"].get_facecolor() == boxes["output:logits"].get_facecolor()
    assert boxes["input:image"].get_facecolor() != boxes["/conv1/Conv"].get_facecolor()
    by_tensor = _boxes(topology(DEFAULT_MODEL_PATH, highlight=layers(DEFAULT_MODEL_PATH)[3].outputs[0]))
    by_weight = _boxes(topology(DEFAULT_MODEL_PATH, highlight="conv1.weight"))
    assert by_tensor["/relu2/Relu"].get_facecolor() == by_weight["/conv1/Conv"].get_facecolor() != \
        by_weight["/relu2/Relu"].get_facecolor()


def test_topology_layout_of_a_residual_graph_with_a_constant():
    """x -> conv a -> relu -> conv b -> add(relu, conv b) -> reshape(shape from a Constant)."""
    rng = np.random.default_rng(0)
    shape_value = helper.make_tensor("shape_value", TensorProto.INT64, [2], [-1, 32])
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "A"], ["a"], name="conv_a", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["a"], ["r"], name="relu"),
            helper.make_node("Conv", ["r", "B"], ["b"], name="conv_b", pads=[1, 1, 1, 1]),
            helper.make_node("Add", ["r", "b"], ["s"], name="add"),
            helper.make_node("Constant", [], ["target_shape"], name="constant", value=shape_value),
            helper.make_node("Reshape", ["s", "target_shape"], ["y"], name="reshape"),
        ],
        [float_input("x", ["N", 2, 4, 4])],
        [float_input("y", ["N", 32])],
        [("A", rng.normal(size=(2, 2, 3, 3)).astype(np.float32)),
         ("B", rng.normal(size=(2, 2, 3, 3)).astype(np.float32))],
    )
    boxes = _boxes(topology(proto))
    x = {gid: _centre(patch)[0] for gid, patch in boxes.items()}
    y = {gid: _centre(patch)[1] for gid, patch in boxes.items()}
    assert y["add"] < y["conv_b"] < y["relu"] and y["reshape"] < y["add"]
    assert y["constant"] == y["add"]  # just above its consumer, not up among the inputs
    boxes_by_row = {}
    for gid, patch in boxes.items():
        boxes_by_row.setdefault(round(y[gid], 6), []).append(patch.get_bbox())
    for row in boxes_by_row.values():  # no two boxes of a row overlap
        row.sort(key=lambda box: box.x0)
        assert all(left.x1 <= right.x0 for left, right in zip(row, row[1:]))
    assert abs(x["relu"] - x["conv_b"]) < 0.5  # the main chain stays straight


def test_topology_errors():
    with pytest.raises(ParameterError, match="did you mean '/relu3/Relu'"):
        topology(DEFAULT_MODEL_PATH, highlight="/relu3/Rel")
    with pytest.raises(ParameterError, match="max_nodes"):
        topology(DEFAULT_MODEL_PATH, max_nodes=3)
    with pytest.raises(ParameterError, match="engine"):
        topology(DEFAULT_MODEL_PATH, engine="dot")
    if importlib.util.find_spec("graphviz") is None or shutil.which("dot") is None:
        with pytest.raises(MissingDependencyError, match="graphviz"):
            topology(DEFAULT_MODEL_PATH, engine="graphviz")
    else:
        assert "MaxPool" in topology(DEFAULT_MODEL_PATH, engine="graphviz").source


@pytest.mark.parametrize("module", ["agnostic_explain.graph.weights", "agnostic_explain.plot.weights",
                                    "agnostic_explain.plot.topology"])
def test_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
