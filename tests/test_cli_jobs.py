"""``agnostic-explain explain-dataset``: the same results as the API, resuming, one-line errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agnostic_explain import jobs
from agnostic_explain.cli import main
from agnostic_explain.data import DEFAULT_MODEL_PATH

MODEL = str(DEFAULT_MODEL_PATH)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Twelve digit PNGs, one file that is not an image, and a text file (ignored)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    for i, image in enumerate(load_digits().images[:12]):
        Image.fromarray(np.clip(np.round(image * 16), 0, 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "05b.png").write_bytes(b"not a png")
    (folder / "README.txt").write_text("digits")
    return folder


def test_the_command_matches_the_api_and_resumes(capsys, folder, tmp_path):
    argv = ["explain-dataset", MODEL, folder, "--out", tmp_path / "cli", "--method", "rise", "--param", "n_masks=20",
            "--param", "cells=4", "--seed", "3", "--chunk-size", "4", "--devices", "cpu,cpu", "--on-error", "skip",
            "--no-progress"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "explained 12 rows in 4 chunks (4 run now)" in out and "skipped 1 unreadable input(s): 05b.png" in out
    spec = {"method": "rise", "params": {"n_masks": 20, "cells": 4}}
    api = jobs.explain_dataset(MODEL, folder, spec, out=tmp_path / "api", random_state=3, chunk_size=4,
                               on_error="skip", progress=False).load()
    cli = jobs.load_results(tmp_path / "cli")
    assert np.array_equal(cli.values, api.values) and cli.keys.tolist() == api.keys.tolist()
    assert "05b.png" not in cli.keys and len(cli) == 12
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "(0 run now, 4 found finished)" in out


def test_occlusion_by_default_with_the_default_window(capsys, folder, tmp_path):
    code, out, err = run_cli(capsys, "explain-dataset", MODEL, folder, "--out", tmp_path, "--on-error", "skip",
                             "--no-progress")
    assert code == 0, err
    assert "window [1, 1, 1] (default)" in out
    assert jobs.load_results(tmp_path).manifest["spec"]["explainer"]["params"] == {"window": [1, 1, 1]}


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "cannot read '05b.png'"),  # --on-error fail is the default
        (["--param", "window"], "--param: expected KEY=VALUE"),
        (["--chunk-size", "many"], "--chunk-size: expected an integer"),
        (["--method", "rise", "--param", "n_mask=3"], "params.*for 'rise'"),
        (["--devices", "tpu:0"], "devices: expected 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_errors_print_one_line_and_exit_1(capsys, folder, tmp_path, extra, message):
    code, out, err = run_cli(capsys, "explain-dataset", MODEL, folder, "--out", tmp_path, "--no-progress", *extra)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith("agnostic-explain: error: ")
    assert re.search(message, err), err


def test_another_job_in_the_folder_is_refused(capsys, folder, tmp_path):
    base = ["explain-dataset", MODEL, folder, "--out", tmp_path, "--on-error", "skip", "--no-progress"]
    assert run_cli(capsys, *base, "--chunk-size", "6")[0] == 0
    code, _, err = run_cli(capsys, *base, "--chunk-size", "5")
    assert code == 1 and "chunk_size: 6 in the folder, 5 now" in err
    code, out, _ = run_cli(capsys, *base, "--chunk-size", "5", "--no-resume")
    assert code == 0 and "(3 run now)" in out


def test_verify_checks_a_folder_and_names_a_damaged_chunk(capsys, folder, tmp_path):
    code, out, _ = run_cli(capsys, "explain-dataset", MODEL, folder, "--out", tmp_path, "--no-progress",
                           "--chunk-size", "2", "--on-error", "skip")
    assert code == 0
    code, out, _ = run_cli(capsys, "explain-dataset", MODEL, folder, "--out", tmp_path, "--verify")
    assert code == 0 and "no damage" in out
    chunk = sorted((tmp_path / "chunks").glob("*.values.npy"))[0]
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF
    chunk.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "explain-dataset", MODEL, folder, "--out", tmp_path, "--verify")
    assert code == 1 and "chunk" in err and len(err.strip().splitlines()) == 1
