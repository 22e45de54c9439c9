"""Fused perturbation runs: the explained rows go to the device once, masks per batch.

A method that can describe its perturbations compactly hands the explainers' ``evaluate``
a :class:`Blend` besides its numpy ``make_rows``. When the model fuses perturbations (``load(..., fuse=...)``; on CUDA by
default), the rows are composed inside the graph by
:func:`agnostic_explain.graph.fuse.fuse_perturbation` and the target is selected there too,
through the same batching loop; otherwise ``make_rows`` builds them in numpy. Both paths
give the same attributions (to float32 rounding), which the tests check per method.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..graph import fuse as graph_fuse
from .batching import evaluate
from .feeds import Feeds, to_model_layout
from .binding import Resident
from .targets import Target, target_reducer

__all__ = ["Blend", "evaluate_fused"]

#: keys of ``Blend.compact`` batches and the fused graph inputs they feed
_COMPACT = {
    "keep": graph_fuse.KEEP, "fill_index": graph_fuse.FILL_INDEX, "segment_index": graph_fuse.SEGMENT_INDEX,
    "grid": graph_fuse.GRID, "weights_0": graph_fuse.WEIGHTS_0, "weights_1": graph_fuse.WEIGHTS_1,
}


@dataclass
class Blend:
    """A method's perturbed rows, described compactly for a fused graph.

    Attributes
    ----------
    kind : {"groups", "groups_per_row", "separable"}
        See :mod:`agnostic_explain.graph.fuse`.
    fill : ndarray of shape (n_fill, *row_shape)
        Replacement rows, batch first, in the explained input's dtype.
    compact : callable
        ``compact(start, stop)`` returns the masks of perturbed rows ``start .. stop`` as a
        dict: ``keep`` (k, n_groups) bool and ``fill_index`` (k,) for groups, plus
        ``segment_index`` (k,) per row; ``grid`` (k, c0, c1), ``weights_0`` (k, size0, c0),
        ``weights_1`` (k, size1, c1) float32 and ``fill_index`` for "separable".
    segments : ndarray of int64, optional
        Group id per element: shape ``row_shape``, or (n_segments, *row_shape) per row.
    channel_axis : int or None
        "separable": the axis of a row the 2-D mask broadcasts over.
    """

    kind: str
    fill: np.ndarray
    compact: Callable[[int, int], dict]
    segments: np.ndarray | None = None
    channel_axis: int | None = None


def _refusal(model, feeds: Feeds, output: str) -> str | None:
    """Why these rows cannot run fused (a sentence), or None."""
    if model.proto is None:
        return "the model is not an ONNX graph"
    if model.static_batch is not None:
        return f"the model's batch size is fixed at {model.static_batch}"
    if feeds.spec.batch_axis != 0:
        return "the explained input's batch axis is not its first"
    if model.output_spec(output).batch_axis != 0:
        return "the explained output's batch axis is not its first"
    return None


def evaluate_fused(
    model, feeds: Feeds, *, n: int, blend: Callable[[], Blend], owners: np.ndarray, output: str, target: Target,
    output_transform: str | None, output_shape: tuple, progress=None, desc: str = "",
) -> np.ndarray | None:
    """Target scalars, shape (n,), of ``n`` perturbed rows composed in the graph.

    ``blend()`` returns the :class:`Blend` of the rows; ``target``, ``output_transform`` and
    ``output_shape`` (one row of ``output``) say which scalar of the output each row gives.
    Returns None when the model does not fuse perturbations, or when these rows cannot be
    fused (an old opset, a batch axis that is not first, ...); the caller then builds the rows
    in numpy. A model loaded with ``fuse=True`` warns then, naming the reason.
    """
    if not model.fuses_perturbations:
        return None
    select = target.indices is not None
    reason = _refusal(model, feeds, output)
    if reason is None:
        blend = blend()
        try:
            fused = _fused_model(model, feeds.name, output, blend, output_transform if select else None, select)
        except ParameterError as error:
            reason = str(error)
    if reason is not None:
        if model.fuse is True:
            warnings.warn(f"fuse=True, but this model runs unfused: {reason}", RuntimeWarning, stacklevel=3)
        return None
    fused_feeds = FusedFeeds(feeds, blend, target.positions(output_shape) if select else None)
    if select:
        reduce = lambda outputs, own: outputs.astype(np.float64)  # noqa: E731 - already the targets
        output = graph_fuse.TARGET
    else:
        reduce = target_reducer(target, output_transform)
    return evaluate(
        fused, fused_feeds, n=n, make_rows=blend.compact, owners=owners, reduce=reduce, output=output,
        progress=progress, desc=desc,
    )


def _fused_model(model, input: str, output: str, blend: Blend, output_transform, select: bool):
    """The fused model, derived once per model, input, output, blend and transform."""
    key = ("fused", input, output, blend.kind, blend.channel_axis, output_transform, select)
    return model.cache.derived_model(key, lambda: model.derive(graph_fuse.fuse_perturbation(
        model.proto, input=input, output=output, blend=blend.kind, channel_axis=blend.channel_axis,
        output_transform=output_transform, select=select,
    )))


class FusedFeeds:
    """The fused model's feeds: resident rows, fill and segments; compact masks per batch.

    Stands in for :class:`~agnostic_explain.runtime.feeds.Feeds` in the batching loop.
    """

    def __init__(self, base: Feeds, blend: Blend, positions: np.ndarray | None):
        self.base, self.positions = base, positions
        self.name, self.rows = base.name, base.rows  # the batch-size cache keys on the row shape
        self._batched = ({graph_fuse.OWNER, graph_fuse.FILL_INDEX} | set(graph_fuse.FUSED_INPUTS[blend.kind])) - {
            graph_fuse.SEGMENTS
        }
        if positions is not None:
            self._batched.add(graph_fuse.POSITION)
        self._batched |= base.batched_names() - {base.name}
        self.constants = {graph_fuse.ROWS: Resident(base.rows), graph_fuse.FILL: Resident(blend.fill)}
        if blend.segments is not None:
            self.constants[graph_fuse.SEGMENTS] = Resident(blend.segments.astype(np.int64, copy=False))

    def batch(self, compact: dict, owners: np.ndarray) -> dict:
        feeds = {_COMPACT[key]: value for key, value in compact.items()}
        feeds[graph_fuse.OWNER] = owners.astype(np.int64, copy=False)
        if self.positions is not None:
            feeds[graph_fuse.POSITION] = self.positions[owners]
        feeds.update(self.constants)
        for name, (value, spec) in self.base.fixed.items():
            feeds[name] = value if spec.batch_axis is None else to_model_layout(self.base.fixed_rows(name, owners), spec)
        return feeds

    def batched_names(self) -> set[str]:
        return self._batched

    def row_bytes(self, model, outputs) -> int:
        # The rows are composed on the device, but activations scale with them as before.
        return self.base.rows[0].nbytes
