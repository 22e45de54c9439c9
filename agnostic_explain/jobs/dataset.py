"""``explain_dataset``: explain every row of a data set into a resumable chunked store."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParameterError
from ..runtime.cores import available_cores
from .chunks import plan_chunks
from .integrity import FolderLock
from .sources import ReadSettings, open_source
from .spec import build_explainer, jsonable, normalize_spec, seed_entropy
from .store import MANIFEST, Store, load_results
from .worker import ChunkWorker, parse_device

__all__ = ["JobSummary", "explain_dataset"]

BACKENDS = ("local", "ray")
ON_ERROR = ("fail", "skip")


@dataclass
class JobSummary:
    """What one call of :func:`explain_dataset` did.

    Attributes
    ----------
    out, manifest_path : Path
    n_rows : int
        Rows with committed results, this call and earlier ones.
    n_chunks : int
    chunks_run, chunks_resumed : int
        Chunks explained by this call, and chunks found finished and skipped.
    skipped : list of dict
        Inputs left out (``{"key", "error"}``), with ``on_error="skip"``.
    seconds : float
    complete : bool
    """

    out: Path
    manifest_path: Path
    n_rows: int
    n_chunks: int
    chunks_run: int
    chunks_resumed: int
    skipped: list = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False

    def load(self):
        """The results, read back: :func:`agnostic_explain.jobs.load_results`."""
        return load_results(self.out)


def explain_dataset(
    model, data, explainer_spec, *, out, devices=None, backend="local", resume=True, chunk_size=256,
    random_state=None, on_error="fail", progress=None, callback=None, threads=None, batch_size="auto",
    columns=None, preprocessing=None,
) -> JobSummary:
    """Explain every row of ``data`` into chunk files under ``out``; a rerun resumes.

    The rows are cut into chunks of ``chunk_size`` in data order (the cut depends on nothing
    else). Each chunk is explained in one call with its own seed, drawn from ``random_state``
    and the chunk's index, so that a resumed, re-sharded or differently parallel job gives the
    same numbers. Each finished chunk is committed atomically to the manifest.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or Model
        Each worker loads its own session from a path or bytes.
    data : str, os.PathLike, ndarray, table or iterable of ndarray
        A folder of images and/or ``.npy``/``.npz`` files (sorted by path; images are preprocessed
        from the model's ``preprocessing`` metadata, pixels scaled by 1/255), one such file, a
        Parquet or CSV file or folder of them, a pandas DataFrame or pyarrow Table, an array
        of shape (n_rows, ...), or an iterable of such arrays (or of single rows).
    explainer_spec : str or dict
        ``{"method": "occlusion", "params": {"window": [1, 2, 2]}, "target": "predicted",
        "output_transform": None}``; see :func:`agnostic_explain.jobs.spec.normalize_spec`.
    out : str or os.PathLike
        The output folder (created).
    devices : list of str, optional
        One worker per entry: ``"cpu"`` (``["cpu", "cpu"]`` for two CPU workers sharing the cores),
        ``"cuda:0"``, ``"cuda:1"``... By default every CUDA device, else one CPU worker. The Ray
        backend counts actors: by default one per GPU of the cluster, else one per CPU.
    backend : "local" or "ray"
    resume : bool, default True
        Skip the chunks ``out`` already holds; False deletes them and starts afresh.
    chunk_size : int, default 256
    random_state : int, optional
        The job's seed; None draws one and keeps it in the manifest for resuming.
    on_error : "fail" or "skip"
        An unreadable input (or one with NaN) stops the job, or is skipped and recorded.
    progress : bool, optional
        A progress bar with rows per second and the time left; None shows it in a terminal.
    callback : callable, optional
        ``callback(record)`` after each chunk is committed, with the manifest's record of it.
    threads : int, optional
        ONNX Runtime threads per CPU worker; by default the cores split between the CPU workers
        (local), or 1 per actor (Ray).
    batch_size : int or "auto"
        Rows per model call.
    columns : list of str, optional
        The feature columns of a table; by default the model's feature names, else all columns.
    preprocessing : dict, optional
        Image reading settings overriding the model's: ``layout``, ``scale``, ``mean``, ``std``, ``resize``.

    Returns
    -------
    JobSummary
        ``.load()`` reads the results back (:func:`load_results`).

    Raises
    ------
    JobMismatchError
        ``out`` holds another job; the message names the differing fields.
    JobError
        A chunk or the manifest could not be written (a full disk): finished chunks stay intact.
    InputError
        An unreadable input with ``on_error="fail"``.

    Examples
    --------
    >>> import tempfile
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> spec = {"method": "occlusion", "params": {"window": [1, 2, 2]}}
    >>> with tempfile.TemporaryDirectory() as out:
    ...     summary = explain_dataset(DEFAULT_MODEL_PATH, images, spec, out=out, chunk_size=4, progress=False)
    ...     results = summary.load()
    >>> summary.n_chunks, results.values.shape
    (3, (10, 1, 8, 8))
    """
    began = time.perf_counter()
    _check_choice("backend", backend, BACKENDS)
    _check_choice("on_error", on_error, ON_ERROR)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ParameterError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if isinstance(out, str) and not out.strip():
        raise ParameterError("out: expected a folder name, got an empty string (that would be the working directory)")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ParameterError(f"threads must be a positive int or None, got {threads!r}")
    if callback is not None and not callable(callback):
        raise ParameterError(f"callback must be callable, got {callback!r}")
    if isinstance(devices, str):
        devices = [item.strip() for item in devices.split(",") if item.strip()]
    devices = _local_devices(devices) if backend == "local" else _ray_devices(devices)
    if isinstance(data, (str, os.PathLike)) and Path(data).is_dir() and Path(out).resolve().is_relative_to(
            Path(data).resolve()):
        raise ParameterError(f"out: {str(out)!r} is inside the data folder {str(data)!r}; its files would become data")
    spec = normalize_spec(explainer_spec)
    source_model, probe, model_id = _model(model)
    if backend == "ray" and not isinstance(source_model, (str, bytes)):
        raise ParameterError("model: the Ray backend needs a path or serialized bytes, not a loaded callable")
    build_explainer(probe, spec)  # a bad parameter fails now, not in every worker
    settings = _settings(probe, spec, preprocessing, columns)
    source, settings = open_source(data, settings, feature_names=probe.feature_names)
    with FolderLock(out):
        return _run(source, settings, spec, source_model, probe, model_id, out=out, devices=devices, backend=backend,
                    resume=resume, chunk_size=chunk_size, random_state=random_state, on_error=on_error,
                    progress=progress, callback=callback, threads=threads, batch_size=batch_size, began=began)


def _run(source, settings, spec, source_model, probe, model_id, *, out, devices, backend, resume, chunk_size,
         random_state, on_error, progress, callback, threads, batch_size, began) -> JobSummary:
    """The job itself, while this process holds the folder's lock."""
    previous = Store.existing_spec(out) if resume else None
    if random_state is None and previous is not None:
        random_state = previous.get("random_state")
    entropy = seed_entropy(random_state)
    job_spec = {
        "model": model_id, "data": source.description, "explainer": jsonable(spec), "chunk_size": chunk_size,
        "random_state": entropy, "read": jsonable(_read_fields(settings)),
    }
    names = source.feature_names or probe.feature_names
    output = {"tabular": source.tabular, "feature_names": list(names) if source.tabular and names else None}
    store = Store.open(out, job_spec, resume=resume, output=output)
    finished = store.finished
    counted = {"chunks": 0, "run": 0}
    bar = _progress_bar(progress, source.n_rows, sum(r["stop"] - r["start"] for r in store.manifest["chunks"].values()))

    def pending():
        for task in plan_chunks(source.pieces, chunk_size):
            counted["chunks"] += 1
            if task.index not in finished:
                yield task

    moved = {}  # rows of running chunks the bar has already shown
    lock = threading.Lock()

    def on_rows(index, rows):
        with lock:
            moved[index] = moved.get(index, 0) + rows
            bar.update(rows)

    def commit(record):
        if store.commit(record):
            counted["run"] += 1
            with lock:
                bar.update(record["stop"] - record["start"] - moved.pop(record["index"], 0))
            if callback is not None:
                callback(record)

    arguments = dict(model=source_model, spec=spec, settings=settings, out=str(out), entropy=entropy,
                     on_error=on_error, output=output, batch_size=batch_size)
    try:
        if backend == "local":
            from .local import run_local

            cpu_workers = sum(parse_device(device)[0] == "cpu" for device in devices)
            per_worker = threads or max(1, _cpu_count() // max(1, cpu_workers))
            workers = [ChunkWorker(device=device, threads=per_worker, worker=number, **arguments)
                       for number, device in enumerate(devices)]
            run_local(pending(), workers, commit, on_rows)
        else:
            from .ray_backend import run_ray

            run_ray(pending(), arguments, commit, devices=devices, threads=threads)
    finally:
        bar.close()
    store.finish(counted["chunks"], source.ignored)
    records = store.manifest["chunks"].values()
    return JobSummary(
        out=Path(out), manifest_path=Path(out) / MANIFEST, n_rows=sum(record["rows"] for record in records),
        n_chunks=counted["chunks"], chunks_run=counted["run"], chunks_resumed=len(finished),
        skipped=list(store.manifest["skipped"]), seconds=time.perf_counter() - began,
        complete=store.manifest["complete"],
    )


def _check_choice(name, value, choices) -> None:
    if value not in choices:
        raise ParameterError(f"{name} must be one of {choices}, got {value!r}")


def _cpu_count() -> int:
    return available_cores()


def _model(model):
    """What workers load, a CPU model to read the specs from, and what identifies the model."""
    import onnx

    from ..runtime import Model, load

    if isinstance(model, (str, os.PathLike)):
        path = Path(model).resolve()
        probe = load(path, providers="cpu", threads=1)
        return str(path), probe, {"sha256": _sha256(path.read_bytes())}
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        return bytes(model), load(bytes(model), providers="cpu", threads=1), {"sha256": _sha256(bytes(model))}
    if isinstance(model, Model) and model.proto is not None:
        return _model(model.path if model.path is not None else model.proto)
    if isinstance(model, Model) or callable(model):
        loaded = load(model)
        return loaded, loaded, {"callable": getattr(model, "__name__", type(model).__name__)}
    raise ParameterError(f"model must be a path, bytes, an onnx.ModelProto or a Model, got {type(model).__name__}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _settings(probe, spec: dict, preprocessing, columns) -> ReadSettings:
    from ..io import infer_layout

    input_spec = probe.input_spec(spec["input"])
    given = dict(preprocessing or {})
    unknown = sorted(set(given) - {"layout", "scale", "mean", "std", "resize"})
    if unknown:
        raise ParameterError(f"preprocessing: unknown keys {unknown}; expected layout, scale, mean, std, resize")
    defaults = dict(probe.preprocessing or {})
    row = input_spec.row_shape()
    layout = given.get("layout") or defaults.get("layout") or (infer_layout(row) if row is not None else None)

    def sequence(value):
        return None if value is None else tuple(float(item) for item in (value if hasattr(value, "__len__") else [value]))

    return ReadSettings(
        spec=input_spec,
        layout=layout if layout in ("nchw", "nhwc") else None,
        # the metadata's scale is for the training data's raw range; image files are 8-bit
        scale=float(given["scale"]) if given.get("scale") is not None else None,
        mean=sequence(given.get("mean", defaults.get("mean"))),
        std=sequence(given.get("std", defaults.get("std"))),
        resize=tuple(int(size) for size in given["resize"]) if given.get("resize") else None,
        columns=tuple(columns) if columns is not None else None,
    )


def _read_fields(settings: ReadSettings) -> dict:
    return {
        "input": settings.spec.name, "layout": settings.layout, "scale": settings.scale, "mean": settings.mean,
        "std": settings.std, "resize": settings.resize, "columns": settings.columns,
    }


def _local_devices(devices) -> list[str]:
    if devices is None:
        from ..runtime.providers import cuda_device_count

        import onnxruntime

        count = cuda_device_count() if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else 0
        return [f"cuda:{index}" for index in range(count)] or ["cpu"]
    devices = list(devices)
    if not devices:
        raise ParameterError("devices: expected at least one device, such as ['cpu'] or ['cuda:0', 'cuda:1']")
    for device in devices:
        parse_device(device)
    return devices


def _ray_devices(devices) -> list[str] | None:
    if devices is None:
        return None  # decided from the cluster's resources
    devices = list(devices)
    kinds = {parse_device(device)[0] for device in devices}
    if len(kinds) != 1:  # none, or both kinds
        raise ParameterError(f"devices: the Ray backend takes only 'cpu' or only 'cuda' actors, got {devices}")
    return devices


def _progress_bar(progress, total, done):
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    return tqdm(total=total, initial=done, unit="row", desc="explain", disable=disable, smoothing=0.1)
