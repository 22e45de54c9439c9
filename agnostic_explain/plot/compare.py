"""Several explanations of one input side by side: the input once, then one overlay per method."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .image import draw_overlay, heat_and_picture, heat_map, is_saliency, new_figure, outline_text, show_picture, target_text
from .scale import SALIENCY_METHODS, colour_scale

__all__ = ["compare"]


def compare(explanations, index=0, *, names=None, ncols=None, signed=True, shared_scale=False, alpha=0.6,
            cmap=None, colorbar=True, top_k=None, preprocessing=None):
    """The input un-normalised, then each explanation's overlay of it, in one figure.

    Parameters
    ----------
    explanations : sequence of Explanation
        Explanations of the same input rows (by different methods or settings).
    index : int
        The row to draw.
    names : sequence of str, optional
        Panel titles; by default each explanation's ``method``.
    ncols : int, optional
        Panels per row of the figure; by default all in one row up to 4 panels.
    signed, alpha, cmap, colorbar, top_k, preprocessing
        As for :func:`~agnostic_explain.plot.image_overlay`.
    shared_scale : bool
        One colour scale and colorbar for all overlays, chosen by the rule of
        :mod:`~agnostic_explain.plot.scale` over all their values (meaningful only when the
        values have the same units, e.g. one method at several settings); by default each
        overlay has its own, so that saliency (RISE, CAMs) spans its own range beside signed
        attributions centred on zero.

    Returns
    -------
    matplotlib.figure.Figure
        A headless figure with ``len(explanations) + 1`` image axes; the target's label and
        score are in its suptitle, or in each panel's title when the explanations' targets
        differ. Save it with ``figure.savefig(path)``.

    Raises
    ------
    ParameterError
        No explanations, ``names`` of another length, explanations of different numbers of
        rows, an ``index`` out of range, or rows whose inputs differ.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> occlusion = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
    >>> cam = ae.AblationCam(DEFAULT_MODEL_PATH).explain(images[:2])
    >>> figure = compare([occlusion, cam], index=1, top_k=10)
    >>> [ax.get_title() for ax in figure.axes if ax.images]
    ['input', 'occlusion', 'ablation_cam']
    """
    explanations = list(explanations)
    names = _check(explanations, index, names)
    if ncols is None:
        ncols = min(len(explanations) + 1, 4)
    if not isinstance(ncols, int) or isinstance(ncols, bool) or ncols < 1:
        raise ParameterError(f"ncols must be a positive int or None, got {ncols!r}")
    rows = [explanation[index] for explanation in explanations]
    heats = [heat_map(row, preprocessing) for row in rows]
    scale = None
    if shared_scale:  # one colormap and range, so that the one colorbar reads every panel
        scale = colour_scale([heat if signed else np.abs(heat) for heat in heats],
                             method=[row.method for row in rows], signed=signed, cmap=cmap)

    panels = len(explanations) + 1
    ncols = min(ncols, panels)
    nrows = math.ceil(panels / ncols)
    figure = new_figure((3.3 * ncols, 3.2 * nrows + 0.3))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    show_picture(axes[0], heat_and_picture(rows[0], preprocessing)[1])
    axes[0].set_title("input", fontsize="medium")

    texts = [target_text(row) for row in rows]
    same_target = len(set(texts)) == 1
    for ax, row, name, text in zip(axes[1:], rows, names, texts):
        draw_overlay(
            row, 0, ax=ax, signed=signed, alpha=alpha, cmap=cmap, colorbar=colorbar and not shared_scale,
            title=False, top_k=top_k, preprocessing=preprocessing, scale=scale,
        )
        ax.set_title(name if same_target else f"{name}\n{text}", fontsize="medium")
    if colorbar and shared_scale:
        figure.colorbar(axes[1].images[-1], ax=list(axes[1:panels]), fraction=0.046 / ncols, pad=0.02,
                        label=scale.label)
    for ax in axes[[0, *range(panels, len(axes))]]:
        ax.set_axis_off()
    saliency = [is_saliency(scale) if scale else signed and row.method in SALIENCY_METHODS for row in rows]
    outline = None if top_k is None else " / ".join(
        dict.fromkeys(outline_text(top_k, signed, each, noun=True) for each in saliency))
    figure.suptitle(_headline(index, texts[0] if same_target else None, outline), fontsize="medium")
    return figure


def _check(explanations, index, names) -> list:
    """Validate the explanations against each other; returns the panel names."""
    if not explanations:
        raise ParameterError("explanations: expected a non-empty list of Explanations, got none")
    lengths = [len(explanation) for explanation in explanations]
    if len(set(lengths)) != 1:
        raise ParameterError(f"explanations must cover the same input rows; their numbers of rows differ: {lengths}")
    if not isinstance(index, (int, np.integer)) or not -lengths[0] <= index < lengths[0]:
        raise ParameterError(f"index={index!r} is out of range for explanations of {lengths[0]} rows")
    first = np.asarray(explanations[0].data[index])
    for position, explanation in enumerate(explanations[1:], start=1):
        data = np.asarray(explanation.data[index])
        if data.shape != first.shape or not np.allclose(data, first, rtol=1e-5, atol=1e-6):
            raise ParameterError(
                f"explanations[{position}] ({explanation.method}) explains another input at row {index} than "
                f"explanations[0] ({explanations[0].method}); compare takes explanations of the same inputs"
            )
    if names is None:
        return [explanation.method for explanation in explanations]
    names = [str(name) for name in names]
    if len(names) != len(explanations):
        raise ParameterError(f"names: expected {len(explanations)} names, one per explanation, got {len(names)}")
    return names


def _headline(index, text, outline) -> str:
    parts = [f"row {index}"] + ([text] if text else [])
    if outline is not None:
        parts.append(f"outline: {outline}")
    return " | ".join(parts)
