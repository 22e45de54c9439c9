"""The ``agnostic-explain`` command end to end: inspect, explain, demo, and its error lines."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import build_reshape_static, build_two_input, float_input, make_model, weights
from onnx import helper
from PIL import Image

import agnostic_explain as ae
from agnostic_explain.cli import main
from agnostic_explain.explainers.occlusion import default_window
from agnostic_explain.data import DEFAULT_MODEL_PATH, DEFAULT_SAMPLES_PATH, load_samples
from agnostic_explain.explanation import Explanation
from agnostic_explain.runtime.providers import cuda_usable
from agnostic_explain.report.summary import summarize_explanation

MODEL = str(DEFAULT_MODEL_PATH)
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def build_rgb_cnn(metadata=None) -> onnx.ModelProto:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm on (batch, 3, 16, 16), 5 classes."""
    return make_model(
        [
            helper.make_node("Conv", ["x", "K", "kb"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"]),
        ],
        [float_input("x", ["batch", 3, 16, 16])],
        [float_input("logits", ["batch", 5])],
        [("K", weights(1, 4, 3, 3, 3)), ("kb", weights(2, 4)), ("W", weights(3, 4, 5)), ("b", weights(4, 5))],
        metadata=metadata,
    )


def save(proto: onnx.ModelProto, path: Path) -> str:
    onnx.save(proto, str(path))
    return str(path)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def digit_npy(tmp_path) -> Path:
    images, _ = load_samples()
    path = tmp_path / "digit.npy"
    np.save(path, images[3])  # one row, without its batch axis
    return path


# -- inspect -----------------------------------------------------------------------------
def test_inspect_prints_specs_metadata_and_providers(capsys):
    code, out, _ = run_cli(capsys, "inspect", MODEL)
    assert code == 0
    for text in ("image", "(batch, 1, 8, 8)", "logits", "(batch, 10)", "ai.onnx 17", "pytorch", "class_names (10 names)",
                 "CPUExecutionProvider", "dynamic"):
        assert text in out


def test_inspect_json_is_machine_readable(capsys):
    code, out, _ = run_cli(capsys, "inspect", MODEL, "--json", "--provider", "cpu")
    info = json.loads(out)
    assert code == 0
    assert info["inputs"] == [{"name": "image", "dtype": "float32", "shape": ["batch", 1, 8, 8], "batch_axis": 0}]
    assert info["opsets"] == {"ai.onnx": 17} and info["node_count"] > 0
    assert info["providers"] == ["CPUExecutionProvider"] and "CPUExecutionProvider" in info["providers_available"]
    assert len(info["class_names"]) == 10 and "preprocessing" in info["metadata_keys"]
    assert info["static_batch"] is None


# -- explain -----------------------------------------------------------------------------
def test_explain_npy_matches_the_python_api(capsys, tmp_path, digit_npy):
    code, out, _ = run_cli(
        capsys, "explain", MODEL, digit_npy, "--window", "1,2,2", "--stride", "1,1,1",
        "--baseline", "mean", "--target", "3", "--output-transform", "softmax", "--out", tmp_path / "out",
    )
    assert code == 0
    saved = Explanation.load(tmp_path / "out" / "explanation.npz")
    direct = ae.Occlusion(MODEL, window=(1, 2, 2), stride=(1, 1, 1), baseline="mean").explain(
        np.load(digit_npy)[None], target=3, output_transform="softmax"
    )
    np.testing.assert_array_equal(saved.values, direct.values)
    np.testing.assert_array_equal(saved.base_values, direct.base_values)
    assert saved.target.tolist() == [3] and saved.n_evals == direct.n_evals
    assert (tmp_path / "out" / "heatmap.png").stat().st_size > 0
    assert "window (1, 2, 2), stride (1, 1, 1)" in out and "target 3" in out and "explanation.npz" in out


def test_explain_uses_a_default_window_and_says_so(capsys, tmp_path, digit_npy):
    code, out, _ = run_cli(capsys, "explain", MODEL, digit_npy, "--out", tmp_path)
    assert code == 0
    assert "window (1, 1, 1), stride (1, 1, 1) (default)" in out
    assert Explanation.load(tmp_path / "explanation.npz").n_evals == 1 + 64


def test_explain_writes_the_html_report_unless_told_not_to(capsys, tmp_path, digit_npy):
    code, out, _ = run_cli(capsys, "explain", MODEL, digit_npy, "--window", "1,2,2", "--out", tmp_path / "with")
    assert code == 0
    report = tmp_path / "with" / "report.html"
    assert f"wrote {report}" in out.splitlines()
    page = report.read_text(encoding="utf-8")
    assert "(batch, 1, 8, 8)" in page and page.count("data:image/png;base64,") == 1
    code, out, _ = run_cli(capsys, "explain", MODEL, digit_npy, "--no-report", "--out", tmp_path / "without")
    assert code == 0 and "report.html" not in out
    assert not (tmp_path / "without" / "report.html").exists() and (tmp_path / "without" / "heatmap.png").exists()


def test_default_window_covers_an_eighth_of_each_side():
    assert default_window((3, 224, 224), None) == (3, 28, 28)
    assert default_window((224, 224, 3), "nhwc") == (28, 28, 3)
    assert default_window((20,), None) == (1,)
    assert default_window((5, 7), None) == (1, 1)


def test_explain_png_reads_scales_and_normalises_with_model_metadata(capsys, tmp_path):
    preprocessing = {"layout": "NCHW", "scale": 1 / 255, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    model = save(build_rgb_cnn({"preprocessing": json.dumps(preprocessing)}), tmp_path / "rgb.onnx")
    pixels = np.random.default_rng(0).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    code, out, _ = run_cli(
        capsys, "explain", model, tmp_path / "photo.png", "--resize", "16,16", "--window", "3,4,4", "--out", tmp_path / "out"
    )
    assert code == 0, out
    resized = np.asarray(Image.fromarray(pixels).resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = ((resized / 255 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)).transpose(2, 0, 1)[None]
    saved = Explanation.load(tmp_path / "out" / "explanation.npz")
    np.testing.assert_allclose(saved.data, expected, rtol=1e-6, atol=1e-6)
    direct = ae.Occlusion(model, window=(3, 4, 4)).explain(expected)
    np.testing.assert_allclose(saved.values, direct.values, rtol=1e-6, atol=1e-6)
    assert saved.preprocessing["mean"] == IMAGENET_MEAN


def test_explain_grayscale_png_for_a_one_channel_model_with_flags(capsys, tmp_path):
    pixels = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)
    Image.fromarray(pixels).convert("RGB").save(tmp_path / "digit.png")
    code, _, _ = run_cli(capsys, "explain", MODEL, tmp_path / "digit.png", "--scale", str(1 / 255), "--out", tmp_path)
    assert code == 0
    saved = Explanation.load(tmp_path / "explanation.npz")
    np.testing.assert_allclose(saved.data, pixels[None, None] / 255, atol=1e-6)


def test_explain_multi_input_model_with_fixed_input(capsys, tmp_path):
    case = build_two_input()
    model = save(case.proto, tmp_path / "two.onnx")
    rng = np.random.default_rng(5)
    x, z = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(1, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "z.npy", z)
    code, out, err = run_cli(
        capsys, "explain", model, tmp_path / "x.npy", "--input", "x", "--fixed", f"z={tmp_path / 'z.npy'}",
        "--target", "1", "--out", tmp_path / "out",
    )
    assert code == 0, err
    assert "window (1,)" in out
    saved = Explanation.load(tmp_path / "out" / "explanation.npz")
    np.testing.assert_allclose(saved.values, x * z * case.W[:, 1], rtol=1e-5, atol=1e-5)


def test_explain_static_batch_model(capsys, tmp_path):
    case = build_reshape_static()
    model = save(case.proto, tmp_path / "static.onnx")
    code, out, _ = run_cli(capsys, "inspect", model)
    assert code == 0 and "static, 1" in out
    x = np.random.default_rng(6).normal(size=(3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run_cli(capsys, "explain", model, tmp_path / "x.npy", "--target", "2", "--out", tmp_path / "out")
    assert code == 0, err
    saved = Explanation.load(tmp_path / "out" / "explanation.npz")
    np.testing.assert_allclose(saved.values, x * case.W[:, 2], rtol=1e-5, atol=1e-5)


def test_heatmap_is_a_png_centred_on_zero(capsys, tmp_path, digit_npy):
    from agnostic_explain.plot import image_grid, image_overlay

    assert run_cli(capsys, "explain", MODEL, digit_npy, "--out", tmp_path)[0] == 0
    with Image.open(tmp_path / "heatmap.png") as png:
        assert png.format == "PNG" and png.width > 100
    explanation = Explanation.load(tmp_path / "explanation.npz")
    low, high = image_overlay(explanation).images[-1].get_clim()
    assert high > 0 and low == -high
    low, high = image_overlay(explanation, signed=False).images[-1].get_clim()
    assert low == 0 < high
    assert len(image_grid(explanation).axes) >= 1


# -- demo --------------------------------------------------------------------------------
def test_demo_writes_its_files(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "demo", "--out", tmp_path / "demo")
    assert code == 0
    saved = Explanation.load(tmp_path / "demo" / "explanation.npz")
    assert saved.values.shape == (4, 1, 8, 8) and saved.params["window"] == [1, 2, 2]
    assert (tmp_path / "demo" / "heatmap.png").stat().st_size > 0
    assert "predicted" in out and "heatmap.png" in out
    assert f"wrote {tmp_path / 'demo' / 'report.html'}" in out.splitlines()
    page = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert all(html.escape(summarize_explanation(saved, row)) in page for row in range(4))


def test_heatmap_png_draws_what_the_report_draws(capsys, tmp_path, digit_npy):
    """heatmap.png is the grid of the report's overlays: the same top-k outline and colour scale."""
    import io

    from agnostic_explain.plot.image import TOP_K, image_grid

    assert run_cli(capsys, "explain", MODEL, digit_npy, "--out", tmp_path)[0] == 0
    explanation = Explanation.load(tmp_path / "explanation.npz")
    expected = io.BytesIO()
    figure = image_grid(explanation, top_k=TOP_K)
    figure.savefig(expected, format="png", dpi=120)
    with Image.open(tmp_path / "heatmap.png") as written, Image.open(expected) as drawn:
        np.testing.assert_array_equal(np.asarray(written), np.asarray(drawn))
    assert "outline: top 10% positive" in figure.axes[0].get_title()


# -- errors ------------------------------------------------------------------------------
def _bad_shape(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((1, 1, 7, 7), dtype=np.float32))
    return ["explain", MODEL, tmp_path / "bad.npy", "--out", tmp_path / "out"]


def _not_onnx(tmp_path):
    (tmp_path / "fake.onnx").write_bytes(b"this is not a protobuf")
    return ["inspect", tmp_path / "fake.onnx"]


ERROR_CASES = {
    "missing model": (lambda tmp: ["inspect", tmp / "nowhere.onnx"], "no such file"),
    "not onnx": (_not_onnx, "not an ONNX model"),
    "missing input": (lambda tmp: ["explain", MODEL, tmp / "nowhere.npy", "--out", tmp], "nowhere.npy"),
    "input shape": (_bad_shape, "expects shape"),
    "window too large": (lambda tmp: ["explain", MODEL, DEFAULT_SAMPLES_PATH, "--window", "1,9,9", "--out", tmp], "larger"),
    "target out of range": (lambda tmp: ["explain", MODEL, DEFAULT_SAMPLES_PATH, "--target", "12", "--out", tmp], "out of range"),
    "bad flag value": (lambda tmp: ["explain", MODEL, DEFAULT_SAMPLES_PATH, "--window", "1,x,2", "--out", tmp], "--window"),
    "provider": (lambda tmp: ["inspect", MODEL, "--provider", "cuda"], "CUDA"),
}


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_errors_print_one_line_and_exit_1(capsys, tmp_path, name):
    if name == "provider" and cuda_usable():
        pytest.skip("a CUDA device is present, so asking for CUDA is not an error here")
    make_argv, expected = ERROR_CASES[name]
    code, _, err = run_cli(capsys, *make_argv(tmp_path))
    assert code == 1
    assert err.startswith("agnostic-explain: error: ") and err.count("\n") == 1
    assert expected in err and "Traceback" not in err


def test_usage_errors_keep_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["explain", MODEL, "x.npy", "--method", "lime", "--out", "o"])
    assert exit_info.value.code == 2


def test_verbose_reraises(capsys, tmp_path):
    with pytest.raises(ae.errors.ModelNotFoundError):
        main(["inspect", str(tmp_path / "nowhere.onnx"), "--verbose"])


# -- the installed command ----------------------------------------------------------------
def _command() -> list[str]:
    script = Path(sys.executable).parent / "agnostic-explain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agnostic_explain.cli"]


def test_installed_command_runs_and_fails_cleanly(tmp_path):
    done = subprocess.run([*_command(), "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"agnostic-explain {ae.__version__}"
    done = subprocess.run([*_command(), "inspect", str(tmp_path / "missing.onnx")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("agnostic-explain: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
