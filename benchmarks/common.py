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
    """Seconds ``rows`` rows take at the throughput of plain ``session.run`` at batch ``size``.

    Only full batches run (the last one padded, as the explainers pad on CUDA), and the time is
    scaled to ``rows``: on CUDA a change of batch shape costs about a second on a CNN, which is
    not the model's throughput. Inputs are built in advance.
    """
    name = model.inputs[0].name
    batch = np.repeat(image, size, axis=0)
    n_batches = -(-rows // size)
    model.run({name: batch})  # warm: allocations and kernel choice for this shape
    began = time.perf_counter()
    for _ in range(n_batches):
        model.run({name: batch})
    return (time.perf_counter() - began) * rows / (n_batches * size)


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


def pretrained_image_case():
    """EfficientNet-Lite0 with its ImageNet weights, exported to a temporary ONNX file.

    Returns
    -------
    path : str
        The ONNX file.
    image : ndarray of shape (1, 3, 224, 224)
        scikit-image's cat, preprocessed.
    target : int
        The PyTorch model's predicted class for it.
    module : torch.nn.Module
        The source model (for the peers).
    """
    import tempfile
    from pathlib import Path

    import torch

    from benchmarks.models import efficientnet_lite0, export_onnx, sample_image

    module = efficientnet_lite0(pretrained=True)
    image = sample_image("chelsea")
    with torch.no_grad():
        target = int(module(torch.from_numpy(image)).argmax())
    path = str(Path(tempfile.mkdtemp()) / "efficientnet_lite0.onnx")
    export_onnx(module, path)
    return path, image, target, module


def best_throughput(path: str, provider: str, image: np.ndarray, repeats: int, sizes=BATCH_SIZES, load_options=None):
    """The throughput sweep over batch sizes and provider settings.

    ``sizes`` are the batch sizes tried; ``load_options`` go to ``ae.load`` (``precision``,
    say), so that the bound runs the same graph as the explainer.

    Returns
    -------
    throughput : dict of int to float
        Best rows per second at each batch size.
    best_size : int
    bound_model : OnnxModel
        A model loaded with the provider settings that gave the best throughput.
    """
    throughput, best_size, providers = sweep_providers(path, provider, image, repeats, sizes, load_options)
    return throughput, best_size, ae.load(path, providers=providers, **dict(load_options or {}))


def sweep_providers(path: str, provider: str, image: np.ndarray, repeats: int, sizes=BATCH_SIZES, load_options=None):
    """As :func:`best_throughput`, returning the best provider settings instead of a loaded model."""
    options = dict(load_options or {})
    throughput, best_providers, best_value = {}, None, 0.0
    for providers in probe_providers(provider):
        probe = ae.load(path, providers=providers, **options)
        for size, value in model_throughput(probe, image, repeats, sizes).items():
            throughput[size] = max(value, throughput.get(size, 0.0))
            if value > best_value:
                best_providers, best_value = providers, value
    return throughput, max(throughput, key=throughput.get), best_providers


def paired_runs(explain, bound_model, image: np.ndarray, best_size: int, repeats: int, bound=None):
    """One cold explanation, then ``repeats`` pairs of (model-bound run, warm explanation).

    On a shared or virtual machine throughput drifts by 10% or more between minutes; pairing
    each explanation with a bound measured right beside it keeps the ratio honest.

    Parameters
    ----------
    explain : callable
        ``explain(repeat) -> Explanation``; repeat -1 is the cold call.
    bound : callable, optional
        ``bound(explanation) -> seconds`` replaces the default bound (``explanation.n_evals``
        rows of ``image`` through ``bound_model`` at ``best_size``), for methods whose rows
        are not all full-model rows (the CAMs' split graphs).

    Returns
    -------
    explanation, cold_seconds, bound_seconds (list), explain_seconds (list)
    """
    began = time.perf_counter()
    explanation = explain(-1)
    cold = time.perf_counter() - began
    bounds, ours = [], []
    for repeat in range(repeats):
        if bound is None:
            bounds.append(bound_run(bound_model, image, explanation.n_evals, best_size))
        else:
            bounds.append(bound(explanation))
        began = time.perf_counter()
        explanation = explain(repeat)
        ours.append(time.perf_counter() - began)
    return explanation, cold, bounds, ours


def split_parts(path: str, layer: str, rows: np.ndarray, providers="cpu", load_options=None):
    """The model after ``layer`` (its tail), loaded, and the layer's activations for ``rows``.

    The model-bound time of a split method (Ablation-CAM) is its head rows at the full
    model's best throughput plus its tail rows at the tail's: see :func:`bound_run`.

    Returns
    -------
    tail : OnnxModel
    activations : ndarray of shape (n_rows, ...)
    """
    options = dict(load_options or {})
    exposed = ae.load(ae.graph.expose(path, [layer]), providers=providers, **options)
    _, tail_proto = ae.graph.split(path, at=layer)
    tail = ae.load(tail_proto, providers=providers, **options)
    activations = exposed.run({exposed.inputs[0].name: rows}, [layer])[0]
    return tail, activations


def describe_machine(device: str) -> dict:
    """CPU model, cores, memory, GPU and driver (on CUDA), and the versions that matter."""
    import datetime
    import importlib.metadata
    import platform
    import subprocess

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cores": cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        cpuinfo = open("/proc/cpuinfo").read()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        meminfo = open("/proc/meminfo").read().split()
        info["ram_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    if device == "cuda":
        try:
            query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
            info["gpu"] = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["gpu"] = "unknown (nvidia-smi failed)"
    versions = {}
    for package in ("agnostic-explain", "numpy", "onnxruntime-gpu", "onnxruntime", "torch", "captum", "lime",
                    "shap", "dianna", "scikit-learn", "scikit-image"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    info["versions"] = versions
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            changed = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD", "--", "agnostic_explain"], timeout=10)
            info["commit"] = commit.stdout.strip() + (" + uncommitted changes" if changed.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info
