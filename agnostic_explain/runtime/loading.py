"""``load``: the one entry point from a path, bytes, proto or function to a :class:`Model`."""

from __future__ import annotations

import os

import onnx

from .callable import CallableModel
from .model import Model
from .session import OnnxModel
from .sharded import ShardedModel

__all__ = ["load"]


def load(
    model, *, providers="auto", device_id=0, batch_size="auto", threads: int | None = None,
    external_data_dir=None, fuse="auto", precision: str = "fp32", cuda_graph: bool = False, batch_axes=None,
) -> Model:
    """Load a model for explanation.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto, Model or callable
        An ONNX file, its serialized bytes, a ModelProto, an already loaded model (returned
        as is), or a numpy function ``f(ndarray) -> ndarray`` (wrapped in CallableModel).
    providers : "auto", "cpu", "cuda" or list
        Execution providers. "auto" uses CUDA when it is present and usable, else the CPU.
    device_id : int or list of int
        CUDA device ordinal; a list (``[0, 1]``) opens one session per device and shards every
        batch across them (see :class:`~agnostic_explain.runtime.sharded.ShardedModel`).
    batch_size : int or "auto"
        Rows per model call. "auto" measures throughput on the first batches and picks a
        size on the plateau within a memory budget, remembered per model, provider and row
        shape (on disk too: see :mod:`agnostic_explain.runtime.tuning`).
    threads : int, optional
        ONNX Runtime intra-op threads; by default ONNX Runtime's choice (one per core).
    external_data_dir : str or os.PathLike, optional
        The folder external weights are read from, for a model given in memory (an edit of
        a model whose weights are external, say); a file's own folder is used otherwise. An
        in-memory model with external weights and no folder is refused (ModelLoadError): its
        weights are never looked for in the working directory.
    fuse : "auto", True or False
        Fuse perturbations into the graph (see :mod:`agnostic_explain.graph.fuse`): methods
        that support it send the explained rows once and compact masks per batch, and get
        target scalars back. "auto" fuses on CUDA, where it saves the host-to-device copies.
    precision : "fp32" or "fp16"
        "fp16" runs a half-precision copy of the model (inputs and outputs stay float32),
        made with onnxconverter-common (``pip install agnostic-explain[fp16]``).
    batch_axes : dict of str to int or None, optional
        The batch axis of inputs whose batch the model does not show, e.g. ``{"state": 1}`` for a
        state ``[2, ?, 128]`` beside an input ``[?, ?]``; None marks an input without one. By
        default an input's batch axis is where the inputs' shared batch symbol sits, else a
        leading unknown dimension, else its only unknown dimension.
    cuda_graph : bool
        Capture and replay CUDA graphs (ONNX Runtime's ``enable_cuda_graph``), one per padded
        batch shape. Falls back to ordinary runs, with a warning, where the model does not
        allow capture.

    Returns
    -------
    Model

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    >>> model.inputs[0].name, model.inputs[0].shape
    ('image', ('batch', 1, 8, 8))
    """
    if isinstance(model, Model):
        return model
    if callable(model) and not isinstance(model, (str, bytes, os.PathLike, onnx.ModelProto)):
        return CallableModel(model, batch_size=64 if batch_size == "auto" else batch_size)
    settings = dict(
        providers=providers, batch_size=batch_size, threads=threads, external_data_dir=external_data_dir,
        fuse=fuse, precision=precision, cuda_graph=cuda_graph, batch_axes=batch_axes,
    )
    if isinstance(device_id, (list, tuple)):
        return ShardedModel.open(model, device_ids=device_id, **settings)
    return OnnxModel(model, device_id=device_id, **settings)
