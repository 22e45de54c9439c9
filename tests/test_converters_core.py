"""The converters' shared parts: the parity check, the metadata, framework-free imports, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import build_linear

import agnostic_explain as ae
from agnostic_explain.cli import main
from agnostic_explain.errors import ConversionError, ParameterError, ParityError
from converters.metadata import annotate, finish, read_metadata
from converters.parity import check_parity

FRAMEWORKS = ("torch", "tensorflow", "keras", "xgboost", "lightgbm", "skl2onnx", "onnxmltools", "tf2onnx", "skops")


@pytest.fixture(scope="module")
def linear():
    return build_linear()


def _y(linear, x):
    return x @ linear.W + linear.b


def test_importing_the_package_and_converters_imports_no_framework():
    code = (
        "import sys, agnostic_explain, agnostic_explain.cli, agnostic_explain.cli.convert, converters\n"
        "agnostic_explain.cli.app._parser()\n"
        f"print([name for name in {FRAMEWORKS!r} if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_parity_reports_the_largest_differences(linear):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    expected = _y(linear, x)
    parity = check_parity(linear.proto, {"x": x}, {"y": expected + 1e-6})
    assert parity.n_rows == 6
    assert parity.max_abs == pytest.approx(np.abs(_y(linear, x) - (expected + 1e-6)).max(), abs=1e-6)
    assert parity.max_rel == pytest.approx(parity.max_abs / np.abs(expected + 1e-6).max(), rel=1e-3)
    assert set(parity.outputs) == {"y"} and len(parity.outputs["y"]["worst_index"]) == 2


def test_parity_fails_loudly_naming_the_worst_output_and_element(linear):
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    wrong = _y(linear, x)
    wrong[4, 1] += 0.5
    with pytest.raises(ParityError, match=r"output 'y' element \(4, 1\)"):
        check_parity(linear.proto, {"x": x}, {"y": wrong})
    # the tolerance can be set
    assert check_parity(linear.proto, {"x": x}, {"y": wrong}, atol=1.0).max_abs == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ConversionError, match="atol"):
        check_parity(linear.proto, {"x": x}, {"y": wrong}, atol=-1)


def test_metadata_round_trips_and_load_reads_the_names(linear, tmp_path):
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    proto = finish(
        linear.proto, feeds={"x": x}, expected={"y": _y(linear, x)}, framework="numpy", framework_version="2",
        path=tmp_path / "m.onnx", atol=1e-4, rtol=1e-4, class_names=["a", "b", "c"],
        feature_names=[f"f{i}" for i in range(4)], preprocessing={"scale": 0.5},
    )
    found = read_metadata(proto)
    assert found["class_names"] == ["a", "b", "c"] and found["source_framework"] == "numpy"
    assert found["parity"]["max_abs"] < 1e-5 and found["converter"].startswith("agnostic-explain")
    model = ae.load(str(tmp_path / "m.onnx"))
    assert model.label_names == ("a", "b", "c") and model.feature_names == ("f0", "f1", "f2", "f3")
    assert model.preprocessing == {"scale": 0.5}
    explanation = ae.FeatureAblation(model).explain(x)
    assert explanation.label_names == ("a", "b", "c") and explanation.feature_names[0] == "f0"
    # annotating again replaces, never duplicates
    again = annotate(proto, class_names=["x", "y", "z"])
    assert [prop.key for prop in again.metadata_props].count("class_names") == 1
    assert read_metadata(again)["class_names"] == ["x", "y", "z"]


def test_inspect_shows_the_source_and_parity(linear, tmp_path, capsys):
    x = np.ones((2, 4), np.float32)
    finish(linear.proto, feeds={"x": x}, expected={"y": _y(linear, x)}, framework="numpy", framework_version="2",
           path=tmp_path / "m.onnx", atol=1e-4, rtol=1e-4)
    assert main(["inspect", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "source" in out and "numpy 2; parity max abs difference" in out
    assert main(["inspect", str(tmp_path / "m.onnx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["source_framework"] == "numpy" and info["parity"]["n_rows"] == 2


def test_convert_cli_errors_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    (tmp_path / "model.bin").write_bytes(b"??")
    cases = [
        (["convert", str(tmp_path / "nowhere.keras"), "--sample", str(tmp_path / "x.npy"), "--out", "o.onnx"],
         "no such file"),
        (["convert", str(tmp_path / "model.bin"), "--sample", str(tmp_path / "x.npy"), "--out", "o.onnx"],
         "--framework"),
    ]
    for argv, expected in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("agnostic-explain: error: ") and err.count("\n") == 1 and expected in err


def test_framework_is_inferred_from_the_source(tmp_path):
    from agnostic_explain.cli.convert import framework_of

    assert framework_of(tmp_path, None) == "tensorflow"
    assert framework_of(tmp_path / "m.keras", None) == "keras"
    assert framework_of(tmp_path / "m.json", "xgboost") == "xgboost"
    with pytest.raises(ParameterError, match="--framework"):
        framework_of(tmp_path / "m.json", None)


def test_saved_onnx_is_a_valid_model(linear, tmp_path):
    x = np.ones((2, 4), np.float32)
    finish(linear.proto, feeds={"x": x}, expected={"y": _y(linear, x)}, framework="numpy", framework_version="2",
           path=tmp_path / "nested" / "m.onnx", atol=1e-4, rtol=1e-4)
    onnx.checker.check_model(str(tmp_path / "nested" / "m.onnx"))
