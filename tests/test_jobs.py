"""Data-set jobs on the local backend: resuming after kills, determinism, sources and bad input."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import build_linear

import agnostic_explain as ae
from agnostic_explain import jobs
from agnostic_explain.data import DEFAULT_MODEL_PATH
from agnostic_explain.errors import InputError, JobError, JobMismatchError, ParameterError
from agnostic_explain.io import read_input
from agnostic_explain.jobs import store as store_module
from agnostic_explain.jobs.spec import chunk_rng

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 2000
RISE = {"method": "rise", "params": {"n_masks": 20, "cells": 4}}
OCCLUSION = {"method": "occlusion", "params": {"window": [1, 2, 2]}}


def digits_pixels() -> np.ndarray:
    """2,000 8-bit digit images: scikit-learn's 1,797 and the first 203 mirrored."""
    from sklearn.datasets import load_digits

    raw = load_digits().images
    raw = np.concatenate([raw, raw[: N_IMAGES - len(raw), :, ::-1]])
    return np.clip(np.round(raw * 16), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A folder of 2,000 PNG digits, and the model inputs they read as: pixel / 255, NCHW."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("digits")
    pixels = digits_pixels()
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    inputs = (pixels.astype(np.float32) * np.float32(1 / 255))[:, None]
    return folder, inputs


@pytest.fixture(scope="module")
def model():
    return ae.load(DEFAULT_MODEL_PATH, providers="cpu")


def committed(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["chunks"]
    except (OSError, ValueError, KeyError):
        return {}


def mtimes(out: Path, records: dict) -> dict:
    return {name: (out / name).stat().st_mtime_ns for record in records.values() for name in record["files"]}


def same_results(a, b) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in ("values", "base_values", "target",
                                                                             "index", "keys"))


# -- the must-show: killed three times, resumed, identical ------------------------------------
def test_rise_job_killed_three_times_then_resumed_is_identical(digits, model, tmp_path):
    folder, inputs = digits
    reference = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path / "reference", devices=["cpu"],
                                     chunk_size=50, random_state=11, progress=False)
    assert reference.complete and reference.n_chunks == 40 and reference.n_rows == N_IMAGES
    expected = reference.load()
    # chunk k is Rise on the chunk's rows with the chunk's own seed, whoever explains it
    direct = ae.Rise(model, n_masks=20, cells=4).explain(inputs[150:200], random_state=chunk_rng(11, 3))
    assert np.array_equal(expected.values[150:200], direct.values)
    assert np.array_equal(read_input(folder / "00007.png", model.inputs[0], layout="nchw"), inputs[7:8])

    out = tmp_path / "killed"
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        from agnostic_explain import jobs
        from agnostic_explain.data import DEFAULT_MODEL_PATH
        jobs.explain_dataset(DEFAULT_MODEL_PATH, {str(folder)!r}, {RISE!r}, out={str(out)!r},
                             devices=["cpu", "cpu"], chunk_size=50, random_state=11, progress=False)
    """))
    rng = np.random.default_rng(2024)
    snapshots = []
    for _ in range(3):
        goal = len(committed(out)) + int(rng.integers(1, 6))
        process = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while len(committed(out)) < goal and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.2))  # anywhere in a chunk: reading, explaining or writing
        process.kill()  # SIGKILL
        process.wait()
        records = committed(out)
        assert 0 < len(records) < 40, "each kill must land mid-job"
        assert not snapshots or len(records) >= len(snapshots[-1][0])
        snapshots.append((records, mtimes(out, records)))

    resumed = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=out, devices=["cpu"], chunk_size=50,
                                   random_state=11, progress=False)
    assert resumed.complete and resumed.chunks_resumed == len(snapshots[-1][0])
    assert resumed.chunks_run == 40 - resumed.chunks_resumed
    final = committed(out)
    for records, files in snapshots:  # nothing finished was written twice
        assert {key: final[key] for key in records} == records
        assert mtimes(out, records) == files
    assert not list((out / "chunks").glob(".tmp-*"))
    assert same_results(jobs.load_results(out), expected)


def test_occlusion_job_interrupted_twice_equals_one_explain_of_every_image(digits, model, tmp_path):
    folder, inputs = digits

    class Interrupted(Exception):
        pass

    def stop_after(count):
        seen = []

        def callback(record):
            seen.append(record["index"])
            if len(seen) == count:
                raise Interrupted

        return callback

    out = tmp_path / "job"
    for count, devices in ((3, ["cpu", "cpu"]), (4, ["cpu"])):
        with pytest.raises(Interrupted):
            jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=out, devices=devices, chunk_size=100,
                                 progress=False, callback=stop_after(count))
    assert 7 <= len(committed(out)) < 20
    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=out, chunk_size=100, progress=False)
    assert summary.complete and summary.chunks_run + summary.chunks_resumed == 20
    results = summary.load()
    direct = ae.Occlusion(model, window=(1, 2, 2)).explain(inputs)
    assert np.array_equal(results.values, direct.values)
    assert np.array_equal(results.base_values, direct.base_values) and np.array_equal(results.target, direct.target)
    assert results.keys[0] == "00000.png" and np.array_equal(results.index, np.arange(N_IMAGES))


# -- determinism and sources ------------------------------------------------------------------
def test_chunks_depend_on_the_data_not_on_how_it_arrives(digits, tmp_path):
    _, inputs = digits
    rows = inputs[:40]
    spec = dict(out=None, chunk_size=16, random_state=5, progress=False)
    as_array = jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, RISE, **{**spec, "out": tmp_path / "a"}).load()
    pieces = [rows[:3], rows[3], rows[4], rows[5:30], rows[30:]]  # batches, and single rows without one
    streamed = jobs.explain_dataset(DEFAULT_MODEL_PATH, iter(pieces), RISE, devices=["cpu", "cpu"],
                                    **{**spec, "out": tmp_path / "b"}).load()
    assert np.array_equal(as_array.values, streamed.values) and np.array_equal(as_array.index, np.arange(40))
    other_seed = jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, RISE, **{**spec, "out": tmp_path / "c",
                                                                          "random_state": 6}).load()
    assert not np.allclose(other_seed.values, as_array.values)


def test_a_drawn_seed_is_kept_for_resuming(digits, tmp_path):
    _, inputs = digits

    def interrupt(record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, inputs[:30], RISE, out=tmp_path / "a", chunk_size=10,
                             progress=False, callback=interrupt)
    seed = json.loads((tmp_path / "a" / "manifest.json").read_text())["spec"]["random_state"]
    resumed = jobs.explain_dataset(DEFAULT_MODEL_PATH, inputs[:30], RISE, out=tmp_path / "a", chunk_size=10,
                                   progress=False)
    assert resumed.chunks_resumed == 1 and resumed.chunks_run == 2
    fresh = jobs.explain_dataset(DEFAULT_MODEL_PATH, inputs[:30], RISE, out=tmp_path / "b", chunk_size=10,
                                 random_state=seed, progress=False)
    assert same_results(resumed.load(), fresh.load())
    again = jobs.explain_dataset(DEFAULT_MODEL_PATH, inputs[:30], RISE, out=tmp_path / "b", chunk_size=10,
                                 random_state=seed, resume=False, progress=False)
    assert again.chunks_run == 3 and again.chunks_resumed == 0


def test_npy_and_npz_files_with_and_without_a_batch_axis(digits, model, tmp_path):
    _, inputs = digits
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "a.npy", inputs[:4])
    np.save(folder / "b.npy", inputs[4])  # one row, no batch axis
    np.savez(folder / "c.npz", image=inputs[5:8])
    results = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=tmp_path / "out", chunk_size=3,
                                   progress=False).load()
    direct = ae.Occlusion(model, window=(1, 2, 2)).explain(inputs[:8])
    assert np.array_equal(results.values, direct.values)
    assert results.keys.tolist() == ["a.npy[0]", "a.npy[1]", "a.npy[2]", "a.npy[3]", "b.npy", "c.npz[0]",
                                     "c.npz[1]", "c.npz[2]"]


@pytest.mark.parametrize("form", ["parquet", "csv", "dataframe"])
def test_tables_give_analytic_attributions_per_column(form, tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv
    import pyarrow.parquet as pq

    names = ["a", "b", "c", "d"]
    case = build_linear(metadata={"feature_names": json.dumps(names)})
    x = np.random.default_rng(3).normal(size=(25, 4)).astype(np.float32)
    table = pa.table({"id": np.arange(25), **{name: x[:, i] for i, name in enumerate(names)}, "label": np.ones(25)})
    if form == "parquet":
        data = tmp_path / "rows.parquet"
        pq.write_table(table, data, row_group_size=10)  # chunks of 7 cut across row groups
    elif form == "csv":
        data = tmp_path / "rows.csv"
        pyarrow.csv.write_csv(table, data)
    else:
        data = table.to_pandas()
    spec = {"method": "occlusion", "params": {"window": [1]}}
    summary = jobs.explain_dataset(case.proto, data, spec, out=tmp_path / "out", chunk_size=7, progress=False)
    results = summary.load()
    target = np.argmax(x @ case.W + case.b, axis=1)
    tolerance = dict(rtol=1e-5, atol=1e-5) if form == "csv" else dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results.values, x * case.W[:, target].T, **tolerance)  # f(x) - f(x without x_i)
    assert np.array_equal(results.target, target) and results.feature_names == tuple(names)
    assert results.table().column_names == ["index", "key", "base_value", "target", *names]
    assert sorted(path.suffix for path in (tmp_path / "out" / "chunks").iterdir()) == [".parquet"] * 4


# -- bad input -------------------------------------------------------------------------------
@pytest.fixture
def small_folder(digits, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i:05d}.png").write_bytes((digits[0] / f"{i:05d}.png").read_bytes())
    (folder / "00002b.png").write_bytes(b"\x89PNG this is not an image")
    (folder / "notes.txt").write_text("not data")
    return folder


def test_unreadable_file_is_skipped_and_recorded_or_fails(small_folder, digits, tmp_path):
    with pytest.raises(InputError, match=r"00002b\.png.*on_error='skip'"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, small_folder, OCCLUSION, out=tmp_path / "fail", progress=False)
    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, small_folder, OCCLUSION, out=tmp_path / "skip",
                                   chunk_size=2, on_error="skip", progress=False)
    assert [item["key"] for item in summary.skipped] == ["00002b.png"]
    manifest = json.loads(summary.manifest_path.read_text())
    assert manifest["ignored"] == ["notes.txt"] and manifest["chunks"]["1"]["rows"] == 1
    results = summary.load()
    assert results.keys.tolist() == ["00000.png", "00001.png", "00002.png", "00003.png", "00004.png"]
    assert results.index.tolist() == [0, 1, 2, 4, 5]  # the unreadable file keeps its slot
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    direct = ae.Occlusion(model, window=(1, 2, 2)).explain(digits[1][:5])
    assert np.array_equal(results.values, direct.values)


def test_a_folder_of_another_job_is_refused_naming_the_differences(digits, tmp_path):
    rows = digits[1][:8]
    jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, OCCLUSION, out=tmp_path, chunk_size=4, progress=False)
    with pytest.raises(JobMismatchError, match=r"chunk_size: 4 in the folder, 2 now.*explainer.method: 'occlusion'"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, RISE, out=tmp_path, chunk_size=2, progress=False)
    with pytest.raises(JobMismatchError, match=r"data\.digest") as raised:
        jobs.explain_dataset(DEFAULT_MODEL_PATH, digits[1][8:16], OCCLUSION, out=tmp_path, chunk_size=4,
                             progress=False)
    assert "chunk_size" not in str(raised.value) and isinstance(raised.value, ValueError)


def test_a_full_disk_fails_cleanly_and_keeps_finished_chunks(digits, model, tmp_path, monkeypatch):
    rows = digits[1][:60]
    real = store_module._fsync

    def full_at_chunk_three(file):
        if "chunk-000003" in file.name:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(file)

    monkeypatch.setattr(store_module, "_fsync", full_at_chunk_three)
    with pytest.raises(JobError, match=r"no space left on the device; the 3 chunk\(s\) finished before it are intact"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, OCCLUSION, out=tmp_path, chunk_size=10, devices=["cpu"],
                             progress=False)
    assert not list((tmp_path / "chunks").glob(".tmp-*")) and not list(tmp_path.glob(".tmp-*"))
    direct = ae.Occlusion(model, window=(1, 2, 2)).explain(rows)
    partial = jobs.load_results(tmp_path)
    assert not partial.complete and np.array_equal(partial.values, direct.values[:30])
    monkeypatch.setattr(store_module, "_fsync", real)
    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, OCCLUSION, out=tmp_path, chunk_size=10, progress=False)
    assert summary.chunks_resumed == 3 and np.array_equal(summary.load().values, direct.values)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"chunk_size": 0}, "chunk_size must be a positive int"),
        ({"backend": "spark"}, "backend must be one of"),
        ({"on_error": "ignore"}, "on_error must be one of"),
        ({"devices": ["tpu"]}, "devices: expected 'cpu', 'cuda' or 'cuda:N'"),
        ({"random_state": np.random.default_rng(0)}, "random_state must be a non-negative int"),
        ({"explainer_spec": {"method": "attention-rollout"}}, "unknown method 'attention-rollout'"),  # gradcam is a method now
        ({"explainer_spec": {"method": "rise", "params": {"masks": 3}}}, "params.*for 'rise'"),
        ({"explainer_spec": {"method": "rise", "seed": 3}}, "unknown keys \\['seed'\\]"),
        ({"data": "FOLDER"}, "holds no images or .npy/.npz files \\(only \\['notes.txt'\\]\\)"),
        ({"out": "FOLDER/out"}, "is inside the data folder"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match, digits, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("not data")
    kwargs = {key: value.replace("FOLDER", str(folder)) if isinstance(value, str) else value
              for key, value in kwargs.items()}
    arguments = {"data": digits[1][:4], "explainer_spec": OCCLUSION, "out": tmp_path / "out", "progress": False,
                 **kwargs}
    if "inside" in match:
        arguments["data"] = folder
    with pytest.raises(ParameterError, match=match):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, **arguments)



def test_results_become_an_explanation_that_plots_take(tmp_path):
    """A job keeps attributions only; with the data set beside them every plot takes the results."""
    from agnostic_explain.data import load_samples
    from agnostic_explain.plot import beeswarm, image_grid

    images, _ = load_samples()
    jobs.explain_dataset(DEFAULT_MODEL_PATH, images, {"method": "occlusion", "params": {"window": [1, 2, 2]}},
                         out=tmp_path / "images", chunk_size=4, progress=False, random_state=0)
    results = jobs.load_results(tmp_path / "images")
    explanation = results.explanation(images)
    direct = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images)
    np.testing.assert_allclose(explanation.values, direct.values, rtol=1e-5, atol=1e-6)
    assert explanation.method == "occlusion" and len(explanation) == 10
    image_grid(explanation, indices=range(3))
    with pytest.raises(ae.errors.ParameterError, match="rows of shape"):
        results.explanation(images[:, 0])

    rows = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    linear = build_linear()
    jobs.explain_dataset(linear.proto, rows, {"method": "occlusion", "params": {"window": [1]}, "target": 1},
                         out=tmp_path / "rows", chunk_size=5, progress=False, random_state=0)
    beeswarm(jobs.load_results(tmp_path / "rows").explanation(rows))


def test_the_progress_bar_moves_within_a_chunk(tmp_path, monkeypatch):
    """One chunk of ten rows: the bar hears about them batch by batch, and ends at ten."""
    from agnostic_explain.data import load_samples
    from agnostic_explain.jobs import dataset as dataset_module

    updates = []

    class Recorder:
        def update(self, rows):
            updates.append(rows)

        def close(self):
            pass

    monkeypatch.setattr(dataset_module, "_progress_bar", lambda progress, total, done: Recorder())
    images, _ = load_samples()
    jobs.explain_dataset(DEFAULT_MODEL_PATH, images, {"method": "rise", "params": {"n_masks": 64}}, out=tmp_path,
                         chunk_size=10, batch_size=32, random_state=0)
    assert len(updates) > 2 and sum(updates) == 10 and all(rows >= 0 for rows in updates)


def test_a_callable_progress_hears_every_batch():
    calls = []
    ae.FeatureAblation(ae.load(DEFAULT_MODEL_PATH, batch_size=16)).explain(
        np.zeros((2, 1, 8, 8), np.float32), target=0, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1] == 128 and [done for done, _ in calls] == sorted(done for done, _ in calls)
