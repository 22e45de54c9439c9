"""Attribution heatmaps over the explained images: one overlay, or a grid of them."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError

__all__ = ["image_grid", "image_overlay"]

_CHANNELS = (1, 3, 4)


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
    preprocessing=None,
):
    """Draw one row's attributions over its input image.

    Attributions are summed over the channel axis. The input is shown in grayscale or RGB,
    un-normalised with ``preprocessing`` (``mean``/``std``, as in a model's preprocessing
    metadata) when known, otherwise min-max scaled for display.

    Parameters
    ----------
    explanation : Explanation
        Rows of shape (H, W), (C, H, W) or (H, W, C); a 1-D row is drawn as a strip.
    index : int
        The row to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure (save it with ``ax.figure.savefig``).
    signed : bool
        True: diverging colormap centred on zero (white), limits symmetric. False: the
        absolute value of the channel sum on a sequential colormap.
    alpha : float
        Opacity of the heatmap over the image.
    cmap : str, optional
        Colormap; "RdBu_r" when signed, "Reds" otherwise.
    colorbar, title : bool
        Add a colorbar; title the axes with the target's label name and the base value.
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
    >>> ax = image_overlay(explanation)
    >>> ax.images[-1].get_clim()[0] == -ax.images[-1].get_clim()[1]
    True
    """
    row = explanation[index]
    values, data = np.asarray(row.values[0], dtype=np.float64), np.asarray(row.data[0])
    if preprocessing is None:
        preprocessing = explanation.preprocessing or {}
    channel_axis = _channel_axis(values.shape, preprocessing.get("layout"))
    heat = values.sum(axis=channel_axis) if channel_axis is not None else values
    picture = _display_image(data, channel_axis, preprocessing)
    if heat.ndim == 1:
        heat = heat[None, :]
    if ax is None:
        ax = new_figure((4.0, 3.4)).add_subplot()
    if picture.ndim == 2:
        ax.imshow(picture, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(picture, interpolation="nearest")
    if signed:
        limit = float(np.max(np.abs(heat))) or 1.0
        low, high, cmap = -limit, limit, cmap or "RdBu_r"
    else:
        heat = np.abs(heat)
        low, high, cmap = 0.0, float(np.max(heat)) or 1.0, cmap or "Reds"
    overlay = ax.imshow(heat, cmap=cmap, vmin=low, vmax=high, alpha=alpha, interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(_title(row), fontsize="medium")
    ax.set_axis_off()
    return ax


def image_grid(explanation, indices=None, ncols=4, **kwargs):
    """Overlays of several rows in a grid; keyword arguments go to :func:`image_overlay`.

    Parameters
    ----------
    explanation : Explanation
    indices : sequence of int, optional
        The rows to draw; by default all.
    ncols : int
        Columns of the grid (fewer when there are fewer rows).

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


def _channel_axis(row_shape: tuple, layout) -> int | None:
    """The channel axis of a row: none for 1-D and 2-D rows, else by layout or by size."""
    if len(row_shape) < 3:
        return None
    if len(row_shape) > 3:
        raise ParameterError(
            f"image plots take rows of shape (H, W), (C, H, W) or (H, W, C), got {row_shape}"
        )
    layout = str(layout).lower() if layout else None
    if layout == "nhwc" or (layout != "nchw" and row_shape[0] not in _CHANNELS and row_shape[2] in _CHANNELS):
        return 2
    return 0


def _display_image(data: np.ndarray, channel_axis: int | None, preprocessing: dict) -> np.ndarray:
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


def _title(row) -> str:
    names = row.target_names
    if names:
        label = names[0]
    elif row.target is not None:
        label = str(np.asarray(row.target[0]).tolist())
    else:
        label = "custom target"
    return f"{label} (base value {float(row.base_values[0]):.4g})"
