"""Attribution heatmaps over the explained images: one overlay, or a grid of them."""

from __future__ import annotations

import math
from numbers import Real

import numpy as np

from ..errors import ParameterError
from ..layout import channel_axis, heat_map
from .scale import ColourScale, colour_scale
from .wording import target_text

__all__ = ["TOP_K", "image_grid", "image_overlay"]

#: the outline the report and the CLI's heatmap.png draw: the top 10% of the map
TOP_K = 10

_PROBABILITIES = ("softmax", "sigmoid")
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def image_overlay(
    explanation,
    index=0,
    *,
    ax=None,
    signed=True,
    alpha=0.6,
    cmap=None,
    colorbar=True,
    title=True,
    top_k=None,
    preprocessing=None,
):
    """Draw one row's attributions over its input image.

    Attributions are summed over the channel axis; a map with one channel (Ablation-CAM's
    (1, H, W) or (H, W, 1) over RGB rows) is drawn as is. The input is shown in grayscale or
    RGB, un-normalised with ``preprocessing`` (``mean``/``std``, as in a model's preprocessing
    metadata) when known, otherwise min-max scaled for display. Image and heatmap share one
    pixel grid, row 0 at the top, as the input array is laid out.

    Parameters
    ----------
    explanation : Explanation
        Rows of shape (H, W), (C, H, W) or (H, W, C), with values of the same shape or with
        one channel; a 1-D row is drawn as a strip.
    index : int
        The row to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure (save it with ``ax.figure.savefig``).
    signed : bool
        True: the colour scale follows the map (:mod:`~agnostic_explain.plot.scale`). Values
        on both sides of zero get a diverging colormap centred on zero (white), limits
        symmetric, red positive and blue negative. Saliency maps (RISE, Score-CAM,
        Ablation-CAM) get a sequential colormap over their own range, min to max; other maps
        of one sign a sequential one from zero, or over their own range when a common offset
        dominates them. False: the absolute value of the channel sum, sequential colormap.
    alpha : float
        Opacity of the heatmap at the strong end of the scale; it fades with the square root
        of the value's position on the scale (|value| / limit when diverging), so the image
        (in grayscale) shows where values are near zero, or near the map's minimum.
    cmap : str, optional
        Colormap; "RdBu_r" when diverging, "Reds" when sequential ("Blues_r" for a negative map).
    colorbar, title : bool
        Add a colorbar, labelled with what it shows ("attribution (signed)", "saliency",
        "|attribution|" ...); title the axes with the target's label name and its score at the
        input ("p = 0.78" for a softmax or sigmoid output, "logit 9.23" for a class index
        without one, "score ..." for a custom target).
    top_k : float, optional
        A percentage in (0, 100]: outline the region holding the ``top_k`` % highest
        attributions (positive ones when ``signed``, absolute values otherwise, the highest
        values of a saliency map; ties at the threshold included, zeros never but in a
        saliency map).
    preprocessing : dict, optional
        ``{"layout": "nchw"|"nhwc", "mean": [...], "std": [...]}``; by default
        ``explanation.preprocessing`` (the model's preprocessing metadata) when present.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:1])
    >>> ax = image_overlay(explanation, top_k=10)
    >>> ax.images[-1].get_clim()[0] == -ax.images[-1].get_clim()[1], ax.get_title().startswith("0 (logit")
    (True, True)
    >>> ax.figure.axes[-1].get_ylabel()
    'attribution (signed)'
    """
    return draw_overlay(
        explanation, index, ax=ax, signed=signed, alpha=alpha, cmap=cmap, colorbar=colorbar,
        title=title, top_k=top_k, preprocessing=preprocessing,
    )


def image_grid(explanation, indices=None, ncols=4, **kwargs):
    """Overlays of several rows in a grid; keyword arguments go to :func:`image_overlay`.

    Parameters
    ----------
    explanation : Explanation
    indices : sequence of int, optional
        The rows to draw; by default all.
    ncols : int
        Columns of the grid (fewer when there are fewer rows).
    **kwargs
        ``signed``, ``alpha``, ``cmap``, ``colorbar``, ``title``, ``top_k``, ``preprocessing``.

    Returns
    -------
    matplotlib.figure.Figure
        A headless figure; save it with ``figure.savefig(path)``.
    """
    if "ax" in kwargs:
        raise ParameterError("image_grid draws its own axes; pass ax to image_overlay instead")
    indices = list(range(len(explanation))) if indices is None else list(indices)
    if not indices:
        raise ParameterError("indices: no rows to draw")
    if not isinstance(ncols, int) or ncols < 1:
        raise ParameterError(f"ncols must be a positive int, got {ncols!r}")
    ncols = min(ncols, len(indices))
    nrows = math.ceil(len(indices) / ncols)
    figure = new_figure((3.4 * ncols, 3.0 * nrows))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, index in zip(axes, indices):
        image_overlay(explanation, index, ax=ax, **kwargs)
    for ax in axes[len(indices):]:
        ax.set_axis_off()
    return figure


def new_figure(figsize):
    """A Figure on its own Agg canvas: headless, and independent of pyplot's backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def draw_overlay(explanation, index, *, ax, signed, alpha, cmap, colorbar, title, top_k, preprocessing,
                 scale=None):
    """:func:`image_overlay`, with the colour scale fixed by ``scale`` when given.

    ``compare`` fixes it so that panels sharing one colorbar share one colormap and range.
    """
    top_k = _check_top_k(top_k)
    if isinstance(alpha, bool) or not isinstance(alpha, Real) or not 0 <= alpha <= 1:
        raise ParameterError(f"alpha must be a number in [0, 1], got {alpha!r}")
    row = explanation[index]
    heat, picture = heat_and_picture(row, preprocessing)
    if ax is None:
        ax = new_figure((4.0, 3.4)).add_subplot()
    # Gray under the heatmap, so that every hue on the axes is the heatmap's.
    show_picture(ax, picture if picture.ndim == 2 else picture @ _LUMA)
    if not signed:
        heat = np.abs(heat)
    if scale is None:
        scale = colour_scale([heat], method=row.method, signed=signed, cmap=cmap)
    # Opacity grows with the position on the scale (square root, to keep moderate values
    # visible), so that the image shows through where attributions are near zero (or a
    # saliency near its minimum) instead of under a veil of one colour.
    opacity = alpha * np.sqrt(scale.intensity(heat))
    overlay = ax.imshow(heat, cmap=scale.cmap, vmin=scale.low, vmax=scale.high, alpha=opacity, **_grid(heat.shape))
    if top_k is not None:
        outline_top(ax, heat, top_k, positive=not is_saliency(scale))
    if colorbar:
        ax.figure.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04, label=scale.label)
    if title:
        text = target_text(row)
        if top_k is not None:
            text += f"\noutline: {outline_text(top_k, signed, is_saliency(scale))}"
        ax.set_title(text, fontsize="medium")
    ax.set_axis_off()
    return ax


def heat_and_picture(row, preprocessing=None) -> tuple[np.ndarray, np.ndarray]:
    """One row's :func:`heat_map` and its input for display, (H, W) or (H, W, 3)."""
    if preprocessing is None:
        preprocessing = row.preprocessing or {}
    data = np.asarray(row.data[0])
    axis = channel_axis(data.shape, preprocessing.get("layout"))
    if axis is None and data.ndim == 3:
        axis = 0  # as heat_map draws it
    picture = display_image(data, axis, preprocessing)
    return heat_map(row, preprocessing), picture


def is_saliency(scale: ColourScale) -> bool:
    """Whether a scale draws a saliency map, whose highest values (of any sign) are outlined."""
    return scale.label == "saliency"


def outline_text(top_k: float, signed: bool, saliency: bool, noun: bool = False) -> str:
    """What the top-k outline holds, as titles write it: "top 10% positive" (+ " attribution" with ``noun``)."""
    what = "saliency" if saliency else ("positive" + (" attribution" if noun else "") if signed else "|attribution|")
    return f"top {float(top_k):g}% {what}"


def show_picture(ax, picture: np.ndarray):
    """Draw the display image on the pixel grid the heatmap uses."""
    if picture.ndim == 2:
        return ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, **_grid(picture.shape))
    return ax.imshow(picture, **_grid(picture.shape))


def outline_top(ax, heat: np.ndarray, top_k: float, positive: bool = True):
    """Contour around the pixels holding the ``top_k`` % largest (positive, when ``positive``) values of ``heat``.

    Returns the ContourSet, or None when no value qualifies.
    """
    import matplotlib.patheffects as effects

    mask = top_mask(heat, top_k, positive)
    if not mask.any():
        return None
    height, width = heat.shape
    # The 0.5 level of the interpolated mask runs midway between pixel centres inside and
    # outside; on a mask upsampled ``scale`` times that is the pixel edges, corners cut by
    # under 1/(2 scale) pixel. A zero border closes regions that touch the image's edge.
    scale = min(16, max(1, math.ceil(128 / min(height, width))))
    fine = np.pad(np.kron(mask, np.ones((scale, scale))), 1)
    margin = 0.5 + 1.0 / scale
    contours = ax.contour(
        fine, levels=[0.5], colors="black", linewidths=1.4, origin="upper",
        extent=(-margin, width - 1 + margin, height - 1 + margin, -margin),
    )
    contours.set(path_effects=[effects.withStroke(linewidth=3.2, foreground="white")])
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    return contours


def top_mask(heat: np.ndarray, top_k: float, positive: bool = True) -> np.ndarray:
    """Boolean mask of the ``top_k`` % largest (positive) values (ties at the threshold included)."""
    flat = np.sort(heat.ravel())[::-1]
    count = max(1, int(round(top_k / 100.0 * flat.size)))
    mask = heat >= flat[count - 1]
    if positive:
        return mask & (heat > 0)
    return mask if flat[0] > flat[-1] else np.zeros_like(mask)  # a flat map has no top


def _grid(shape: tuple) -> dict:
    """imshow settings that put pixel (0, 0) at the top left with unit pixels, whatever rcParams say."""
    height, width = shape[:2]
    return {"origin": "upper", "extent": (-0.5, width - 0.5, height - 0.5, -0.5), "interpolation": "nearest"}


def _check_top_k(top_k):
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, Real) or not 0 < top_k <= 100:
        raise ParameterError(f"top_k must be a percentage in (0, 100] or None, got {top_k!r}")
    return float(top_k)


def display_image(data: np.ndarray, channel_axis: int | None, preprocessing: dict) -> np.ndarray:
    """The input as (H, W) gray or (H, W, 3) RGB values in [0, 1]."""
    image = data.astype(np.float64)
    if image.ndim == 1:
        image = image[None, :]
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, -1)
        image = _unnormalise(image, preprocessing)
        channels = image.shape[-1]
        image = image[..., 0] if channels == 1 else (image[..., :3] if channels in (3, 4) else image.mean(axis=-1))
    else:
        image = _unnormalise(image[..., None], preprocessing)[..., 0]
    low, high = float(image.min()), float(image.max())
    if low >= -0.01 and high <= 1.01:
        return np.clip(image, 0.0, 1.0)
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _unnormalise(image: np.ndarray, preprocessing: dict) -> np.ndarray:
    """Undo ``(x - mean) / std`` along the last (channel) axis, where the sizes fit."""
    channels = image.shape[-1]
    factors = {}
    for name, default in (("std", 1.0), ("mean", 0.0)):
        values = np.atleast_1d(np.asarray(preprocessing.get(name, default), dtype=np.float64))
        if values.size not in (1, channels):
            return image  # preprocessing of another input: display as is
        factors[name] = values
    return image * factors["std"] + factors["mean"]
