"""The graph commands (``layers``, ``split``) and the CAM methods of ``explain`` on the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import agnostic_explain as ae
from agnostic_explain.cli import main
from agnostic_explain.data import DEFAULT_MODEL_PATH, DEFAULT_SAMPLES_PATH, load_samples
from agnostic_explain.explanation import Explanation

MODEL = str(DEFAULT_MODEL_PATH)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_prints_the_table(capsys):
    code, out, _ = run_cli(capsys, "layers", MODEL)
    assert code == 0
    assert "/conv1/Conv" in out and "(batch,16,8,8)" in out and "19,178 parameters" in out
    assert len(out.strip().splitlines()) == 2 + 9 + 1  # header, rule, nodes, total


def test_layers_json(capsys):
    code, out, _ = run_cli(capsys, "layers", MODEL, "--json")
    info = json.loads(out)
    assert code == 0 and info["n_params"] == 19178
    assert info["layers"][0]["output_shapes"] == [["batch", 16, 8, 8]]


def test_split_writes_head_and_tail_that_compose(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "split", MODEL, "--at", "/relu2/Relu_output_0", "--out", tmp_path)
    assert code == 0 and "head.onnx" in out and "tail.onnx" in out
    images, _ = load_samples()
    head, tail = ae.load(str(tmp_path / "head.onnx")), ae.load(str(tmp_path / "tail.onnx"))
    np.testing.assert_allclose(tail.predict(head.predict(images)), ae.load(MODEL).predict(images), rtol=1e-5, atol=1e-5)


def test_split_of_an_external_data_model_writes_its_own_weights(capsys, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(onnx.load(MODEL), str(folder / "m.onnx"), save_as_external_data=True, location="w.bin", size_threshold=0)
    code, _, _ = run_cli(capsys, "split", folder / "m.onnx", "--at", "/pool/MaxPool_output_0", "--out", tmp_path / "parts")
    assert code == 0 and (tmp_path / "parts" / "tail.onnx.data").exists()
    images, _ = load_samples()
    head, tail = ae.load(str(tmp_path / "parts" / "head.onnx")), ae.load(str(tmp_path / "parts" / "tail.onnx"))
    np.testing.assert_allclose(tail.predict(head.predict(images)), ae.load(MODEL).predict(images), rtol=1e-5, atol=1e-5)


def test_weights_and_topology_commands(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "weights", MODEL)
    assert code == 0 and "classifier.weight" in out and "(10,512)" in out and "8 initializers" in out
    code, out, _ = run_cli(capsys, "topology", MODEL, "--out", tmp_path / "graph.png", "--highlight", "/relu3/Relu_output_0")
    assert code == 0 and (tmp_path / "graph.png").stat().st_size > 1000


@pytest.mark.parametrize("method, cls", [("ablation-cam", ae.AblationCam), ("score-cam", ae.ScoreCam)])
def test_explain_with_a_cam_matches_the_python_api(capsys, tmp_path, method, cls):
    code, out, _ = run_cli(capsys, "explain", MODEL, DEFAULT_SAMPLES_PATH, "--method", method, "--out", tmp_path)
    assert code == 0
    assert "layer /relu3/Relu_output_0 (chosen automatically)" in out
    saved = Explanation.load(tmp_path / "explanation.npz")
    images, _ = load_samples()
    expected = cls(MODEL).explain(images)
    np.testing.assert_allclose(saved.values, expected.values, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "heatmap.png").exists()


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["split", MODEL, "--at", "/relu2/Relu_outpt_0", "--out", "{tmp}"], "did you mean '/relu2/Relu_output_0'"),
        (["split", MODEL, "--at", ",", "--out", "{tmp}"], "--at"),
        (["explain", MODEL, str(DEFAULT_SAMPLES_PATH), "--method", "score-cam", "--window", "1,2,2", "--out", "{tmp}"],
         "--window: only occlusion"),
        (["explain", MODEL, str(DEFAULT_SAMPLES_PATH), "--layer", "/relu3/Relu_output_0", "--out", "{tmp}"],
         "--layer: only the CAM methods"),
        (["explain", MODEL, str(DEFAULT_SAMPLES_PATH), "--method", "ablation-cam", "--layer", "logits", "--out", "{tmp}"],
         "layer"),
        (["layers", "nowhere.onnx"], "no such file"),
        (["topology", MODEL, "--out", "{tmp}/graph.xyz"], "--out"),
        (["topology", MODEL, "--out", "{tmp}/graph.png", "--highlight", "/relu3/Relu_outpt_0"], "did you mean"),
    ],
)
def test_graph_command_errors_print_one_line(capsys, tmp_path, argv, expected):
    code, _, err = run_cli(capsys, *[arg.replace("{tmp}", str(tmp_path)) for arg in argv])
    assert code == 1
    assert err.startswith("agnostic-explain: error: ") and err.count("\n") == 1
    assert expected in err


def test_a_reader_that_leaves_early_is_not_an_error():
    """``agnostic-explain layers MODEL | head -1``: the broken pipe ends the command quietly, status 0."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "agnostic_explain.cli", "layers", str(MODEL)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before the table is written
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"Broken pipe" not in err
