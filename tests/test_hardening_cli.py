"""The command line on bad files and flags: one error line, exit status 1, nothing allocated first;
and ONNX Runtime's own log lines never bury that line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from conftest import float_input, make_model
from onnx import helper
from PIL import Image

from agnostic_explain import io as io_module
from agnostic_explain.cli import main
from agnostic_explain.data import DEFAULT_MODEL_PATH
from agnostic_explain.errors import InputError, InputShapeError, ParameterError
from agnostic_explain.runtime.specs import TensorSpec

MODEL = str(DEFAULT_MODEL_PATH)
IMAGE_SPEC = TensorSpec("image", np.dtype(np.float32), ("batch", 1, 8, 8), batch_axis=0)


def one_error_line(capsys, *argv) -> str:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agnostic-explain: error: "), err
    return lines[0]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "scalar.npy", np.float32(3))
    np.save(tmp_path / "digit.npy", np.zeros((1, 1, 8, 8), np.float32))
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "digit.png")
    return tmp_path


def test_an_empty_npy(capsys, files):
    line = one_error_line(capsys, "explain", MODEL, files / "empty.npy", "--out", files / "out")
    assert "empty.npy" in line and "the file is empty" in line
    assert not (files / "out").exists()


def test_a_0d_npy(capsys, files):
    assert "single number" in one_error_line(capsys, "explain", MODEL, files / "scalar.npy", "--out", files / "out")


def test_an_empty_fixed_file(capsys, files):
    line = one_error_line(capsys, "explain", MODEL, files / "digit.npy", "--fixed", f"other={files / 'empty.npy'}",
                          "--out", files / "out")
    assert "the file is empty" in line


@pytest.mark.parametrize("flag", [["--resize", "0,0"], ["--resize=-1,8"]])
def test_resize_that_is_not_positive(capsys, files, flag):
    line = one_error_line(capsys, "explain", MODEL, files / "digit.png", *flag, "--out", files / "out")
    assert "resize must be two positive ints" in line


def test_resize_on_an_array_is_refused(capsys, files):
    line = one_error_line(capsys, "explain", MODEL, files / "digit.npy", "--resize", "8,8", "--out", files / "out")
    assert "only images are resized" in line


def test_an_empty_window(capsys, files):
    line = one_error_line(capsys, "explain", MODEL, files / "digit.npy", "--window", "", "--out", files / "out")
    assert "--window" in line


@pytest.mark.parametrize("command", [
    ["explain", MODEL, "{files}/digit.npy"],
    ["explain-dataset", MODEL, "{files}/digit.npy", "--no-progress"],
    ["split", MODEL, "--at", "/relu2/Relu_output_0"],
    ["demo"],
])
def test_an_empty_out_writes_nothing_in_the_working_directory(capsys, files, monkeypatch, command):
    work = files / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = [part.format(files=files) for part in command]
    assert "--out" in one_error_line(capsys, *argv, "--out", "")
    assert list(work.iterdir()) == []


def test_an_empty_out_for_a_job_in_the_api(files, monkeypatch):
    from agnostic_explain.jobs import explain_dataset

    monkeypatch.chdir(files)
    with pytest.raises(ParameterError, match="out: expected a folder name"):
        explain_dataset(MODEL, files / "digit.npy", {"method": "occlusion"}, out="")


def test_zero_threads_for_a_job(capsys, files):
    line = one_error_line(capsys, "explain-dataset", MODEL, files / "digit.npy", "--threads", "0",
                          "--out", files / "job", "--no-progress")
    assert "threads must be a positive int" in line


# -- 2. sizes are checked before memory is taken -------------------------------------------------
def test_a_resize_the_model_refuses_fails_before_reading(files, monkeypatch):
    def no_open(*args, **kwargs):
        raise AssertionError("the image was opened")

    monkeypatch.setattr(Image, "open", no_open)
    with pytest.raises(InputShapeError, match=r"resize: \(30000, 30000\) does not fit the model"):
        io_module.read_input(files / "digit.png", IMAGE_SPEC, resize=(30000, 30000))


def test_a_resize_over_the_memory_budget(files):
    spec = TensorSpec("image", np.dtype(np.float32), ("batch", 3, "height", "width"), batch_axis=0)
    with pytest.raises(InputError, match="over the 1 GiB limit"):
        io_module.read_input(files / "digit.png", spec, resize=(30000, 30000))


def test_pillow_decompression_bomb_limit_is_respected(files, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)
    with pytest.raises(InputError, match="decompression bomb"):
        io_module.read_input(files / "digit.png", IMAGE_SPEC)


# -- 5. ONNX Runtime's log stays out of the way ---------------------------------------------------
def test_a_run_time_failure_prints_one_line(tmp_path):
    """A Reshape to 3 values fails inside ONNX Runtime on 4 features: stderr is our one line."""
    proto = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [float_input("x", ["N", 4])], [float_input("y", ["N", 3])],
        [("shape", np.array([-1, 3], dtype=np.int64))],
    )
    model = tmp_path / "broken.onnx"
    onnx.save(proto, str(model))
    np.save(tmp_path / "x.npy", np.ones((1, 4), np.float32))
    done = subprocess.run(
        [sys.executable, "-m", "agnostic_explain.cli", "explain", str(model), str(tmp_path / "x.npy"),
         "--out", str(tmp_path / "out"), "--provider", "cpu"],
        capture_output=True, text=True, timeout=120,
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("agnostic-explain: error: "), done.stderr
