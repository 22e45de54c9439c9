"""Issue 18, data-set jobs: verified chunk files, one job per folder, and unreadable arrays under ``fail``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

from agnostic_explain import jobs
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import InputError, JobError
from agnostic_explain.jobs.integrity import LOCK, FolderLock

OCCLUSION = {"method": "occlusion", "params": {"window": [1, 4, 4]}}
CHUNK = 5


@pytest.fixture(scope="module")
def rows():
    images, _ = load_samples()
    return np.concatenate([images, images[:, :, ::-1]])  # 20 rows: 4 chunks of 5


def run(rows, out, **kwargs):
    return jobs.explain_dataset(DEFAULT_MODEL_PATH, rows, OCCLUSION, out=out, chunk_size=CHUNK, devices=["cpu"],
                                random_state=0, progress=False, **kwargs)


@pytest.fixture(scope="module")
def reference(rows, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    run(rows, out)
    return out, jobs.load_results(out)


def same(a, b) -> bool:
    return all(np.array_equal(getattr(a, name), getattr(b, name))
               for name in ("values", "base_values", "target", "index", "keys"))


def flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # inside the array data: the file still loads, with one wrong value
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def swap(first, second):
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)


DAMAGES = {
    "flipped byte": (lambda chunks: flip_byte(chunks / "chunk-000001.values.npy"), [1]),
    "truncated values": (lambda chunks: truncate(chunks / "chunk-000002.values.npy"), [2]),
    "truncated rows": (lambda chunks: truncate(chunks / "chunk-000003.rows.npz"), [3]),
    "swapped chunks": (lambda chunks: swap(chunks / "chunk-000000.values.npy", chunks / "chunk-000002.values.npy"),
                       [0, 2]),
    "swapped rows files": (lambda chunks: swap(chunks / "chunk-000001.rows.npz", chunks / "chunk-000003.rows.npz"),
                           [1, 3]),
    "deleted chunk": (lambda chunks: (chunks / "chunk-000003.values.npy").unlink(), [3]),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_chunk_is_refused_by_load_results_then_recomputed(damage, rows, reference, tmp_path):
    source, expected = reference
    out = tmp_path / "job"
    shutil.copytree(source, out)
    harm, damaged = DAMAGES[damage]
    harm(out / "chunks")

    with pytest.raises(JobError, match=rf"chunk {damaged[0]}: chunks/chunk-00000{damaged[0]}\.") as raised:
        jobs.load_results(out)
    assert "run the same job again" in str(raised.value)
    found = jobs.verify_results(out, raise_errors=False)
    assert sorted(found.damaged) == damaged and not found.ok
    with pytest.raises(JobError, match=f"chunk {damaged[0]}"):
        jobs.verify_results(out)

    with pytest.warns(UserWarning, match=r"damaged or missing.*explained again"):
        summary = run(rows, out)
    assert summary.chunks_run == len(damaged) and summary.chunks_resumed == 4 - len(damaged) and summary.complete
    assert same(jobs.load_results(out), expected)
    assert jobs.verify_results(out).ok


def test_the_manifest_records_sha256_size_and_shape_of_every_file(reference):
    out, _ = reference
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["chunks"]["0"]
    assert sorted(record["checks"]) == sorted(record["files"])
    values = record["checks"]["chunks/chunk-000000.values.npy"]
    assert values["shape"] == [CHUNK, 1, 8, 8] and len(values["sha256"]) == 64
    assert values["bytes"] == (out / "chunks/chunk-000000.values.npy").stat().st_size
    assert record["checks"]["chunks/chunk-000000.rows.npz"]["shape"] == [CHUNK]
    verification = jobs.verify_results(out)
    assert verification.ok and verification.n_chunks == 4 and verification.n_files == 8 and verification.complete


def test_a_chunk_listed_without_checksums_is_still_checked_for_rows(rows, reference, tmp_path):
    """A manifest written before checksums existed: a swap of chunks of different sizes is still caught."""
    source, _ = reference
    out = tmp_path / "old"
    shutil.copytree(source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for record in manifest["chunks"].values():
        record.pop("checks")
    manifest["chunks"]["3"]["rows"] = 3  # as if the last chunk were shorter
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(JobError, match=r"chunk 3: chunks/chunk-000003\.values\.npy: holds \[5, 5, 5, 5\] rows"):
        jobs.load_results(out)
    assert jobs.verify_results(out).unchecked == [0, 1, 2, 3]


# -- one job per folder -----------------------------------------------------------------------
def test_a_second_job_on_the_same_folder_is_told_who_holds_it(rows, tmp_path):
    out = tmp_path / "busy"
    raised = []

    def second_job(record):
        if not raised:
            try:
                run(rows, out)
            except JobError as error:
                raised.append(error)

    summary = run(rows, out, callback=second_job)
    assert summary.complete and len(raised) == 1
    assert f"held by pid {os.getpid()} on host {socket.gethostname()!r}" in str(raised[0])
    assert not (out / LOCK).exists()  # released at the end


def test_a_stale_lock_of_a_dead_process_is_taken_over(rows, tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "earlier"}))
    assert run(rows, out).complete
    assert not (out / LOCK).exists()


def test_a_lock_of_another_host_is_respected(rows, tmp_path):
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 1, "host": "another-machine", "started": "2026-01-01T00:00:00"}))
    with pytest.raises(JobError, match=r"held by pid 1 on host 'another-machine'.*delete the lock file"):
        run(rows, out)
    assert not (out / "manifest.json").exists()


def test_the_lock_is_released_when_the_job_fails(rows, tmp_path):
    out = tmp_path / "failing"

    def explode(record):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        run(rows, out, callback=explode)
    assert not (out / LOCK).exists()
    with FolderLock(out), pytest.raises(JobError, match="in use by another job"):
        FolderLock(out).acquire()
    assert not (out / LOCK).exists()


# -- unreadable arrays under on_error="fail" --------------------------------------------------
@pytest.mark.parametrize("content", [b"not a numpy file at all", b"\x93NUMPY\x01\x00garbage"])
def test_an_unreadable_npy_fails_under_fail_and_is_skipped_under_skip(content, rows, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    np.save(folder / "a.npy", rows[:3])
    (folder / "b.npy").write_bytes(content)
    with pytest.raises(InputError, match=r"cannot read 'b\.npy'.*on_error='skip'"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=tmp_path / "fail", devices=["cpu"],
                             progress=False)
    summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=tmp_path / "skip", devices=["cpu"],
                                   on_error="skip", progress=False)
    assert summary.n_rows == 3 and [item["key"] for item in summary.skipped] == ["b.npy"]


def test_a_folder_of_only_unreadable_npz_fails_rather_than_explaining_nothing(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.npz").write_bytes(b"PK\x03\x04 broken zip")
    (folder / "b.npy").write_bytes(b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"cannot read 'a\.npz'"):
            jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, OCCLUSION, out=tmp_path / "out", devices=["cpu"],
                                 progress=False)


@pytest.mark.parametrize("change", [
    lambda manifest: manifest.pop("chunks"),
    lambda manifest: manifest.clear() or [1, 2],
    lambda manifest: manifest.update(chunks=[1, 2]),
    lambda manifest: manifest["chunks"].update({"x": {}}),
    lambda manifest: manifest["chunks"]["0"].update(files="chunks/chunk-000000.values.npy"),
])
def test_a_malformed_manifest_is_a_job_error(change, reference, tmp_path):
    source, _ = reference
    out = tmp_path / "malformed"
    shutil.copytree(source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    changed = change(manifest)
    (out / "manifest.json").write_text(json.dumps(changed if isinstance(changed, list) else manifest))
    with pytest.raises(JobError, match="is not a job manifest"):
        jobs.load_results(out)
    with pytest.raises(JobError, match="is not a job manifest"):
        jobs.verify_results(out)
