"""RISE: weigh random smooth masks by the score of the input they let through."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..layout import channel_axis
from ..runtime.fused import Blend
from ..perturbation.baselines import baseline_rows, fill_index, fill_rows
from .base import Explainer, Problem, recorded
from .budget import check_budget

#: bytes of upsampled masks (float64) held at once while summing the saliency, by default
_SUM_BUDGET = 64 << 20


class Rise(Explainer):
    """Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko 2018).

    Draws ``n_masks`` random binary grids of ``cells`` cells per axis, each cell kept with
    probability ``p_keep``, upsamples each bilinearly to ``(cells + 1) * ceil(size / cells)``
    pixels per axis and crops it at a random shift below one cell (the paper's procedure, with
    scikit-image's pixel-centred sampling and mirrored edges). The model scores each masked
    row ``x * M_i + baseline * (1 - M_i)``, and the saliency is
    ``S = sum_i f(masked_i) M_i / (n_masks * p_keep)``.

    Masks cover the plane of image rows, of shape (C, H, W) or (H, W, C) with C of 1, 3 or 4
    (first axis checked first), and are shared by the channels; other rows are masked over
    all their axes. An axis with no more elements than ``cells`` gets one independent cell
    per element (no upsampling, no shift), so ``cells=n_features`` on tabular rows drops
    each feature independently. The same masks serve every row of one call.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    n_masks : int, default 1000
        Number of random masks; the model evaluates ``n_masks`` rows per explained row.
    cells : int, default 8
        Grid cells per masked axis.
    p_keep : float, default 0.5
        Probability that a cell is kept, in (0, 1].
    batch_masks : int, optional
        Masks upsampled at once while summing the saliency. None takes as many as fit in
        64 MiB. Masks of all rows that fit in 64 MiB together are upsampled once and kept;
        larger ones are upsampled per batch and again for the sum, so that only the small
        grids stay in memory.
    baseline : float, array_like, "mean" or "blur", default 0.0
        What the masked-out part of a row fades to (see :class:`Occlusion`).

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> from agnostic_explain.explainers.rise import Rise
    >>> images, labels = load_samples()
    >>> explanation = Rise(DEFAULT_MODEL_PATH, n_masks=200, cells=4).explain(images[:2], random_state=0)
    >>> explanation.values.shape, explanation.n_evals
    ((2, 1, 8, 8), 402)
    """

    method = "rise"

    def __init__(self, model, n_masks=1000, cells=8, p_keep=0.5, batch_masks=None, baseline=0.0):
        super().__init__(model)
        self.n_masks = n_masks
        self.cells = cells
        self.p_keep = p_keep
        self.batch_masks = batch_masks
        self.baseline = baseline

    def _params(self) -> dict:
        baseline = recorded(self.baseline)
        return {
            "n_masks": self.n_masks,
            "cells": self.cells,
            "p_keep": self.p_keep,
            "batch_masks": self.batch_masks,
            "baseline": baseline,
        }

    def _check(self, rows: np.ndarray) -> np.ndarray:
        """The baseline rows."""
        for name in ("n_masks", "cells") + (() if self.batch_masks is None else ("batch_masks",)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ParameterError(f"{name} must be a positive int, got {value!r}")
        number = isinstance(self.p_keep, (int, float, np.number)) and not isinstance(self.p_keep, bool)
        if not number or not 0 < self.p_keep <= 1:
            raise ParameterError(f"p_keep must be a number in (0, 1], got {self.p_keep!r}")
        channel = channel_axis(rows.shape[1:])
        plane = [size for axis, size in enumerate(rows.shape[1:]) if axis != channel]
        # Python ints: n_masks=10**13 must be refused here, not by a MemoryError (or worse) in draw_masks
        needed = int(self.n_masks) * (8 * int(self.cells) ** len(plane) + 16 * len(plane) + 16 * len(rows))
        check_budget(
            needed, f"n_masks={self.n_masks} with cells={self.cells} over a {len(plane)}-D plane of {len(rows)} row(s)",
            "use fewer masks or cells, or explain fewer rows per call",
        )
        if not np.issubdtype(rows.dtype, np.floating):
            raise ParameterError(
                f"Rise blends rows with smooth masks, so x must be floating point; got dtype {rows.dtype} "
                "(use FeatureAblation for integer inputs such as token ids)"
            )
        return baseline_rows(self.baseline, rows)

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        n_rows, n_masks, cells = len(rows), int(self.n_masks), int(self.cells)
        channel = channel_axis(rows.shape[1:], problem.model.layout)
        plane = tuple(size for axis, size in enumerate(rows.shape[1:]) if axis != channel)
        grids, shifts = draw_masks(problem.rng, n_masks, cells, float(self.p_keep), plane)
        baseline = problem.checked
        zero_baseline = not isinstance(self.baseline, str) and not np.any(self.baseline)
        # indexes a (k, *plane) array to broadcast over the channel axis of (k, *row_shape)
        with_channel = (slice(None),) + tuple(
            None if axis == channel else slice(None) for axis in range(rows.ndim - 1)
        )

        pixels = int(np.prod(plane))
        # Small masks (digits, tabular rows) are upsampled once and kept for every row and the
        # saliency sum; large ones (224x224 images) again per batch, so memory stays at the grids.
        kept = upsample(grids, shifts, plane) if 4 * n_masks * pixels <= _SUM_BUDGET else None

        def make_rows(start: int, stop: int) -> np.ndarray:
            owners, ids = np.divmod(np.arange(start, stop), n_masks)
            masks = (kept[ids] if kept is not None else upsample(grids[ids], shifts[ids], plane))[with_channel]
            batch = rows[owners]  # fancy indexing copies; the blend below works in place on it
            if zero_baseline:
                batch *= masks
                return batch
            base = baseline[owners]
            batch -= base
            batch *= masks
            batch += base
            return batch

        total = n_rows * n_masks
        def blend() -> Blend:
            fill, shared = fill_rows(baseline)

            def compact(start: int, stop: int) -> dict:
                owners, ids = np.divmod(np.arange(start, stop), n_masks)
                return {
                    "grid": grids[ids].astype(np.float32),
                    "weights_0": axis_weights(plane[0], cells, shifts[ids, 0]),
                    "weights_1": axis_weights(plane[1], cells, shifts[ids, 1]),
                    "fill_index": fill_index(shared, owners),
                }

            return Blend("separable", fill, compact, channel_axis=channel)

        scores = problem.evaluate(
            total, make_rows, np.arange(total) // n_masks, desc="rise", blend=blend if len(plane) == 2 else None
        )
        scores = scores.reshape(n_rows, n_masks).astype(np.float64)
        chunk = self.batch_masks or max(1, _SUM_BUDGET // (8 * pixels))
        saliency = np.zeros((n_rows, pixels), dtype=np.float64)
        for begin in range(0, n_masks, chunk):
            end = min(begin + chunk, n_masks)
            masks = kept[begin:end] if kept is not None else upsample(grids[begin:end], shifts[begin:end], plane)
            saliency += scores[:, begin:end] @ masks.reshape(end - begin, pixels).astype(np.float64)
        saliency /= n_masks * float(self.p_keep)
        saliency = saliency.reshape((n_rows,) + plane)[with_channel]
        return np.ascontiguousarray(np.broadcast_to(saliency, rows.shape), dtype=np.float32)


def draw_masks(rng: np.random.Generator, n_masks: int, cells: int, p_keep: float, plane: tuple):
    """Random binary grids and crop shifts.

    Returns
    -------
    grids : ndarray of shape (n_masks, cells, ..., cells), dtype bool
        One axis of ``cells`` per axis of ``plane``.
    shifts : ndarray of shape (n_masks, len(plane)), dtype int64
        The crop offset per axis, in ``0 .. ceil(size / cells) - 1`` (0 on axes of at most
        ``cells`` elements).
    """
    grids = rng.random((n_masks,) + (cells,) * len(plane)) < p_keep
    cell_sizes = [-(-size // cells) for size in plane]
    shifts = rng.integers(0, cell_sizes, size=(n_masks, len(plane)))
    return grids, shifts.astype(np.int64)


def upsample(grids: np.ndarray, shifts: np.ndarray, plane: tuple) -> np.ndarray:
    """Masks of shape (k, *plane), float32: each grid upsampled bilinearly and cropped at its shift.

    Along an axis of ``size`` elements over ``c`` cells, with ``cell = ceil(size / c)``, pixel
    ``h`` of a mask is pixel ``h + shift`` of the grid resized to ``(c + 1) * cell`` pixels
    with scikit-image's ``resize(order=1, mode="reflect")`` sampling: source coordinate
    ``(h + shift + 0.5) * c / ((c + 1) * cell) - 0.5``, edges mirrored. Bilinear sampling is
    separable, so each axis is one batched matrix product with a (k, size, c) weight matrix.
    """
    masks = grids.astype(np.float32)
    k = len(grids)
    for axis, size in enumerate(plane):
        weights = axis_weights(size, grids.shape[1 + axis], shifts[:, axis])  # (k, size, cells)
        moved = np.moveaxis(masks, 1 + axis, -1)
        inner = moved.shape[1:-1]
        product = moved.reshape(k, -1, moved.shape[-1]) @ weights.transpose(0, 2, 1)
        masks = np.moveaxis(product.reshape((k,) + inner + (size,)), -1, 1 + axis)
    return np.ascontiguousarray(masks)


def axis_weights(size: int, cells: int, shifts: np.ndarray) -> np.ndarray:
    """Interpolation weights of shape (k, size, cells), float32: row h mixes the cells pixel h samples.

    An axis of at most ``cells`` elements takes cell ``h`` for element ``h`` (no interpolation).
    """
    k = len(shifts)
    weights = np.zeros((k, size, cells), dtype=np.float32)
    if size <= cells:
        weights[:, np.arange(size), np.arange(size)] = 1.0
        return weights
    cell = -(-size // cells)
    source = (np.arange(size)[None, :] + shifts[:, None] + 0.5) * (cells / ((cells + 1) * cell)) - 0.5
    lower = np.floor(source)
    upper_weight = (source - lower).astype(np.float32)
    lower = lower.astype(np.intp)
    masks_index, pixel_index = np.arange(k)[:, None], np.arange(size)[None, :]
    # two separate updates, so that both weights add up where mirroring maps them to one cell
    weights[masks_index, pixel_index, _mirror(lower, cells)] += 1.0 - upper_weight
    weights[masks_index, pixel_index, _mirror(lower + 1, cells)] += upper_weight
    return weights


def _mirror(index: np.ndarray, cells: int) -> np.ndarray:
    """Reflect out-of-range cell indices about the edge cells (-1 -> 1, cells -> cells - 2)."""
    last = cells - 1
    index = np.abs(index)
    index = np.where(index > last, 2 * last - index, index)
    return np.clip(index, 0, last)
