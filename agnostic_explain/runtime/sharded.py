"""ShardedModel: one session per device, every batch split across them.

``load(model, providers="cuda", device_id=[0, 1])`` opens one :class:`OnnxModel` per GPU.
The one batching loop hands each batch to :meth:`ShardedModel.run_batch`, which cuts the
batched inputs into one contiguous slice per device and runs the slices at once (ONNX
Runtime releases the GIL), so perturbations of one explanation spread over every device.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ParameterError, ProviderError
from .model import Model
from .providers import CUDA, cuda_device_count, resolve_providers
from .session import OnnxModel

__all__ = ["ShardedModel"]


class ShardedModel(Model):
    """Several copies of one model, one per device, run as one.

    Parameters
    ----------
    shards : list of OnnxModel
        The same model on each device. Use :meth:`open` (or :func:`agnostic_explain.load`
        with a list of ``device_id``) rather than this constructor.

    Attributes
    ----------
    shards : list of OnnxModel
    device_ids : list of int

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> model = ae.load(DEFAULT_MODEL_PATH, providers="cpu", device_id=[0, 1])
    >>> images, _ = load_samples()
    >>> model.predict(images[:5]).shape, len(model.shards)
    ((5, 10), 2)
    """

    def __init__(self, shards: list):
        if not shards:
            raise ParameterError("device_id: the list of devices is empty")
        super().__init__()
        first = shards[0]
        self.shards = list(shards)
        self.device_ids = [shard.device_id for shard in shards]
        # Every shard runs the same graph with the same settings: the first speaks for all.
        for name in ("inputs", "outputs", "label_names", "feature_names", "preprocessing", "metadata",
                     "static_batch", "batch_size", "fixed_shapes", "providers", "precision", "proto", "path",
                     "external_data_dir", "fuse", "threads", "batch_axes"):
            setattr(self, name, getattr(first, name))
        self._pool = None

    @classmethod
    def open(cls, model, *, device_ids, providers="auto", threads=None, **settings) -> "ShardedModel":
        """One :class:`OnnxModel` of ``model`` per entry of ``device_ids`` (see :func:`load`).

        On the CPU the entries only count sessions, and each gets an equal share of the cores
        unless ``threads`` is given.
        """
        ids = list(device_ids)
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ParameterError(f"device_id must be a non-negative int or a non-empty list of them, got {device_ids!r}")
        if len(set(ids)) != len(ids):
            raise ParameterError(f"device_id lists a device twice: {device_ids!r}")
        on_cuda = resolve_providers(providers, ids[0])[0][0] == CUDA
        if on_cuda and max(ids) >= cuda_device_count():
            raise ProviderError(
                f"device_id: device {max(ids)} was requested but only {cuda_device_count()} CUDA devices were found"
            )
        if not on_cuda and threads is None:
            threads = max(1, (os.cpu_count() or 1) // len(ids))
        first = OnnxModel(model, device_id=ids[0], providers=providers, threads=threads, **settings)
        source = first.proto if first.path is None else first.path
        rest = [OnnxModel(source, device_id=i, providers=providers, threads=threads,
                          **{**settings, "external_data_dir": first.external_data_dir, "precision": "fp32"})
                for i in ids[1:]]
        return cls([first] + rest)

    @property
    def fuses_perturbations(self) -> bool:
        return self.shards[0].fuses_perturbations

    @property
    def on_cuda(self) -> bool:
        return self.shards[0].on_cuda

    @property
    def device_key(self) -> str:
        return f"{','.join(self.providers)}|{self.device_ids}|{self.threads}"

    def __repr__(self) -> str:
        return f"ShardedModel(devices={self.device_ids}, {self.shards[0]!r})"

    def derive(self, proto, *, session_config=None) -> "ShardedModel":
        """The edit ``proto`` on every device (see :meth:`OnnxModel.derive`)."""
        return ShardedModel([shard.derive(proto, session_config=session_config) for shard in self.shards])

    def _run(self, feeds, output_names):
        return self.shards[0]._run(feeds, output_names)

    def run_batch(self, feeds: dict, batched: set, output_names: list[str]) -> list[np.ndarray]:
        """Run one batch with its rows split across the devices; outputs in row order."""
        n = len(feeds[next(iter(batched))])
        bounds = np.linspace(0, n, len(self.shards) + 1).astype(int)
        pieces = [(shard, start, stop) for shard, start, stop in zip(self.shards, bounds[:-1], bounds[1:]) if stop > start]
        if len(pieces) == 1:
            return pieces[0][0].run(feeds, output_names)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=len(self.shards), thread_name_prefix="shard")
        futures = [
            self._pool.submit(shard.run, {
                name: value[start:stop] if name in batched else value for name, value in feeds.items()
            }, output_names)
            for shard, start, stop in pieces
        ]
        results = [future.result() for future in futures]
        return [np.concatenate(parts, axis=0) for parts in zip(*results)]
