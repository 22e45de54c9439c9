"""Figures of recorded activations: a PCA embedding, one layer's channel maps, an input's path."""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .image import display_image, new_figure

__all__ = ["activation_maps", "embedding_plot", "trajectory"]

#: channels drawn by activation_maps when none are named
MAX_MAPS = 32
#: channel maps in the strip of trajectory; more layers are sampled evenly
MAX_STRIP = 10


def embedding_plot(embedding, *, color_by=None, ax=None):
    """Scatter an :class:`~agnostic_explain.activation_stats.Embedding`, one colour per class.

    With labels and predictions both known, misclassified rows are ringed in black.

    Parameters
    ----------
    embedding : Embedding
        From :meth:`LayerActivations.embedding`; its first two components are drawn.
    color_by : "label", "prediction" or None
        Colour by the labels given, or by the model's predictions; None picks the labels
        when there are any.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from agnostic_explain.activations import LayerActivations
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, labels = load_samples()
    >>> found = LayerActivations(DEFAULT_MODEL_PATH).embedding(images, "/relu3/Relu_output_0", labels=labels)
    >>> embedding_plot(found).get_xlabel().startswith("PC1 (")
    True
    """
    if color_by not in (None, "label", "prediction"):
        raise ParameterError(f"color_by must be 'label', 'prediction' or None, got {color_by!r}")
    if color_by is None:
        color_by = "label" if embedding.labels is not None else "prediction"
    classes = embedding.labels if color_by == "label" else embedding.predictions
    if classes is None and (color_by == "label" or embedding.labels is not None):
        raise ParameterError(
            f"color_by={color_by!r}: the embedding has no {color_by}s; pass labels= to embedding() "
            "or use the other colouring"
        )
    if ax is None:
        ax = new_figure((5.6, 4.4)).add_subplot()
    points = embedding.coordinates
    x = points[:, 0]
    y = points[:, 1] if points.shape[1] > 1 else np.zeros_like(x)
    if classes is None:
        ax.scatter(x, y, s=14, color="tab:blue", alpha=0.8, linewidths=0)
    else:
        _scatter_classes(ax, x, y, np.asarray(classes), embedding, color_by)
    ratios = embedding.explained_variance_ratio
    ax.set_xlabel(f"PC1 ({100 * ratios[0]:.1f}% variance)")
    if points.shape[1] > 1:
        ax.set_ylabel(f"PC2 ({100 * ratios[1]:.1f}% variance)")
    else:
        ax.set_yticks([])
    pooled = ", channel means" if embedding.pooled else ""
    ax.set_title(f"PCA of {short_name(embedding.layer)}{pooled} ({embedding.n_rows} rows)", fontsize="medium")
    return ax


def activation_maps(activations, layer, *, row=0, channels=None, ncols=8, figure=None):
    """A grid of one row's channel maps of a (n_rows, C, H, W) layer, on one colour scale.

    Parameters
    ----------
    activations : Activations
    layer : str
    row : int
    channels : None, int or sequence of int
        Channel indices; an int k draws the k channels with the highest mean activation for
        this row; None draws all channels, or the 32 strongest when there are more.
    ncols : int
        Columns of the grid.
    figure : matplotlib.figure.Figure, optional
        An empty figure to draw in; by default a new headless one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = _row_values(activations, layer, row)
    if values.ndim != 3:
        raise ParameterError(
            f"layer: activation_maps draws layers of shape (n_rows, C, H, W); {layer!r} has rows of shape {values.shape}"
        )
    if not isinstance(ncols, int) or isinstance(ncols, bool) or ncols < 1:
        raise ParameterError(f"ncols must be a positive int, got {ncols!r}")
    strength = values.reshape(len(values), -1).mean(axis=1)
    picked = _pick_channels(channels, strength)
    maps = values[picked]
    low, high = float(maps.min()), float(maps.max())
    if low < 0 < high:  # signed maps: white is zero
        limit = max(-low, high)
        low, high, cmap = -limit, limit, "RdBu_r"
    else:
        cmap = "viridis"
    high = high if high > low else low + 1.0
    ncols = min(ncols, len(picked))
    nrows = math.ceil(len(picked) / ncols)
    if figure is None:
        figure = new_figure((1.35 * ncols + 1.2, 1.45 * nrows + 0.6))
    axes = figure.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, channel, grid in zip(axes, picked, maps):
        image = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(f"ch {channel}", fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(picked):]:
        ax.set_axis_off()
    figure.colorbar(image, ax=axes.tolist(), shrink=0.9, label="activation")
    figure.suptitle(f"{short_name(layer)}: row {row}{_prediction_text(activations, row)}", fontsize="medium")
    return figure


def trajectory(activations, *, row=0, figure=None):
    """An input's path through the recorded layers, in one figure.

    Top: the input, then the strongest channel map (highest mean) of each (C, H, W) layer,
    each on its own colour scale, and the top outputs. Below, across depth: the row's mean
    activation (with its standard deviation) and share of exact zeros in each layer other
    than the model's output.

    Parameters
    ----------
    activations : Activations
    row : int
    figure : matplotlib.figure.Figure, optional
        An empty figure to draw in; by default a new headless one.

    Returns
    -------
    matplotlib.figure.Figure
    """
    layers = list(activations.layers)
    if not layers:
        raise ParameterError("activations: no layers were recorded")
    rows = {name: _row_values(activations, name, row) for name in layers}
    spatial = [name for name in layers if rows[name].ndim == 3]
    if len(spatial) > MAX_STRIP:
        spatial = [spatial[index] for index in np.linspace(0, len(spatial) - 1, MAX_STRIP).round().astype(int)]
    data = np.asarray(activations.data[row])
    show_input = data.ndim in (2, 3)
    tiles = int(show_input) + len(spatial) + 1
    if figure is None:
        figure = new_figure((max(7.5, 1.5 * tiles + 0.6), 6.2))
    grid = figure.add_gridspec(3, tiles, height_ratios=(1.25, 1.0, 1.0))
    column = 0
    if show_input:
        ax = figure.add_subplot(grid[0, column])
        channel_axis = 0 if data.ndim == 3 else None
        ax.imshow(display_image(data, channel_axis, {}), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        _tile(ax, "input")
        column += 1
    for name in spatial:
        values = rows[name]
        strongest = int(np.argmax(values.reshape(len(values), -1).mean(axis=1)))
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(values[strongest], cmap="viridis", interpolation="nearest")
        _tile(ax, f"{short_name(name, 14)}\nch {strongest}")
        column += 1
    _outputs_tile(figure.add_subplot(grid[0, column]), activations, row)

    # the model's output is in its own tile: on the depth axes its scale would flatten the rest
    depth = [name for name in layers if name != activations.output_name] or layers
    positions = np.arange(len(depth))
    flat = [rows[name].ravel() for name in depth]
    means = np.array([values.mean() for values in flat])
    stds = np.array([values.std() for values in flat])
    zeros = np.array([100.0 * np.count_nonzero(values == 0) / max(values.size, 1) for values in flat])
    top = figure.add_subplot(grid[1, :])
    top.bar(positions, means, yerr=stds, color="tab:blue", alpha=0.85, capsize=2, error_kw={"linewidth": 0.8})
    top.axhline(0.0, color="black", linewidth=0.6)
    top.set_ylabel("mean ± std")
    top.tick_params(labelbottom=False)
    bottom = figure.add_subplot(grid[2, :], sharex=top)
    bottom.bar(positions, zeros, color="tab:orange", alpha=0.85)
    bottom.set_ylim(0, 100)
    bottom.set_ylabel("zeros (%)")
    labels = [short_name(name, 22) for name in depth]
    bottom.set_xticks(positions, labels, rotation=40, ha="right", fontsize="small")
    for axis in (top, bottom):
        axis.grid(axis="y", alpha=0.3)
        axis.set_xlim(-0.6, len(depth) - 0.4)
    figure.suptitle(f"Trajectory of row {row}{_prediction_text(activations, row)}", fontsize="medium")
    return figure


def short_name(name: str, width: int = 28) -> str:
    """A tensor name for display: ``'/conv1/Conv_output_0'`` becomes ``'conv1/Conv'``."""
    short = name.lstrip("/")
    if short.endswith("_output_0"):
        short = short[: -len("_output_0")]
    return short if len(short) <= width else "…" + short[-(width - 1):]


def _row_values(activations, layer, row) -> np.ndarray:
    if not isinstance(row, (int, np.integer)) or isinstance(row, bool) or not -activations.n_rows <= row < activations.n_rows:
        raise ParameterError(f"row must be an int from 0 to {activations.n_rows - 1}, got {row!r}")
    return np.asarray(activations[layer][row], dtype=np.float64)


def _pick_channels(channels, strength: np.ndarray) -> np.ndarray:
    count = len(strength)
    order = np.argsort(-strength, kind="stable")
    if channels is None:
        return np.arange(count) if count <= MAX_MAPS else order[:MAX_MAPS]
    if isinstance(channels, (int, np.integer)) and not isinstance(channels, bool):
        if channels < 1:
            raise ParameterError(f"channels: the number of strongest channels must be positive, got {channels}")
        return order[: min(int(channels), count)]
    picked = np.asarray(channels)
    if picked.ndim != 1 or not len(picked) or not np.issubdtype(picked.dtype, np.integer):
        raise ParameterError(f"channels must be None, an int, or a list of channel indices, got {channels!r}")
    if picked.min() < 0 or picked.max() >= count:
        raise ParameterError(f"channels: indices must be in 0..{count - 1}, got {channels!r}")
    return picked


def _scatter_classes(ax, x, y, classes, embedding, color_by) -> None:
    from matplotlib import colormaps

    found = np.unique(classes)
    names = embedding.label_names
    palette = colormaps["tab10" if len(found) <= 10 else "tab20"]
    if len(found) > 20:
        drawn = ax.scatter(x, y, c=classes, s=14, cmap="viridis", alpha=0.8, linewidths=0)
        ax.figure.colorbar(drawn, ax=ax, label=color_by)
    else:
        for index, value in enumerate(found):
            chosen = classes == value
            label = names[int(value)] if names and _is_index(value, names) else str(value)
            ax.scatter(x[chosen], y[chosen], s=14, color=palette(index), alpha=0.8, linewidths=0, label=label)
    if embedding.labels is not None and embedding.predictions is not None:
        wrong = np.asarray(embedding.labels) != np.asarray(embedding.predictions)
        if wrong.any():
            ax.scatter(x[wrong], y[wrong], s=40, facecolors="none", edgecolors="black", linewidths=0.8,
                       label=f"misclassified ({int(wrong.sum())})")
    if len(found) <= 20:
        ax.legend(title=color_by, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small",
                  title_fontsize="small", frameon=False, markerscale=1.4)


def _is_index(value, names) -> bool:
    return np.issubdtype(np.asarray(value).dtype, np.integer) and 0 <= int(value) < len(names)


def _outputs_tile(ax, activations, row) -> None:
    """The row's five largest outputs as horizontal bars, the predicted one highlighted."""
    outputs = np.asarray(activations.outputs[row], dtype=np.float64).ravel()
    order = np.argsort(-outputs, kind="stable")[:5]
    names = activations.label_names
    labels = [names[index] if names and index < len(names) else str(index) for index in order]
    colors = ["tab:green" if rank == 0 else "tab:gray" for rank in range(len(order))]
    ax.barh(np.arange(len(order))[::-1], outputs[order], color=colors)
    ax.set_yticks(np.arange(len(order))[::-1], labels, fontsize="small")
    ax.tick_params(axis="x", labelsize="x-small")
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.set_title(short_name(activations.output_name, 14), fontsize="small")


def _tile(ax, title: str) -> None:
    ax.set_title(title, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])


def _prediction_text(activations, row) -> str:
    if activations.predictions is None:
        return ""
    predicted = int(activations.predictions[row])
    names = activations.label_names
    label = names[predicted] if names and predicted < len(names) else str(predicted)
    return f", predicted {label}"
