"""Malformed and hostile models end in the library's own errors, never in a raw exception, and
never read anything from the process's working directory."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import build_image_linear, build_linear, build_two_input
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain.errors import (
    AgnosticExplainError,
    InputShapeError,
    ModelExecutionError,
    ModelLoadError,
)
from agnostic_explain.runtime import session as session_module

X = np.ones((2, 4), dtype=np.float32)


def copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(proto)
    return result


def save_external(proto: onnx.ModelProto, folder, location="w.bin"):
    """``proto`` saved in ``folder`` with every initializer in ``location``; returns the path."""
    path = folder / "model.onnx"
    onnx.save_model(copy(proto), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def external_entry(proto, name, key, value):
    tensor = next(t for t in proto.graph.initializer if t.name == name)
    entry = next(e for e in tensor.external_data if e.key == key)
    entry.value = value


# -- 1. in-memory models never read external data from the working directory ---------------------
@pytest.mark.parametrize("form", ["bytes", "proto"])
def test_an_in_memory_model_with_external_data_needs_its_folder(tmp_path, monkeypatch, form):
    folder = tmp_path / "model"
    folder.mkdir()
    path = save_external(build_linear().proto, folder)
    work = tmp_path / "work"
    work.mkdir()
    (work / "w.bin").write_bytes(np.full(64, 7, dtype=np.float32).tobytes())  # a decoy
    monkeypatch.chdir(work)
    proto = onnx.load(str(path), load_external_data=False)
    given = proto.SerializeToString() if form == "bytes" else proto
    with pytest.raises(ModelLoadError, match="external_data_dir"):
        ae.load(given, providers="cpu")
    with pytest.raises(ModelLoadError, match="external_data_dir"):
        ae.graph.layers(given)
    from_folder = ae.load(given, providers="cpu", external_data_dir=folder).predict(X)
    np.testing.assert_allclose(from_folder, ae.load(path, providers="cpu").predict(X))


def test_open_session_refuses_external_data_without_a_folder(tmp_path):
    proto = onnx.load(str(save_external(build_linear().proto, tmp_path)), load_external_data=False)
    with pytest.raises(ModelLoadError, match="external_data_dir"):
        session_module.open_session(proto, providers=["CPUExecutionProvider"])


def test_external_data_past_the_end_of_its_file(tmp_path):
    path = save_external(build_linear().proto, tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    external_entry(proto, "W", "offset", "4096")
    onnx.save_model(proto, str(path))
    for call in (lambda: ae.load(path, providers="cpu"), lambda: ae.graph.layers(path)):
        with pytest.raises(ModelLoadError, match="past the end of the file"):
            call()


@pytest.mark.parametrize("value", ["-1", "x", "1e3"])
def test_external_data_offset_that_is_not_a_count(tmp_path, value):
    path = save_external(build_linear().proto, tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    external_entry(proto, "W", "length", value)
    onnx.save_model(proto, str(path))
    with pytest.raises(ModelLoadError, match="non-negative integer"):
        ae.load(path, providers="cpu")


def test_nul_byte_in_an_external_location(tmp_path):
    path = save_external(build_linear().proto, tmp_path)
    proto = onnx.load(str(path), load_external_data=False)
    external_entry(proto, "W", "location", "w.bin\x00.txt")
    onnx.save_model(proto, str(path))
    for call in (lambda: ae.load(path, providers="cpu"), lambda: ae.graph.split(path, "xw")):
        with pytest.raises(ModelLoadError, match="NUL byte"):
            call()


# -- 3. malformed graphs and metadata ----------------------------------------------------------
def test_a_graph_with_no_outputs():
    proto = copy(build_linear().proto)
    del proto.graph.output[:]
    for call in (lambda: ae.load(proto.SerializeToString(), providers="cpu"), lambda: ae.graph.layers(proto)):
        with pytest.raises(ModelLoadError, match="declares no outputs"):
            call()


@pytest.mark.parametrize("key", ["class_names", "feature_names"])
def test_names_as_a_dict_with_keys_that_are_not_integers(key):
    proto = build_linear(metadata={key: json.dumps({"a": "x", "b": "y"})}).proto
    with pytest.raises(ModelLoadError, match=f"{key}.*'a' is not an integer"):
        ae.load(proto, providers="cpu")


def test_names_nested_past_the_recursion_limit():
    proto = build_linear(metadata={"class_names": "[" * 100_000 + "]" * 100_000}).proto
    with pytest.raises(ModelLoadError, match="nested too deeply"):
        ae.load(proto, providers="cpu")


def test_preprocessing_nested_past_the_recursion_limit_is_ignored():
    proto = build_linear(metadata={"preprocessing": "[" * 100_000 + "]" * 100_000}).proto
    assert ae.load(proto, providers="cpu").preprocessing is None


@pytest.mark.parametrize("old, new", [(b'["a"', b'["\xff"'), (b"xw", b"\xffw")])
def test_names_and_metadata_that_are_not_utf8(old, new):
    data = build_linear(metadata={"class_names": '["a", "b", "c"]'}).proto.SerializeToString()
    broken = data.replace(old, new)
    for call in (lambda: ae.load(broken, providers="cpu"), lambda: ae.graph.split(broken, "y")):
        with pytest.raises(ModelLoadError, match="not valid UTF-8"):
            call()


def test_an_external_location_that_is_not_utf8(tmp_path):
    path = save_external(build_linear().proto, tmp_path, location="wq.bin")
    path.write_bytes(path.read_bytes().replace(b"wq.bin", b"w\xff.bin"))
    with pytest.raises(ModelLoadError, match="not valid UTF-8"):
        ae.graph.layers(path)


@pytest.mark.parametrize("size", [2**31, 2**40, 2**62])
def test_huge_declared_dimensions(size):
    proto = copy(build_two_input().proto)
    proto.graph.input[1].type.tensor_type.shape.dim[0].dim_value = size  # z: no batch symbol, so held fixed
    for step in (lambda: ae.graph.layers(proto), lambda: ae.graph.split(proto, "xz")):
        try:
            step()
        except AgnosticExplainError:
            pass
    try:
        model = ae.load(proto, providers="cpu", batch_size=4)
    except AgnosticExplainError:
        return
    with pytest.raises(AgnosticExplainError):
        ae.Occlusion(model, window=2).explain(X[:1], fixed_inputs={"z": X[:1]})


def test_a_huge_static_batch_is_refused_before_padding():
    """Rows centred on the batch mean depend on each other, so the static batch stays."""
    size = 2**62
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1), helper.make_node("Sub", ["x", "m"], ["y"])],
        "centred", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, 4])],
    ), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = ae.load(proto, providers="cpu")
    assert model.static_batch == size
    with pytest.raises(ModelExecutionError, match="static batch"):
        model.predict(X)


def test_a_scalar_input_cannot_be_explained():
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])], "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[onnx.numpy_helper.from_array(np.ones(3, np.float32), "w")],
    ), opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model = ae.load(proto, providers="cpu")
    with pytest.raises(InputShapeError, match="scalar"):
        ae.Occlusion(model).explain(np.float32(1.0))


def test_an_output_without_rows_is_an_execution_error():
    """z declared with a static first dimension of 0 rows: the output has none either."""
    proto = copy(build_two_input().proto)
    proto.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 0
    model = ae.load(proto, providers="cpu")
    with pytest.raises(ModelExecutionError, match="one row of output per input row"):
        ae.Occlusion(model, window=2).explain(X[:1], fixed_inputs={"z": np.ones((0, 4), np.float32)})


def test_a_negative_static_batch_is_read_as_dynamic():
    proto = copy(build_linear().proto)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    assert ae.graph.static_batch_size(proto) is None


# -- 2. the row-independence probe is bounded --------------------------------------------------
def test_the_batch_probe_is_skipped_for_large_inputs(monkeypatch):
    monkeypatch.setattr(session_module, "PROBE_BYTES", 1024)
    proto = build_image_linear(channels=3, height=16, width=16).proto
    proto = copy(proto)
    for value in (*proto.graph.input, *proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    with pytest.warns(RuntimeWarning, match="keeps its static batch"):
        model = ae.load(proto, providers="cpu")
    assert model.static_batch == 1
    assert model.predict(np.ones((3, 3, 16, 16), np.float32)).shape[0] == 3


def test_the_shape_probe_makes_no_huge_sample():
    """x declared (N, 4, 2**31 - 1, -7): shape inference gives up, and a made-up sample would take 64 GiB."""
    proto = copy(build_two_input().proto)
    for size in (2**31 - 1, -7):
        proto.graph.input[0].type.tensor_type.shape.dim.add().dim_value = size
    for call in (lambda: ae.graph.layers(proto), lambda: ae.graph.split(proto, "xz")):
        with pytest.raises(ModelExecutionError, match="pass sample="):
            call()
