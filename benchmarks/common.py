"""Shared measurement helpers for the benchmark scripts: the model-bound limit and machine facts.

The model-bound time of a black-box method is the number of rows it evaluates divided by the
model's best throughput on the same provider. Measure it with :func:`model_throughput` (a
sweep over batch sizes) and :func:`bound_run` (a run of exactly that many rows at the best
size, paired with the method's own run so both see the same machine).
"""

from __future__ import annotations

import os
import time

import numpy as np

import agnostic_explain as ae

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def model_throughput(model: ae.OnnxModel, image: np.ndarray, repeats: int, sizes=BATCH_SIZES) -> dict[int, float]:
    """Rows per second of plain ``session.run`` at each batch size (best of ``repeats``, warm)."""
    name = model.inputs[0].name
    result = {}
    for size in sizes:
        batch = np.repeat(image, size, axis=0)
        model.run({name: batch})  # warm-up: allocations and kernel choice
        calls = max(1, 64 // size)
        best = float("inf")
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(calls):
                model.run({name: batch})
            best = min(best, (time.perf_counter() - began) / calls)
        result[size] = size / best
    return result


def bound_run(model: ae.OnnxModel, image: np.ndarray, rows: int, size: int) -> float:
    """Seconds plain ``session.run`` takes for ``rows`` rows at batch ``size`` (inputs pre-built)."""
    name = model.inputs[0].name
    batches = [np.repeat(image, min(size, rows - start), axis=0) for start in range(0, rows, size)]
    for batch in {len(batch): batch for batch in batches}.values():
        model.run({name: batch})  # warm every shape: a new shape costs a kernel search on CUDA
    began = time.perf_counter()
    for batch in batches:
        model.run({name: batch})
    return time.perf_counter() - began


def probe_providers(provider: str) -> list:
    """Provider settings to sweep for the bound: on CUDA both cuDNN kernel searches."""
    if provider != "cuda":
        return [provider]
    return [
        [("CUDAExecutionProvider", {"cudnn_conv_algo_search": search}), "CPUExecutionProvider"]
        for search in ("EXHAUSTIVE", "HEURISTIC")
    ]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


