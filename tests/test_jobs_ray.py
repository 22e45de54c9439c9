"""The Ray backend on a local two-CPU cluster: the same results as the local backend, even when
an actor is killed mid-job."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from agnostic_explain import jobs
from agnostic_explain.data import DEFAULT_MODEL_PATH
from agnostic_explain.errors import InputError

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")  # Ray Data's own settings

RISE = {"method": "rise", "params": {"n_masks": 100, "cells": 4}}
ARGUMENTS = dict(chunk_size=40, random_state=3, progress=False)


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """400 digit PNGs (the actors read the files themselves), and the local backend's results."""
    from PIL import Image
    from sklearn.datasets import load_digits

    folder = tmp_path_factory.mktemp("digits")
    for i, image in enumerate(load_digits().images[:400]):
        Image.fromarray(np.clip(np.round(image * 16), 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    local = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path_factory.mktemp("local"),
                                 devices=["cpu"], **ARGUMENTS)
    return folder, local.load()


def assert_same(a, b):
    for name in ("values", "base_values", "target", "index", "keys"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


def test_ray_gives_the_local_results(cluster, images, tmp_path):
    folder, local = images
    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path, backend="ray",
                                   devices=["cpu", "cpu"], **ARGUMENTS)
    assert summary.complete and summary.chunks_run == 10 and summary.n_rows == 400
    assert len({record["pid"] for record in summary.load().manifest["chunks"].values()}) == 2  # both actors worked
    assert_same(summary.load(), local)
    again = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path, backend="ray", **ARGUMENTS)
    assert again.chunks_run == 0 and again.chunks_resumed == 10  # resuming starts no actor


def test_a_killed_actor_loses_and_duplicates_nothing(cluster, images, tmp_path):
    folder, local = images
    killed = []

    def kill_the_first_worker(record):
        if not killed:  # it is explaining its next chunk by now
            killed.append(record["pid"])
            os.kill(record["pid"], signal.SIGKILL)

    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path, backend="ray",
                                   devices=["cpu", "cpu"], callback=kill_the_first_worker, **ARGUMENTS)
    records = summary.load().manifest["chunks"]
    assert killed and summary.complete and sorted(map(int, records)) == list(range(10))
    assert len({record["pid"] for record in records.values()}) == 3  # the killed actor was replaced
    results = summary.load()
    assert np.array_equal(results.index, np.arange(400))
    assert_same(results, local)


def test_an_actor_error_keeps_its_type_and_message(cluster, images, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("0000.png", "0001.png"):
        (folder / name).write_bytes((images[0] / name).read_bytes())
    (folder / "0000b.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"cannot read '0000b\.png'.*on_error='skip'"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, RISE, out=tmp_path / "out", backend="ray", devices=["cpu"],
                             **ARGUMENTS)
