"""LIME for images: superpixels switched on and off, as lime's ``LimeImageExplainer``."""

from __future__ import annotations

import numpy as np

from ..perturbation import masks
from ..errors import ParameterError
from ..layout import channel_axis
from ..runtime.fused import Blend
from ..perturbation.baselines import fill_values
from ..perturbation.surrogates import fit_local, lime_kernel
from .base import Explainer, Problem, recorded
from .lime_tabular import check_lime_params

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")


class LimeImage(Explainer):
    """Local surrogate explanations of images over superpixels (Ribeiro et al. 2016).

    Each explained image is cut into superpixels; ``num_samples`` binary vectors
    ``z in {0, 1}^G`` (uniform, the first all ones) switch superpixels on (kept) or off
    (filled with ``hide_color``). Samples are weighted by ``sqrt(exp(-d**2 / 0.25**2))`` with
    ``d`` the cosine distance between ``z`` and all-ones, and a weighted ridge (``alpha=1``) is
    fitted on ``z`` per image, all images at once. Every pixel of a superpixel gets that
    superpixel's coefficient.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
    segmentation : str, callable or array_like, default "quickshift"
        ``"quickshift"`` (lime's parameters), ``"slic"`` or ``"felzenszwalb"`` through
        :func:`agnostic_explain.masks.superpixels`; ``f(image) -> ndarray (H, W)`` called on
        each row in the model's layout; or integer segments of shape (H, W) shared by all
        rows, or (n_rows, H, W).
    hide_color : None, float or array_like, default None
        The fill of switched-off superpixels: None fills each with its mean colour (per
        channel), as lime does; otherwise a value (or one per channel) broadcast to a row.
    num_samples : int, default 1000
    kernel_width : float, default 0.25
    feature_selection, num_features
        As :class:`LimeTabular`; ``num_features=None`` (default) keeps every superpixel.
    channel_axis : int, optional
        The channel axis of a 3-D row; by default the first axis of size 1, 3 or 4 (CHW),
        else the last (HWC). A 2-D row has none.
    regressor : scikit-learn regressor, optional
    alpha : float, default 1.0

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> model = ae.CallableModel(lambda rows: rows[:, :, :2, :2].mean(axis=(1, 2, 3))[:, None])
    >>> images = np.random.default_rng(0).random((1, 3, 4, 4)).astype(np.float32)
    >>> explanation = LimeImage(model, segmentation=masks.grid((4, 4), 2), num_samples=64).explain(images, target=0)
    >>> int(np.argmax(explanation.extras["group_values"][0]))
    0
    """

    method = "lime_image"
    row_kinds = ("image",)

    def __init__(
        self,
        model,
        segmentation="quickshift",
        *,
        hide_color=None,
        num_samples=1000,
        kernel_width=0.25,
        feature_selection="auto",
        num_features=None,
        channel_axis=None,
        regressor=None,
        alpha=1.0,
    ):
        super().__init__(model)
        self.segmentation = segmentation
        self.hide_color = hide_color
        self.num_samples = num_samples
        self.kernel_width = kernel_width
        self.feature_selection = feature_selection
        self.num_features = num_features
        self.channel_axis = channel_axis
        self.regressor = regressor
        self.alpha = alpha

    def _params(self) -> dict:
        segmentation = self.segmentation
        if callable(segmentation):
            segmentation = f"callable {getattr(segmentation, '__name__', 'segmentation')}"
        else:
            segmentation = recorded(segmentation)
        hide = self.hide_color
        if hide is not None:
            hide = float(hide) if np.ndim(hide) == 0 else np.asarray(hide, dtype=float).tolist()
        return {
            "segmentation": segmentation, "hide_color": hide, "num_samples": self.num_samples,
            "kernel_width": self.kernel_width, "feature_selection": self.feature_selection,
            "num_features": self.num_features, "channel_axis": self.channel_axis,
            "regressor": None if self.regressor is None else type(self.regressor).__name__, "alpha": self.alpha,
        }

    def _check(self, rows: np.ndarray) -> int | None:
        """The channel axis of the rows."""
        check_lime_params(self.num_samples, self.feature_selection, self.num_features, self.kernel_width, self.alpha,
                          n_rows=len(rows))
        channel = _channel_axis(rows.shape[1:], self.channel_axis, self.model.layout)
        plane = tuple(size for axis, size in enumerate(rows.shape[1:]) if axis != channel)
        if isinstance(self.segmentation, str) and self.segmentation not in SEGMENTATIONS:
            raise ParameterError(f"segmentation must be one of {SEGMENTATIONS}, a callable or an array, got {self.segmentation!r}")
        if not isinstance(self.segmentation, str) and not callable(self.segmentation):
            given = np.asarray(self.segmentation)
            if given.shape not in (plane, (len(rows),) + plane):
                raise ParameterError(
                    f"segmentation of shape {given.shape} must have shape {plane} or {(len(rows),) + plane} "
                    f"(the image plane of rows of shape {rows.shape[1:]})"
                )
        if self.hide_color is not None:
            try:
                np.broadcast_to(np.asarray(self.hide_color, dtype=np.float64), rows.shape[1:])
            except (ValueError, TypeError):
                raise ParameterError(f"hide_color must be None or broadcast to one row {rows.shape[1:]}, got {self.hide_color!r}") from None
            fill_values(self.hide_color, rows.dtype, "hide_color")
        return channel

    def _segments(self, rows: np.ndarray, channel: int | None) -> np.ndarray:
        if isinstance(self.segmentation, str) or callable(self.segmentation):
            found = []
            for row in rows:  # segmentation algorithms take one image
                if callable(self.segmentation):
                    found.append(np.asarray(self.segmentation(row)))
                else:
                    found.append(masks.superpixels(row, self.segmentation, channel_axis=-1 if channel is None else channel))
            segments = np.stack(found)
        else:
            segments = np.asarray(self.segmentation)
        plane = tuple(size for axis, size in enumerate(rows.shape[1:]) if axis != channel)
        segments = np.broadcast_to(segments, (len(rows),) + plane)
        return np.stack([masks.validate(s, plane, parameter="segmentation") for s in segments])

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        channel = problem.checked
        segments = self._segments(rows, channel)
        n_rows, n_samples = len(rows), int(self.num_samples)
        counts = segments.reshape(n_rows, -1).max(axis=1) + 1
        n_max = int(counts.max())
        # segments expanded over the channel axis, so that masks.compose sees a row-shaped mask
        row_masks = segments if channel is None else np.expand_dims(segments, channel + 1)
        fills = _fills(rows, segments, row_masks, channel, self.hide_color)

        z = problem.rng.integers(0, 2, size=(n_rows, n_samples, n_max)).astype(bool)
        z[:, 0] = True
        z[np.broadcast_to(np.arange(n_max) >= counts[:, None, None], z.shape)] = True  # padding stays on
        y = problem.evaluate(
            n_rows * n_samples,
            lambda a, b: _compose_range(rows, fills, row_masks, z, a, b),
            np.repeat(np.arange(n_rows), n_samples),
            desc="lime",
            blend=lambda: _blend(rows, fills, row_masks, z),
        ).reshape(n_rows, n_samples)
        distances = binary_cosine_distance(z, counts)
        fit = fit_local(
            z.astype(np.float64), y, lime_kernel(distances, float(self.kernel_width)),
            num_features=self.num_features, feature_selection=self.feature_selection,
            regressor=self.regressor, alpha=float(self.alpha), n_columns=counts,
        )
        coef = fit["coef"]
        coef[np.arange(n_max)[None, :] >= counts[:, None]] = 0.0
        values = np.take_along_axis(coef, segments.reshape(n_rows, -1), axis=1).reshape(segments.shape)
        if channel is not None:
            values = np.broadcast_to(np.expand_dims(values, channel + 1), rows.shape)
        problem.extras.update(
            intercept=fit["intercept"], score=fit["score"], local_prediction=fit["local_prediction"],
            group_values=coef.astype(np.float32), n_groups=counts, segments=segments,
        )
        return np.ascontiguousarray(values, dtype=np.float32)


def binary_cosine_distance(z: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cosine distance between binary samples and the all-ones vector of their row.

    ``z`` of shape (n_rows, n_samples, n_max) with padding columns beyond ``counts[r]`` set
    to ones; returns (n_rows, n_samples). An all-zero sample has distance 1, as in
    scikit-learn's ``pairwise_distances(metric="cosine")``.
    """
    kept = z.sum(axis=2) - (z.shape[2] - counts)[:, None]
    return 1.0 - np.sqrt(kept / counts[:, None])


def _channel_axis(row_shape: tuple, requested, layout) -> int | None:
    if len(row_shape) == 2:
        if requested is not None:
            raise ParameterError(f"channel_axis={requested!r}, but rows of shape {row_shape} have no channel axis")
        return None
    if len(row_shape) != 3:
        raise ParameterError(f"LimeImage explains rows of shape (C, H, W), (H, W, C) or (H, W); got {row_shape}")
    if requested is None:
        found = channel_axis(row_shape, layout)
        if found is None:
            raise ParameterError(
                f"channel_axis: rows of shape {row_shape} have no axis of 1, 3 or 4 channels at either end, and "
                "the model declares no layout; pass channel_axis=0 or 2"
            )
        return found
    if requested not in (0, 2, -1):
        raise ParameterError(f"channel_axis must be 0, 2 or -1 for rows of shape {row_shape}, got {requested!r}")
    return requested % 3


def _fills(rows, segments, row_masks, channel, hide_color) -> np.ndarray:
    """Fill rows, shape of ``rows``: each superpixel's mean colour, or ``hide_color``."""
    if hide_color is not None:
        return np.broadcast_to(np.asarray(hide_color, dtype=np.float64).astype(rows.dtype), rows.shape)
    n_rows = len(rows)
    flat_segments = segments.reshape(n_rows, -1)
    n_max = int(flat_segments.max()) + 1
    offsets = (np.arange(n_rows) * n_max)[:, None]
    ids = (flat_segments + offsets).ravel()
    sizes = np.bincount(ids, minlength=n_rows * n_max)
    pixels = rows.astype(np.float64) if channel is None else np.moveaxis(rows, channel + 1, 1).astype(np.float64)
    pixels = pixels.reshape(n_rows, -1, flat_segments.shape[1]) if channel is not None else pixels.reshape(n_rows, 1, -1)
    fills = np.empty(pixels.shape)
    for c in range(pixels.shape[1]):  # a few channels; bincount does the per-segment means
        sums = np.bincount(ids, weights=pixels[:, c].ravel(), minlength=n_rows * n_max)
        means = (sums / np.maximum(sizes, 1)).reshape(n_rows, n_max)
        fills[:, c] = np.take_along_axis(means, flat_segments, axis=1)
    if channel is None:
        return fills.reshape(rows.shape).astype(rows.dtype)
    fills = fills.reshape((n_rows, -1) + segments.shape[1:])
    return np.moveaxis(fills, 1, channel + 1).astype(rows.dtype)


def _blend(rows, fills, row_masks, z) -> Blend:
    """The samples as superpixel on/off flags per explained row, for a fused graph."""
    n_samples = z.shape[1]

    def compact(start: int, stop: int) -> dict:
        owners, samples = np.divmod(np.arange(start, stop), n_samples)
        return {"keep": z[owners, samples], "fill_index": owners, "segment_index": owners}

    segments = np.ascontiguousarray(np.broadcast_to(row_masks, rows.shape), dtype=np.int64)
    return Blend("groups_per_row", np.ascontiguousarray(fills), compact, segments=segments)


def _compose_range(rows, fills, row_masks, z, start, stop) -> np.ndarray:
    """Perturbed rows ``start .. stop`` (flat index ``row * n_samples + sample``)."""
    n_samples = z.shape[1]
    pieces = []
    index = start
    while index < stop:  # one masks.compose per explained row the range touches
        owner, first = divmod(index, n_samples)
        last = min(n_samples, first + stop - index)
        pieces.append(masks.compose(rows[owner], fills[owner], row_masks[owner], z[owner, first:last]))
        index += last - first
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
