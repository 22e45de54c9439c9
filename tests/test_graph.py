"""graph.layers / tensors / expose on hand-built graphs whose every intermediate is known.

Split is tested in test_graph_split.py, randomize in test_graph_randomize.py; external data
(and its safety) and purity of every edit are tested here.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

import agnostic_explain as ae
from agnostic_explain.errors import ModelExecutionError, ModelLoadError, ParameterError
from agnostic_explain.graph import expose, layers, randomize, split, tensors, weight_layers
from conftest import float_input, make_model, weights

EPSILON = 1e-5  # BatchNormalization's default
F32 = {"rtol": 1e-5, "atol": 1e-5}


# -- models -----------------------------------------------------------------------------------
def build_mlp():
    """y = relu(x @ W1 + b1) @ W2 + b2, x of shape (batch, 4); every node named."""
    arrays = {"W1": weights(1, 4, 5), "b1": weights(2, 5), "W2": weights(3, 5, 3), "b2": weights(4, 3)}
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "W1"], ["h1"], name="fc1"),
            helper.make_node("Add", ["h1", "b1"], ["a1"], name="bias1"),
            helper.make_node("Relu", ["a1"], ["r1"], name="relu1"),
            helper.make_node("MatMul", ["r1", "W2"], ["h2"], name="fc2"),
            helper.make_node("Add", ["h2", "b2"], ["y"], name="bias2"),
        ],
        [float_input("x", ["batch", 4])],
        [float_input("y", ["batch", 3])],
        list(arrays.items()),
    )
    return proto, arrays


def mlp_values(arrays, x) -> dict:
    h1 = x @ arrays["W1"]
    a1 = h1 + arrays["b1"]
    r1 = np.maximum(a1, 0)
    h2 = r1 @ arrays["W2"]
    return {"h1": h1, "a1": a1, "r1": r1, "h2": h2, "y": h2 + arrays["b2"]}


def build_cnn():
    """y = relu(batchnorm(conv3x3(x, pad 1))), x of shape (batch, 2, 5, 5): a chain ORT fuses."""
    arrays = {
        "W": weights(5, 3, 2, 3, 3), "B": weights(6, 3), "scale": weights(7, 3), "shift": weights(8, 3),
        "mean": weights(9, 3), "var": (np.abs(weights(10, 3)) + 0.5).astype(np.float32),
    }
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv"),
            helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn"),
            helper.make_node("Relu", ["n"], ["y"], name="relu"),
        ],
        [float_input("x", ["batch", 2, 5, 5])],
        [float_input("y", ["batch", 3, 5, 5])],
        list(arrays.items()),
    )
    return proto, arrays


def cnn_values(arrays, x) -> dict:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # (n, c, 5, 5, 3, 3)
    c = np.einsum("ncijkl,ockl->noij", windows, arrays["W"]) + arrays["B"][:, None, None]

    def channel(name):
        return arrays[name][:, None, None]

    n = (c - channel("mean")) / np.sqrt(channel("var") + EPSILON) * channel("scale") + channel("shift")
    return {"c": c, "n": n, "y": np.maximum(n, 0)}


SCALE = weights(11, 6)


def build_reshape_from_input():
    """y = -reshape(relu(x * scale), s): s is a graph input, so inference cannot know y0's rank."""
    return make_model(
        [
            helper.make_node("Mul", ["x", "scale"], ["m"], name="scale"),
            helper.make_node("Relu", ["m"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "s"], ["y0"], name="reshape"),
            helper.make_node("Neg", ["y0"], ["y"], name="neg"),
        ],
        [float_input("x", ["batch", 6]), helper.make_tensor_value_info("s", TensorProto.INT64, [None])],
        [float_input("y", ["a", "b", "c"])],
        [("scale", SCALE)],
    )


def run_all(proto, feeds, level=None, external_data_dir=None) -> dict:
    """Every output of ``proto`` by name, through agnostic_explain.load or a raw session at ``level``."""
    if level is None:
        model = ae.load(proto, providers="cpu", external_data_dir=external_data_dir)
        return dict(zip([spec.name for spec in model.outputs], model.run(feeds)))
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([value.name for value in session.get_outputs()], session.run(None, feeds)))


@pytest.fixture(scope="module")
def mlp():
    return build_mlp()


@pytest.fixture(scope="module")
def cnn():
    return build_cnn()


@pytest.fixture
def x4(rng):
    return rng.normal(size=(5, 4)).astype(np.float32)


# -- layers and tensors -----------------------------------------------------------------------
def test_layers_lists_ops_symbolic_shapes_and_parameter_counts(mlp):
    proto, arrays = mlp
    table = layers(proto)
    assert [layer.name for layer in table] == ["fc1", "bias1", "relu1", "fc2", "bias2"]
    assert [layer.op_type for layer in table] == ["MatMul", "Add", "Relu", "MatMul", "Add"]
    assert table["fc1"].inputs == ("x", "W1") and table["fc1"].outputs == ("h1",)
    assert table["fc1"].input_shapes == (("batch", 4), (4, 5))
    assert table["fc1"].output_shapes == (("batch", 5),)
    assert table["relu1"].input_shapes == (("batch", 5),) and table["fc2"].output_shapes == (("batch", 3),)
    assert table["bias2"].output_shapes == (("batch", 3),)
    expected = {"fc1": arrays["W1"].size, "bias1": arrays["b1"].size, "relu1": 0,
                "fc2": arrays["W2"].size, "bias2": arrays["b2"].size}
    assert {layer.name: layer.n_params for layer in table} == expected
    assert table.n_params == sum(value.size for value in arrays.values()) == 43
    assert len(table) == 5 and table[2].name == "relu1"
    with pytest.raises(KeyError):
        table["relu2"]


def test_layers_on_conv_batchnorm_counts_every_initializer(cnn):
    proto, arrays = cnn
    table = layers(proto)
    assert table["conv"].output_shapes == (("batch", 3, 5, 5),)
    assert table["conv"].n_params == arrays["W"].size + arrays["B"].size == 57
    assert table["bn"].n_params == 4 * 3 and table["relu"].n_params == 0
    assert table.n_params == sum(value.size for value in arrays.values())


def test_str_of_table_lists_every_node_and_the_totals(mlp):
    text = str(layers(mlp[0]))
    lines = text.splitlines()
    for name, op in [("fc1", "MatMul"), ("bias1", "Add"), ("relu1", "Relu"), ("fc2", "MatMul"), ("bias2", "Add")]:
        assert any(name in line and op in line for line in lines), name
    assert "(batch,4) (4,5)" in text and "(batch,5)" in text
    assert lines[-1] == "5 nodes, 43 parameters"
    assert len(lines) == 1 + 1 + 5 + 1  # header, rule, one row per node, totals


def test_tensors_kinds_producers_and_consumers(mlp):
    found = tensors(mlp[0])
    assert set(found) == {"x", "W1", "b1", "W2", "b2", "h1", "a1", "r1", "h2", "y"}
    assert found["x"].kind == "input" and found["x"].shape == ("batch", 4) and found["x"].consumers == ("fc1",)
    assert found["W2"].kind == "initializer" and found["W2"].shape == (5, 3) and found["W2"].source == "declared"
    assert found["r1"].kind == "intermediate" and found["r1"].producer == "relu1" and found["r1"].consumers == ("fc2",)
    assert found["r1"].source == "shape inference" and found["r1"].dtype == np.float32
    assert found["y"].kind == "output" and found["y"].consumers == ()


@pytest.mark.parametrize("stored", ["proto", "external data file"])
def test_tensors_a_run_fills_what_shape_inference_misses(stored, rng, tmp_path, monkeypatch):
    proto = build_reshape_from_input()
    if stored != "proto":
        proto = save_external(proto, tmp_path / "model")
        monkeypatch.chdir(tmp_path)  # the weights are found from the model's folder, not the working one
    sample = {"x": rng.normal(size=(4, 6)).astype(np.float32), "s": np.array([4, 3, 2], dtype=np.int64)}
    found = tensors(proto, sample=sample)
    assert found["r"].source == "shape inference" and found["r"].shape == ("batch", 6)
    assert found["y0"].source == "run"
    assert found["y0"].dtype == np.float32 and found["y0"].shape == ("batch", 3, 2)
    table = layers(proto, sample=sample)
    assert table["reshape"].output_shapes == (("batch", 3, 2),)
    assert table["neg"].input_shapes == (("batch", 3, 2),)
    with pytest.raises(ModelExecutionError, match="sample: the run that finds the shapes of.*'y0'"):
        tensors(proto, sample={**sample, "s": np.array([5, 5], dtype=np.int64)})


def test_data_dependent_dimension_stays_unknown_not_pinned_to_a_sample():
    proto = make_model(
        [helper.make_node("NonZero", ["x"], ["nz"], name="nonzero"), helper.make_node("Transpose", ["nz"], ["y"])],
        [float_input("x", ["batch", 6])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["n", 2])],
    )
    info = tensors(proto)["nz"]
    assert info.dtype == np.int64 and info.source == "shape inference"
    assert len(info.shape) == 2 and info.shape[0] == 2 and not isinstance(info.shape[1], int)


# -- expose -----------------------------------------------------------------------------------
def test_expose_keeps_outputs_first_and_returns_the_intermediates(mlp, x4):
    proto, arrays = mlp
    exposed = expose(proto, ["r1", "h1", "r1", "y"])
    assert [value.name for value in exposed.graph.output] == ["y", "r1", "h1"]
    assert exposed.graph.output[0] == proto.graph.output[0]
    values = run_all(exposed, {"x": x4})
    expected = mlp_values(arrays, x4)
    for name in ("y", "r1", "h1"):
        np.testing.assert_allclose(values[name], expected[name], **F32)
    np.testing.assert_array_equal(values["y"], run_all(proto, {"x": x4})["y"])
    inputs = run_all(expose(proto, ["x", "W1"]), {"x": x4})  # an input and an initializer too
    np.testing.assert_array_equal(inputs["x"], x4)
    np.testing.assert_array_equal(inputs["W1"], arrays["W1"])


def test_expose_all_and_predicate(mlp, x4):
    proto, arrays = mlp
    exposed = expose(proto, "all")
    assert [value.name for value in exposed.graph.output] == ["y", "h1", "a1", "r1", "h2"]
    values, expected = run_all(exposed, {"x": x4}), mlp_values(arrays, x4)
    for name in expected:
        np.testing.assert_allclose(values[name], expected[name], **F32)
    chosen = expose(proto, lambda info: info.producer.startswith("fc"))
    assert [value.name for value in chosen.graph.output] == ["y", "h1", "h2"]
    with pytest.raises(ParameterError, match="predicate selected no tensor"):
        expose(proto, lambda info: False)


@pytest.mark.parametrize("build, values_of, fused", [
    (build_cnn, cnn_values, {"BatchNormalization", "Relu"}),
    (build_mlp, mlp_values, {"MatMul", "Add"}),
], ids=["conv-bn-relu", "matmul-add"])
def test_exposed_values_do_not_depend_on_ort_fusions(build, values_of, fused, rng, tmp_path):
    proto, arrays = build()
    x = rng.normal(size=(3, *[dim.dim_value for dim in proto.graph.input[0].type.tensor_type.shape.dim][1:]))
    x = x.astype(np.float32)
    # ORT does fuse this graph when nothing is exposed, so the check below means something
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert not fused & {node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node}

    exposed = expose(proto, "all")
    optimized = run_all(exposed, {"x": x}, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    plain = run_all(exposed, {"x": x}, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    expected = values_of(arrays, x)
    assert set(optimized) == set(plain) == set(expected)
    for name in expected:
        np.testing.assert_allclose(optimized[name], plain[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(plain[name], expected[name], rtol=1e-4, atol=1e-4)


def test_expose_unknown_name_suggests_a_close_one(mlp):
    with pytest.raises(ParameterError, match=r"names: .*'r_1'.*did you mean 'r1'"):
        expose(mlp[0], "r_1")
    with pytest.raises(ParameterError, match="names: no tensor names given"):
        expose(mlp[0], [])


def test_expose_fills_the_type_inference_misses_from_a_run(rng):
    proto = build_reshape_from_input()
    sample = {"x": rng.normal(size=(4, 6)).astype(np.float32), "s": np.array([4, 3, 2], dtype=np.int64)}
    exposed = expose(proto, "y0", sample=sample)
    onnx.checker.check_model(exposed)
    other = {"x": sample["x"][:2], "s": np.array([2, 2, 3], dtype=np.int64)}  # another shape still runs
    values = run_all(exposed, other)
    np.testing.assert_allclose(values["y0"], np.maximum(other["x"] * SCALE, 0).reshape(2, 2, 3), **F32)
    np.testing.assert_array_equal(values["y"], -values["y0"])


# -- external data ----------------------------------------------------------------------------
def save_external(proto, folder):
    folder.mkdir(exist_ok=True)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    onnx.save(copy, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return folder / "model.onnx"


def is_external(tensor) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL


def test_external_data_model_works_with_layers_expose_split_randomize(mlp, x4, tmp_path, monkeypatch):
    proto, arrays = mlp
    path = save_external(proto, tmp_path / "model")
    folder = path.parent
    monkeypatch.chdir(tmp_path)  # not the model's folder: the weights are found through external_data_dir
    assert all(is_external(tensor) for tensor in onnx.load(str(path), load_external_data=False).graph.initializer)
    expected = mlp_values(arrays, x4)

    table = layers(path)
    assert table.n_params == 43 and table["fc2"].n_params == 15

    exposed = expose(path, ["r1"])
    assert all(is_external(tensor) for tensor in exposed.graph.initializer)  # references, never inlined
    values = run_all(exposed, {"x": x4}, external_data_dir=folder)
    np.testing.assert_allclose(values["y"], expected["y"], **F32)
    np.testing.assert_allclose(values["r1"], expected["r1"], **F32)

    head, tail = split(path, at="r1")
    middle = run_all(head, {"x": x4}, external_data_dir=folder)["r1"]
    np.testing.assert_allclose(run_all(tail, {"r1": middle}, external_data_dir=folder)["y"], expected["y"], **F32)

    assert weight_layers(path) == ["bias2", "fc2", "bias1", "fc1"]
    edited = randomize(path, "fc2", random_state=0)
    by_name = {tensor.name: tensor for tensor in edited.graph.initializer}
    assert {name for name, tensor in by_name.items() if not is_external(tensor)} == {"W2", "b2"}
    changed = run_all(edited, {"x": x4}, external_data_dir=folder)["y"]
    w2, b2 = numpy_helper.to_array(by_name["W2"]), numpy_helper.to_array(by_name["b2"])
    np.testing.assert_allclose(changed, expected["r1"] @ w2 + b2, **F32)
    assert not np.allclose(w2, arrays["W2"])


def test_edited_external_data_proto_loads_from_any_working_directory(mlp, x4, tmp_path, monkeypatch):
    proto, arrays = mlp
    path = save_external(proto, tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    values = run_all(expose(path, ["r1"]), {"x": x4}, external_data_dir=path.parent)
    np.testing.assert_allclose(values["r1"], mlp_values(arrays, x4)["r1"], **F32)


def write_crafted(folder, location, in_constant=False):
    """A model whose tensor "W" (an initializer, or a Constant's value) names external data at ``location``."""
    tensor = numpy_helper.from_array(np.zeros(4, np.float32), "W")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        tensor.external_data.add(key=key, value=value)
    nodes = [helper.make_node("Mul", ["x", "W"], ["y"])]
    if in_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=tensor))
    graph = helper.make_graph(nodes, "crafted", [float_input("x", ["batch", 4])], [float_input("y", ["batch", 4])],
                              initializer=[] if in_constant else [tensor])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    (folder / "model.onnx").write_bytes(proto.SerializeToString())
    return folder / "model.onnx"


@pytest.fixture
def outside(tmp_path):
    """A readable, valid weight file next to (not inside) the model folder."""
    path = tmp_path / "outside.bin"
    path.write_bytes(np.arange(1, 5, dtype=np.float32).tobytes())
    return path


@pytest.fixture
def no_reads(monkeypatch):
    """Fail the test if anything tries to read external data or start a session."""
    def refuse(*args, **kwargs):
        raise AssertionError("external data was read before the location was checked")

    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_tensor", refuse)
    monkeypatch.setattr(ort, "InferenceSession", refuse)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_the_folder_is_refused_before_reading(where, outside, tmp_path, no_reads):
    folder = tmp_path / "model"
    folder.mkdir()
    if where == "symlink":
        (folder / "weights.bin").symlink_to(outside)
    location = {"parent": "../outside.bin", "absolute": str(outside), "symlink": "weights.bin"}[where]
    path = write_crafted(folder, location)
    calls = [
        layers, tensors, lambda p: expose(p, "all"), lambda p: split(p, at="y"),
        lambda p: randomize(p, random_state=0), weight_layers, lambda p: ae.load(p, providers="cpu"),
        lambda p: ae.load(onnx.load(str(p), load_external_data=False), providers="cpu", external_data_dir=folder),
    ]
    for call in calls:
        with pytest.raises(ModelLoadError, match="outside the model's folder"):
            call(path)


def test_external_data_in_a_constant_attribute_outside_the_folder_is_refused(outside, tmp_path, no_reads):
    # The ONNX checker guards attribute tensors; the package's own check covers initializers
    folder = tmp_path / "model"
    folder.mkdir()
    path = write_crafted(folder, "../outside.bin", in_constant=True)
    for call in (layers, lambda p: expose(p, "all"), lambda p: ae.load(p, providers="cpu")):
        with pytest.raises(ModelLoadError, match="outside"):
            call(path)


# -- purity -----------------------------------------------------------------------------------
EDITS = {
    "layers": lambda model: layers(model),
    "expose-all": lambda model: expose(model, "all"),
    "expose-predicate": lambda model: expose(model, lambda info: info.kind == "intermediate"),
    "split": lambda model: split(model, at=["h1"]),
    "split-two": lambda model: split(model, at=["r1"]),
    "randomize-cascade": lambda model: randomize(model, "fc1", random_state=0),
    "randomize-permute": lambda model: randomize(model, "fc2", cascade=False, method="permute", random_state=1),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_every_edit_leaves_its_input_unchanged(edit, mlp, tmp_path):
    proto = build_mlp()[0]
    before = proto.SerializeToString()
    EDITS[edit](proto)
    assert proto.SerializeToString() == before
    path = save_external(proto, tmp_path / "model")
    files = {name: (path.parent / name).read_bytes() for name in ("model.onnx", "weights.bin")}
    EDITS[edit](path)
    assert {name: (path.parent / name).read_bytes() for name in files} == files
