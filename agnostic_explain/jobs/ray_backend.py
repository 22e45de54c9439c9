"""The Ray backend: Ray Data ``map_batches`` over the chunks, with a pool of explaining actors.

Each actor holds one :class:`ChunkWorker` (one ONNX Runtime session): one per GPU
(``num_gpus=1``; Ray sets ``CUDA_VISIBLE_DEVICES``, so the worker uses device 0), or a pool of
CPU actors. One Ray Data row is one chunk task; the actor reads the chunk's inputs (files on a
path every node reaches, or the rows themselves for in-memory data), writes the chunk's files
to the shared output folder and returns the chunk's record, which the driver commits to the
manifest. Ray Data restarts an actor that dies and retries its chunk (its actors default to
``max_restarts=-1`` and ``max_task_retries=-1``), and a chunk commits once, so a lost worker
costs time, not results.
"""

from __future__ import annotations

import json
import pickle

import numpy as np

from .. import errors
from ..errors import AgnosticExplainError, require
from .worker import ChunkWorker, parse_device

__all__ = ["run_ray"]


class _ChunkActor:
    """The Ray Data actor: one ChunkWorker; a batch is a few pickled chunk tasks."""

    def __init__(self, worker_arguments: dict):
        self.worker = ChunkWorker(**worker_arguments)

    def __call__(self, batch: dict) -> dict:
        records = []
        for blob in batch["task"]:
            try:
                record = self.worker.process(pickle.loads(blob))
            except AgnosticExplainError as error:  # Ray Data's wrapper would lose its type and message
                record = {"error": type(error).__name__, "message": str(error)}
            records.append(json.dumps(record))
        return {"record": np.asarray(records, dtype=object)}


def ray_devices(devices, ray) -> list[str]:
    """The actors' devices: as given, else one per GPU of the cluster, else one per CPU."""
    if devices is not None:
        return list(devices)
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return ["cuda"] * gpus if gpus else ["cpu"] * max(1, int(resources.get("CPU", 1)))


def run_ray(tasks, worker_arguments: dict, commit, *, devices=None, threads=None) -> None:
    """Explain ``tasks`` on Ray actors and ``commit(record)`` each finished chunk in the driver.

    Connects to the running Ray instance (or ``RAY_ADDRESS``), or starts a local one. Each
    actor reserves ``threads`` CPUs (default 1) and uses as many ONNX Runtime threads.
    """
    ray = require("ray", "agnostic-explain[ray]")
    require("ray.data", "agnostic-explain[ray]")
    items = [{"index": task.index, "task": pickle.dumps(task.detached())} for task in tasks]
    if not items:
        return
    if not ray.is_initialized():
        ray.init()
    devices = ray_devices(devices, ray)
    gpu = parse_device(devices[0])[0] == "cuda"
    threads = threads or 1
    context = ray.data.DataContext.get_current()
    shown = context.enable_progress_bars
    context.enable_progress_bars = False
    try:
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            _ChunkActor,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=len(devices)),
            num_gpus=1 if gpu else 0,
            num_cpus=threads,
            fn_constructor_kwargs={
                "worker_arguments": {**worker_arguments, "device": "cuda" if gpu else "cpu", "threads": threads}
            },
        )
        for row in dataset.iter_rows():
            record = json.loads(row["record"])
            if "error" in record:
                cls = getattr(errors, record["error"], None)
                cls = cls if isinstance(cls, type) and issubclass(cls, AgnosticExplainError) else errors.JobError
                raise cls(record["message"])
            commit(record)
    finally:
        context.enable_progress_bars = shown
