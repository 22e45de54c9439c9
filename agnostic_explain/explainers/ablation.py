"""Feature ablation: replace one group of features at a time with a baseline, measure the drop."""

from __future__ import annotations

import numpy as np

from ..perturbation import masks
from ..errors import ParameterError
from ..runtime.fused import Blend
from .base import Explainer, Problem, recorded
from ..perturbation.baselines import baseline_rows, fill_index, fill_rows


class FeatureAblation(Explainer):
    """Group-wise ablation, numerically equal to Captum's ``FeatureAblation``.

    For each group of the feature mask, one perturbation replaces the group's elements with
    the baseline and keeps everything else. The group's attribution is
    ``target(x) - target(x with the group ablated)``, and every element of the group gets it.
    All groups of all rows go to the model in one batched run.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    feature_mask : array_like of int, optional
        Group ids ``0 .. n_groups - 1``, none missing, broadcastable to one input row (see
        :mod:`agnostic_explain.masks` for grids, superpixels and column groups), or of shape
        ``(n_rows, ...)`` with one mask per explained row (each row's ids none missing).
        None makes every element its own group.
    baseline : float, array_like, "mean" or "blur", default 0.0
        Replacement values: a scalar; an array broadcastable to one row or to ``x``; each
        row's mean; or a Gaussian blur of the row (see :class:`Occlusion`).

    Notes
    -----
    ``Explanation.extras["group_values"]`` holds the group attributions, ndarray of shape
    (n_rows, n_groups) (zero for a group a per-row mask lacks in that row), and
    ``extras["feature_mask"]`` the validated mask, shaped like one row, when it is shared.

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> from agnostic_explain.explainers.ablation import FeatureAblation
    >>> from agnostic_explain.masks import grid
    >>> images, labels = load_samples()
    >>> mask = grid((8, 8), 4)  # four 4x4 quadrants, shared by the channel
    >>> explanation = FeatureAblation(DEFAULT_MODEL_PATH, feature_mask=mask).explain(images[:2])
    >>> explanation.values.shape, explanation.extras["group_values"].shape, explanation.n_evals
    ((2, 1, 8, 8), (2, 4), 10)
    """

    method = "feature_ablation"
    row_kinds = ("tabular", "image", "tokens")

    def __init__(self, model, feature_mask=None, baseline=0.0):
        super().__init__(model)
        self.feature_mask = feature_mask
        self.baseline = baseline

    def _params(self) -> dict:
        baseline = recorded(self.baseline)
        mask = recorded(self.feature_mask)
        return {"feature_mask": mask, "baseline": baseline}

    def _check(self, rows: np.ndarray) -> tuple:
        """The group mask, whether every row shares it, and the baseline rows."""
        return (*row_masks(self.feature_mask, rows), baseline_rows(self.baseline, rows))

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        n_rows = len(rows)
        mask, shared, baseline = problem.checked
        # A per-row mask may give rows different group counts: evaluate only the groups a row has.
        counts = np.full(n_rows, masks.n_groups(mask)) if shared else mask.reshape(n_rows, -1).max(axis=1) + 1
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        total = int(counts.sum())
        owners = np.repeat(np.arange(n_rows), counts)
        groups = np.arange(total) - starts[owners]
        n_groups = int(counts.max())

        def make_rows(start: int, stop: int) -> np.ndarray:
            own, ablated = owners[start:stop], groups[start:stop]
            if shared:
                keep = np.ones((stop - start, n_groups), dtype=bool)
                keep[np.arange(stop - start), ablated] = False
                return masks.compose(rows[own], baseline[own], mask, keep)
            hit = mask[own] == ablated.reshape((-1,) + (1,) * (rows.ndim - 1))
            return np.where(hit, baseline[own], rows[own])

        def compact(start: int, stop: int) -> dict:
            own = owners[start:stop]
            keep = np.ones((stop - start, n_groups), dtype=bool)
            keep[np.arange(stop - start), groups[start:stop]] = False
            found = {"keep": keep, "fill_index": fill_index(baseline.strides[0] == 0, own)}
            return found if shared else dict(found, segment_index=own)

        def blend() -> Blend:
            return Blend("groups" if shared else "groups_per_row", fill_rows(baseline)[0], compact, segments=mask)

        scores = problem.evaluate(total, make_rows, owners, desc="feature ablation", blend=blend)
        group_values = np.zeros((n_rows, n_groups), dtype=np.float64)
        group_values[owners, groups] = problem.base_values[owners].astype(np.float64) - scores
        if shared:
            values = group_values[:, mask]
            problem.extras["feature_mask"] = np.ascontiguousarray(mask)
        else:
            flat = mask.reshape(n_rows, -1)
            values = np.take_along_axis(group_values, flat, axis=1).reshape(rows.shape)
        problem.extras["group_values"] = group_values
        return values.astype(np.float32)


def row_masks(feature_mask, rows: np.ndarray) -> tuple[np.ndarray, bool]:
    """The validated mask and whether one mask is shared by all rows.

    Returns
    -------
    mask : ndarray of int64
        Of shape ``rows.shape[1:]`` when shared, else ``rows.shape`` (one mask per row).
    shared : bool

    Raises
    ------
    ParameterError
        For a non-integer mask, one that broadcasts neither to one row nor to the rows, or
        ids that are not ``0 .. n_groups - 1`` with none missing.
    """
    row_shape = rows.shape[1:]
    if feature_mask is None:
        return masks.one_per_element(row_shape), True
    mask = np.asarray(feature_mask)
    if mask.ndim != rows.ndim or mask.shape[0] == 1:
        if mask.ndim == rows.ndim:
            mask = mask[0]
        return masks.validate(mask, row_shape), True
    if not np.issubdtype(mask.dtype, np.integer):
        raise ParameterError(f"feature_mask must hold integer group ids, got dtype {mask.dtype}")
    if mask.shape[0] != len(rows):
        raise ParameterError(
            f"feature_mask of shape {mask.shape} has {mask.shape[0]} masks on its first axis; expected a "
            f"mask broadcastable to one input row {row_shape}, or 1 or {len(rows)} masks (one per row)"
        )
    try:
        mask = np.broadcast_to(mask, rows.shape)
    except ValueError:
        raise ParameterError(
            f"feature_mask of shape {np.shape(feature_mask)} does not broadcast to the rows {rows.shape}"
        ) from None
    ordered = np.sort(mask.reshape(len(rows), -1), axis=1)
    gaps = np.diff(ordered, axis=1) > 1
    bad = np.flatnonzero((ordered[:, 0] != 0) | gaps.any(axis=1))
    if len(bad):
        row = int(bad[0])
        raise ParameterError(
            f"feature_mask ids must be 0 .. n_groups - 1 with none missing in each row; row {row} has ids "
            f"from {ordered[row, 0]} to {ordered[row, -1]} with {len(np.unique(ordered[row]))} distinct"
        )
    return mask.astype(np.int64, copy=False), False
