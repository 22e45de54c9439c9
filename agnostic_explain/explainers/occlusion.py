"""Occlusion: slide a window over the input, replace it with a baseline, measure the drop."""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ParameterError
from ..layout import channel_axis, infer_layout
from ..runtime.fused import Blend
from .base import Explainer, Problem, recorded
from ..perturbation.baselines import baseline_rows, fill_index, fill_rows


class Occlusion(Explainer):
    """Sliding-window occlusion (Zeiler & Fergus 2014), numerically equal to Captum's ``Occlusion``.

    Each window position replaces its elements with the baseline. An element's attribution is
    the mean, over the windows that cover it, of ``target(x) - target(x with window occluded)``.
    As in Captum, window starts are ``k * stride`` for ``k`` in ``0 .. ceil((size - window) /
    stride)``, and a window running past the end is clipped.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    window : int, tuple of int or "auto", default "auto"
        Window shape over one row (all non-batch axes), e.g. ``(3, 16, 16)`` for a CHW image.
        An int is accepted for rows with one axis. "auto" (see :func:`default_window`): about
        1/8 of each side of an image, all its channels, and one element otherwise;
        ``params["window"]`` records the window used.
    stride : int or tuple of int, optional
        Step between windows per axis; by default the window itself (non-overlapping tiles).
        It may not exceed the window on an axis the window does not cover whole.
    baseline : float, array_like, "mean" or "blur", default 0.0
        Replacement values: a scalar; an array broadcastable to one row or to ``x``; each
        row's mean; or a Gaussian blur of the row over its spatial axes (sigma = size / 32,
        the channel axis of a 3-D row, of size 1, 3 or 4 first or last, is not blurred).

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, labels = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:1], target=int(labels[0]))
    >>> explanation.values.shape, explanation.n_evals
    ((1, 1, 8, 8), 17)
    """

    method = "occlusion"

    def __init__(self, model, window="auto", stride=None, baseline=0.0):
        super().__init__(model)
        self.window = window
        self.stride = stride
        self.baseline = baseline

    def _params(self) -> dict:
        baseline = recorded(self.baseline)
        return {"window": self.window, "stride": self.stride, "baseline": baseline}

    def _check(self, rows: np.ndarray) -> tuple:
        """The window, its positions as slices, and the baseline rows."""
        window = self.window
        if isinstance(window, str) and window == "auto":
            window = default_window(rows.shape[1:], self.model.layout)
        return window, window_slices(rows.shape[1:], window, self.stride), baseline_rows(self.baseline, rows)

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        window, slices, baseline = problem.checked
        problem.params["window"] = tuple(int(size) for size in window) if np.ndim(window) else int(window)
        n_windows = len(slices)

        # Window bounds per axis, so a batch's occluded elements are one broadcast product.
        low = np.array([[region.start for region in regions] for regions in slices])
        high = np.array([[region.stop for region in regions] for regions in slices])
        shared = baseline.strides[0] == 0  # one baseline for every row: no gather needed

        def make_rows(start: int, stop: int) -> np.ndarray:
            owners, windows = np.divmod(np.arange(start, stop), n_windows)
            inside = inside_boxes(low[windows], high[windows], rows.shape[1:])
            batch = rows[owners]  # fancy indexing copies
            np.copyto(batch, baseline[0] if shared else baseline[owners], where=inside)
            return batch

        total = n_windows * len(rows)
        owners = np.arange(total) // n_windows
        scores = problem.evaluate(
            total, make_rows, owners, desc="occlusion", blend=lambda: window_blend(rows.shape[1:], low, high, baseline)
        )
        drops = (problem.base_values[:, None] - scores.reshape(len(rows), n_windows)).astype(np.float64)
        values = np.zeros(rows.shape, dtype=np.float64)
        counts = np.zeros(rows.shape[1:], dtype=np.float64)
        expand = (slice(None),) + (None,) * (rows.ndim - 1)
        for window, region in enumerate(slices):
            values[(slice(None),) + region] += drops[:, window][expand]
            counts[region] += 1.0
        return (values / counts).astype(np.float32)


def window_blend(row_shape: tuple, low: np.ndarray, high: np.ndarray, baseline: np.ndarray) -> Blend:
    """The windows as groups of cells, for a fused graph: one bool per cell per perturbation.

    ``low`` and ``high`` of shape (n_windows, rank) bound the windows per axis. Every window
    edge cuts each axis, so each window is a box of whole cells: for 224x224 windows of 16 at
    stride 8, 28x28 cells, 784 bools per row instead of 150,528 floats.
    """
    rank = len(row_shape)
    edges = [np.unique(np.concatenate([[0, size], low[:, axis], high[:, axis]])) for axis, size in enumerate(row_shape)]
    counts = [len(cuts) - 1 for cuts in edges]
    cell_of = [np.searchsorted(cuts, np.arange(size), side="right") - 1 for cuts, size in zip(edges, row_shape)]
    segments = np.ravel_multi_index(np.meshgrid(*cell_of, indexing="ij"), counts).astype(np.int64)
    low = np.stack([np.searchsorted(edges[axis], low[:, axis]) for axis in range(rank)], axis=1)
    high = np.stack([np.searchsorted(edges[axis], high[:, axis]) for axis in range(rank)], axis=1)
    fill, shared = fill_rows(baseline)
    n_windows = len(low)

    def compact(start: int, stop: int) -> dict:
        owners, windows = np.divmod(np.arange(start, stop), n_windows)
        keep = ~inside_boxes(low[windows], high[windows], counts).reshape(stop - start, -1)
        return {"keep": keep, "fill_index": fill_index(shared, owners)}

    return Blend("groups", fill, compact, segments=segments)


def inside_boxes(low: np.ndarray, high: np.ndarray, sizes) -> np.ndarray:
    """Boolean masks of shape (k, *sizes): box ``i`` spans ``low[i, axis] .. high[i, axis]`` per axis."""
    count, rank = len(low), len(sizes)
    inside = np.ones((count,) + (1,) * rank, dtype=bool)
    for axis, size in enumerate(sizes):
        coordinate = np.arange(size)
        member = (coordinate >= low[:, axis, None]) & (coordinate < high[:, axis, None])
        shape = [count] + [1] * rank
        shape[axis + 1] = size
        inside = inside & member.reshape(shape)
    return inside


def default_window(row_shape: tuple, layout: str | None = None) -> tuple[int, ...]:
    """About 1/8 of each spatial side (all channels) for image rows, one element otherwise.

    >>> default_window((3, 224, 224)), default_window((32, 32, 3), "nhwc"), default_window((10,))
    ((3, 28, 28), (4, 4, 3), (1,))
    """
    row_shape = tuple(int(size) for size in row_shape)
    axis = channel_axis(row_shape, layout) if infer_layout(row_shape) or layout else None
    if axis is None:
        return (1,) * len(row_shape)
    return tuple(size if position == axis else max(1, size // 8) for position, size in enumerate(row_shape))


def window_slices(row_shape: tuple, window, stride) -> list[tuple[slice, ...]]:
    """All window positions over a row, as tuples of slices, clipped at the far edges.

    Raises
    ------
    ParameterError
        When the window's rank does not match the row, it is larger than the input, or a
        stride would leave elements uncovered.
    """
    rank = len(row_shape)
    window = _per_axis(window, rank, "window", row_shape)
    stride = window if stride is None else _per_axis(stride, rank, "stride", row_shape)
    for axis, (size, width, step) in enumerate(zip(row_shape, window, stride)):
        if width > size:
            raise ParameterError(
                f"window {window} is larger than the input row {tuple(row_shape)} on axis {axis} "
                f"({width} > {size})"
            )
        if step > width and width < size:
            raise ParameterError(
                f"stride {stride} exceeds window {window} on axis {axis} ({step} > {width}), "
                "which would leave elements never occluded"
            )
    starts = [
        range(0, (-(-(size - width) // step)) * step + 1, step)
        for size, width, step in zip(row_shape, window, stride)
    ]
    return [
        tuple(slice(begin, min(begin + width, size)) for begin, width, size in zip(corner, window, row_shape))
        for corner in itertools.product(*starts)
    ]


def _per_axis(value, rank: int, name: str, row_shape: tuple) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if rank != 1:
            raise ParameterError(
                f"{name}={value} is an int, but each input row has {rank} axes {tuple(row_shape)}; "
                f"pass a tuple of {rank} ints, e.g. {(1,) * (rank - 2) + (value, value) if rank >= 2 else (value,)}"
            )
        value = (value,)
    try:
        items = tuple(value)
    except TypeError:
        expected = "an int, a tuple of ints or 'auto'" if name == "window" else "an int or a tuple of ints"
        raise ParameterError(f"{name} must be {expected}, got {value!r}") from None
    for item in items:
        # int() would truncate 2.5 to 2 and occlude other windows than asked for
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise ParameterError(
                f"{name} entries must be ints, got {item!r} ({type(item).__name__}) in {value!r}"
            )
    value = tuple(int(item) for item in items)
    if len(value) != rank:
        raise ParameterError(
            f"{name} {value} has {len(value)} entries, but each input row has {rank} axes "
            f"{tuple(row_shape)} (the batch axis excluded)"
        )
    if any(item < 1 for item in value):
        raise ParameterError(f"{name} entries must be >= 1, got {value}")
    return value
