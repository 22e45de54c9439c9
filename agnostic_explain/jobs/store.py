"""The output folder of a data-set job: chunk files, the manifest, and reading results back.

Layout::

    OUT/manifest.json                   the job spec, its fingerprint, one record per finished chunk
    OUT/chunks/chunk-000000.values.npy  image maps (and any rows of rank > 1): attributions
    OUT/chunks/chunk-000000.rows.npz    their slot index, key, base value and target
    OUT/chunks/chunk-000000.parquet     tabular rows: index, key, base_value, target, one column per feature

Every file is written under a temporary name in its own folder, flushed to disk and renamed
over its final name, so a reader never sees half a file. A chunk counts as finished only
once its record is in the manifest, which is itself rewritten the same way; a crash between
the two leaves files that the rerun overwrites with the same bytes.
"""

from __future__ import annotations

import errno
import io
import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import JobError, ParameterError, require
from .integrity import check_records, damage_message, damaged_chunks, describe
from .reading import ChunkDamaged, read_chunk_files
from .spec import check_same_job, fingerprint

__all__ = ["JobResults", "Store", "load_results", "write_chunk"]

FORMAT = "agnostic-explain/job/1"
MANIFEST = "manifest.json"
CHUNKS = "chunks"


def _fsync(file) -> None:
    file.flush()
    os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make renames inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _write_atomically(path: Path, write) -> None:
    """``write(file)`` to a temporary name next to ``path``, flush it to disk, rename it over ``path``."""
    temporary = path.with_name(f".tmp-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        with open(temporary, "wb") as file:
            write(file)
            _fsync(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_failed(error: OSError, path: Path, out: Path) -> JobError:
    finished = len(read_manifest(out / MANIFEST).get("chunks", {})) if (out / MANIFEST).is_file() else 0
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    cause = "no space left on the device" if full else (error.strerror or str(error))
    return JobError(
        f"out: cannot write {str(path)!r}: {cause}; the {finished} chunk(s) finished before it are intact "
        f"in {str(out)!r}; {'free some space, then ' if full else ''}run the same job again to resume"
    )


def write_chunk(out, index: int, explanation, slots, keys, *, tabular: bool, feature_names=None) -> dict:
    """Write one chunk's results. Raises JobError.

    Returns
    -------
    dict
        For each file written (its name relative to ``out``), what the manifest keeps to verify
        it: ``{"sha256", "bytes", "shape"}`` (see :mod:`.integrity`).
    """
    out = Path(out)
    folder = out / CHUNKS
    stem = f"chunk-{index:06d}"
    values = np.asarray(explanation.values)
    target = explanation.target
    written = {}

    def put(path: Path, data: bytes, shape) -> None:
        _write_atomically(path, lambda file: file.write(data))
        written[path.relative_to(out).as_posix()] = describe(data, shape)

    path = folder / stem
    try:
        if tabular:
            pa = require("pyarrow", "agnostic-explain[data]")
            import pyarrow.parquet as pq

            names = list(feature_names or [f"x{i}" for i in range(values.shape[1])])
            columns = {"index": pa.array(slots, pa.int64()), "key": pa.array(list(keys), pa.string()),
                       "base_value": pa.array(explanation.base_values)}
            if target is not None:
                columns["target"] = pa.array(target.tolist())
            columns.update({name: pa.array(values[:, i]) for i, name in enumerate(names)})
            buffer = io.BytesIO()
            pq.write_table(pa.table(columns), buffer)
            path = folder / f"{stem}.parquet"
            put(path, buffer.getvalue(), values.shape)
        else:
            buffer = io.BytesIO()
            np.save(buffer, values, allow_pickle=False)
            path = folder / f"{stem}.values.npy"
            put(path, buffer.getvalue(), values.shape)
            rows = {"index": np.asarray(slots, np.int64), "key": np.asarray(keys, dtype=str),
                    "base_values": np.asarray(explanation.base_values)}
            if target is not None:
                rows["target"] = np.asarray(target)
            buffer = io.BytesIO()
            np.savez(buffer, **rows)
            path = folder / f"{stem}.rows.npz"
            put(path, buffer.getvalue(), rows["index"].shape)
        _fsync_folder(folder)
    except OSError as error:
        raise _write_failed(error, path, out) from error
    return written


def read_manifest(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise JobError(f"out: cannot read the manifest {str(path)!r} ({error})") from error
    if not isinstance(found, dict):
        raise JobError(f"out: {str(path)!r} is not a job manifest: it holds a JSON {type(found).__name__}")
    return found


class Store:
    """The manifest of one output folder; only the process that drives the job writes it."""

    def __init__(self, out, manifest: dict):
        self.out = Path(out)
        self.manifest = manifest

    @staticmethod
    def existing_spec(out) -> dict | None:
        """The job spec recorded in ``out``, or None when it holds no manifest."""
        path = Path(out) / MANIFEST
        return read_manifest(path).get("spec") if path.is_file() else None

    @classmethod
    def open(cls, out, job_spec: dict, *, resume: bool, output: dict) -> "Store":
        """Open ``out`` for ``job_spec``: resume its manifest, refuse another job's, or start afresh."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise ParameterError(f"out: {str(out)!r} is a file; expected a folder (it is created)")
        (out / CHUNKS).mkdir(parents=True, exist_ok=True)
        path = out / MANIFEST
        if path.is_file():
            manifest = read_manifest(path)
            if manifest.get("format") != FORMAT:
                raise JobError(f"out: {str(path)!r} is not a job manifest (format {manifest.get('format')!r})")
            if resume:
                check_records(manifest, path)
                check_same_job(out, manifest["spec"], job_spec)
                store = cls(out, manifest)
                store.manifest["output"] = output
                store._clear_temporaries()
                store._drop_damaged()
                return store
            for record in manifest.get("chunks", {}).values():
                for name in record.get("files", []):
                    (out / name).unlink(missing_ok=True)
        now = _now()
        manifest = {
            "format": FORMAT, "fingerprint": fingerprint(job_spec), "spec": job_spec, "output": output,
            "created": now, "updated": now, "complete": False, "n_chunks": None, "chunks": {}, "skipped": [],
        }
        store = cls(out, manifest)
        store._clear_temporaries()
        store.save()
        return store

    def _clear_temporaries(self) -> None:
        for folder in (self.out, self.out / CHUNKS):
            for item in folder.glob(".tmp-*"):
                item.unlink(missing_ok=True)

    def _drop_damaged(self) -> None:
        """Forget committed chunks whose files are missing or differ from what was written: they run again."""
        damaged = damaged_chunks(self.out, self.manifest)
        if not damaged:
            return
        warnings.warn(damage_message(self.out, damaged, "they are explained again"), stacklevel=3)
        for index in damaged:
            record = self.manifest["chunks"].pop(str(index))
            for item in record.get("skipped", []):
                if item in self.manifest["skipped"]:
                    self.manifest["skipped"].remove(item)
            for name in record.get("files", []):
                (self.out / name).unlink(missing_ok=True)
        self.manifest["complete"] = False
        self.save()

    @property
    def finished(self) -> set[int]:
        return {int(index) for index in self.manifest["chunks"]}

    def commit(self, record: dict) -> bool:
        """Record a finished chunk; False (nothing written) when it was already committed."""
        key = str(record["index"])
        if key in self.manifest["chunks"]:
            return False
        self.manifest["chunks"][key] = record
        self.manifest["skipped"] += record.get("skipped", [])
        self.save()
        return True

    def finish(self, n_chunks: int, ignored: list) -> None:
        self.manifest.update(n_chunks=n_chunks, ignored=ignored, complete=len(self.finished) == n_chunks)
        self.save()

    def save(self) -> None:
        self.manifest["updated"] = _now()
        self.manifest["chunks"] = dict(sorted(self.manifest["chunks"].items(), key=lambda item: int(item[0])))
        text = json.dumps(self.manifest, indent=1).encode()
        path = self.out / MANIFEST
        try:
            _write_atomically(path, lambda file: file.write(text))
            _fsync_folder(self.out)
        except OSError as error:
            raise _write_failed(error, path, self.out) from error


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class JobResults:
    """A job's committed results, in data order.

    Attributes
    ----------
    values : ndarray of shape (n_rows, ...)
        Attributions, shaped like the model input's rows.
    base_values : ndarray of shape (n_rows,)
    target : ndarray of shape (n_rows,) or None
    index : ndarray of shape (n_rows,), int64
        Each row's position (slot) in the data set; skipped inputs leave gaps.
    keys : ndarray of shape (n_rows,), str
        Each row's origin: a file's path in the data folder, ``name.npy[i]`` or ``row[i]``.
    feature_names : tuple of str or None
        The attribution columns of tabular results.
    manifest : dict
    """

    values: np.ndarray
    base_values: np.ndarray
    target: np.ndarray | None
    index: np.ndarray
    keys: np.ndarray
    feature_names: tuple | None = None
    manifest: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    def explanation(self, data):
        """The results as an :class:`~agnostic_explain.Explanation`, which every plot takes.

        Parameters
        ----------
        data : array_like
            The explained rows, batch first: the whole data set in its order (the rows at
            ``index`` are taken), or exactly the ``len(self)`` rows explained. Plots need the
            inputs beside their attributions, and a job keeps only the attributions.

        Returns
        -------
        Explanation
        """
        from ..explanation import Explanation

        rows = np.asarray(data)
        if rows.ndim == 0 or rows.shape[1:] != self.values.shape[1:]:
            raise ParameterError(
                f"data: expected rows of shape {self.values.shape[1:]} like the attributions, got an array of shape "
                f"{rows.shape}"
            )
        if len(rows) != len(self):
            if len(self) and int(self.index.max()) >= len(rows):
                raise ParameterError(
                    f"data: {len(rows)} rows, but the results hold {len(self)} rows up to slot {int(self.index.max())}; "
                    "pass the whole data set, or the explained rows only"
                )
            rows = rows[self.index]
        explainer = self.manifest.get("spec", {}).get("explainer", {})
        return Explanation(
            values=self.values, base_values=self.base_values, data=rows, target=self.target,
            method=str(explainer.get("method", "job")), params=dict(explainer.get("params") or {}),
            feature_names=self.feature_names, extras={"keys": self.keys, "index": self.index},
        )

    def table(self):
        """The tabular results as one pyarrow Table: index, key, base_value, target and one column per feature."""
        pa = require("pyarrow", "agnostic-explain[data]")
        if self.values.ndim != 2:
            raise ParameterError(f"table(): rows of shape {self.values.shape[1:]} are not tabular; use .values")
        names = list(self.feature_names or [f"x{i}" for i in range(self.values.shape[1])])
        columns = {"index": self.index, "key": self.keys.astype(object), "base_value": self.base_values}
        if self.target is not None:
            columns["target"] = self.target
        columns.update({name: self.values[:, i] for i, name in enumerate(names)})
        return pa.table(columns)


def load_results(out) -> JobResults:
    """Read the committed chunks of the job in ``out`` back as one set of arrays, in data order.

    Parameters
    ----------
    out : str or os.PathLike
        A job's output folder.

    Returns
    -------
    JobResults
        ``.complete`` says whether every chunk had finished; tabular jobs also give ``.table()``.

    Raises
    ------
    JobError
        A chunk file is missing, or differs from what was written (damaged, truncated or
        swapped with another); the message names the chunk. Running the job again recomputes it.
    """
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise FileNotFoundError(2, "out: no job manifest (manifest.json) in", str(out))
    manifest = read_manifest(out / MANIFEST)
    output = manifest.get("output", {})
    records = check_records(manifest, out / MANIFEST)
    parts = {"values": [], "base_values": [], "target": [], "index": [], "keys": []}
    for key, record in records.items():
        files = [out / name for name in record.get("files", [])]
        if not files:
            continue
        try:
            read_chunk_files(out, record, output, parts)
        except ChunkDamaged as error:
            raise JobError(damage_message(out, {int(key): [str(error)]})) from error.__cause__
    feature_names = tuple(output["feature_names"]) if output.get("feature_names") else None
    if not parts["index"]:
        shape = (0, len(feature_names)) if feature_names else (0,)
        empty = np.zeros(0)
        return JobResults(np.zeros(shape, np.float32), empty, None, empty.astype(np.int64), empty.astype(str),
                          feature_names, manifest)
    targets = parts["target"]
    shapes = sorted({array.shape[1:] for array in parts["values"]})
    if len(shapes) > 1:
        raise JobError(f"out: the chunks of {str(out)!r} hold rows of different shapes {shapes}; some chunk files "
                       "belong to another job")
    return JobResults(
        values=np.concatenate(parts["values"]),
        base_values=np.concatenate(parts["base_values"]),
        target=None if any(t is None for t in targets) else np.concatenate(targets),
        index=np.concatenate(parts["index"]),
        keys=np.concatenate(parts["keys"]).astype(str),
        feature_names=feature_names,
        manifest=manifest,
    )
