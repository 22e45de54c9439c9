"""Pictures of a model's weights: convolution filters, per-layer histograms, weight matrices.

Layers are named by their node display name (as :func:`agnostic_explain.graph.layers` lists
them), by the name of their weight initializer, or by a tensor the node outputs.
"""

from __future__ import annotations

import difflib
import math

import numpy as np

from ..errors import ParameterError
from ..graph.source import open_model
from ..graph.topology import consumers, node_names, producers
from ..graph.weights import as_float64
from .image import new_figure

__all__ = ["filter_grid", "weight_heatmap", "weight_histograms"]

# Ops whose weight is input 1; for other ops the largest initializer of rank >= 2 is the weight.
_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "ConvInteger": 1,
                 "MatMulInteger": 1, "QLinearConv": 3, "QLinearMatMul": 3}


def filter_grid(model, layer, *, channel=None, max_filters=64, limit=None, cmap="RdBu_r", ax=None):
    """Draw a Conv layer's filters as a grid of small images on one shared colour scale.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    layer : str
        A ``Conv`` node's display name, its weight initializer's name, or its output tensor.
        The weight has shape (out_channels, in_channels, kh, kw); each output filter is a tile.
    channel : None, int or "rgb"
        None: the mean over input channels; an int: that input channel; "rgb": the three
        input channels as colours (only when in_channels is 3), ``0.5 + 0.5 * w / limit``,
        so zero is mid-gray.
    max_filters : int
        Draw the first ``max_filters`` output filters.
    limit : float, optional
        Colour scale ``[-limit, limit]``; by default the 99.5th percentile of ``|w|`` over the
        drawn tiles, so one outlier does not wash the rest out (values beyond it saturate, and
        the colorbar gets arrows).
    cmap : str
        Diverging colormap, centred on zero.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure.

    Returns
    -------
    matplotlib.axes.Axes
        One image: the tiles in rows of ``ncols``; tick labels give each row's first filter
        index and each column's offset, so a tile's filter is row label + column label.

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> ax = filter_grid(DEFAULT_MODEL_PATH, "/conv1/Conv")
    >>> ax.images[0].get_clim()[0] == -ax.images[0].get_clim()[1]
    True
    """
    source = open_model(model)
    name, values, node = _resolve_weight(source, layer, parameter="layer")
    op_type = source.proto.graph.node[node].op_type if node is not None else None
    display = node_names(source.proto.graph)[node] if node is not None else name
    if op_type != "Conv" or values.ndim != 4:
        raise ParameterError(
            f"layer: filter_grid draws the 4-D weight (out, in, kh, kw) of a Conv layer; {layer!r} is "
            f"{'a ' + op_type if op_type else 'not used by any'} node with weight {name!r} of shape "
            f"{values.shape} (weight_heatmap draws 2-D weights, weight_histograms any)"
        )
    if not isinstance(max_filters, int) or isinstance(max_filters, bool) or max_filters < 1:
        raise ParameterError(f"max_filters must be a positive int, got {max_filters!r}")
    out_channels, in_channels, height, width = values.shape
    if isinstance(channel, str) and channel.lower() == "rgb":
        if in_channels != 3:
            raise ParameterError(f"channel: 'rgb' needs 3 input channels; {name!r} has {in_channels}")
        tiles, how = np.moveaxis(values, 1, -1), "RGB of the 3 input channels, 0 = gray"
    elif channel is None:
        tiles = values.mean(axis=1)
        how = f"mean over {in_channels} input channels" if in_channels > 1 else "1 input channel"
    elif isinstance(channel, (int, np.integer)) and not isinstance(channel, bool) and 0 <= channel < in_channels:
        tiles, how = values[:, channel], f"input channel {channel} of {in_channels}"
    else:
        raise ParameterError(
            f"channel must be None (mean), 'rgb' or an int in [0, {in_channels}), got {channel!r}"
        )
    shown = min(out_channels, max_filters)
    tiles = tiles[:shown]
    columns = math.ceil(math.sqrt(shown))
    # the squarest grid with the fewest empty tiles (32 filters: 8 x 4, not 6 x 6 less 4)
    ncols = min(range(columns, math.ceil(1.5 * columns) + 1), key=lambda k: (math.ceil(shown / k) * k - shown, k))
    nrows = math.ceil(shown / ncols)
    gap = max(1, max(height, width) // 4)
    limit, extend = _colour_limit(tiles, limit)
    if ax is None:
        rows_px, columns_px = nrows * (height + gap) - gap, ncols * (width + gap) - gap
        longest = min(7.0, max(2.5, 0.7 * max(ncols, nrows)))
        scale = longest / max(rows_px, columns_px)
        ax = new_figure((columns_px * scale + 1.4, rows_px * scale + 1.0)).add_subplot()
    import matplotlib

    if tiles.ndim == 4:  # RGB: transparent gaps
        mosaic = np.zeros((nrows * (height + gap) - gap, ncols * (width + gap) - gap, 4))
        for index, tile in enumerate(tiles):
            top, left = _corner(index, ncols, height, width, gap)
            mosaic[top:top + height, left:left + width, :3] = 0.5 + 0.5 * tile / limit
            mosaic[top:top + height, left:left + width, 3] = 1.0
        ax.imshow(np.clip(mosaic, 0.0, 1.0), interpolation="nearest")
    else:
        mosaic = np.full((nrows * (height + gap) - gap, ncols * (width + gap) - gap), np.nan)
        for index, tile in enumerate(tiles):
            top, left = _corner(index, ncols, height, width, gap)
            mosaic[top:top + height, left:left + width] = tile
        colours = matplotlib.colormaps[cmap].with_extremes(bad="white")
        image = ax.imshow(mosaic, cmap=colours, vmin=-limit, vmax=limit, interpolation="nearest")
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight", extend=extend)
    ax.set_xticks([column * (width + gap) + (width - 1) / 2 for column in range(ncols)], range(ncols))
    ax.set_yticks([row * (height + gap) + (height - 1) / 2 for row in range(nrows)],
                  [row * ncols for row in range(nrows)])
    ax.tick_params(length=0, labelsize="x-small")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("filter = row label + column label", fontsize="small")
    count = f"{shown} of {out_channels} filters" if shown < out_channels else f"{out_channels} filters"
    ax.set_title(f"{display}: {name} {_shape(values.shape)}\n{count}; {how}", fontsize="small")
    return ax


def weight_histograms(model, layers=None, *, bins=50, max_layers=24, figure=None):
    """Histograms of weight values, one small panel per layer, in graph order.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    layers : str or sequence of str, optional
        Layers (display names, output tensors) or initializer names. By default every node
        with a weight of rank >= 2 (biases and shape operands excluded); when there are more
        than ``max_layers``, that many evenly spaced ones, first and last included.
    bins : int
    max_layers : int
        Cap on the default selection (an explicit ``layers`` list is drawn in full).
    figure : matplotlib.figure.Figure or SubFigure, optional
        Where to add the panels; by default a new headless Figure.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per layer, four to a row, each titled with the layer, weight and shape and
        annotated with the standard deviation and fraction of zeros.

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> figure = weight_histograms(DEFAULT_MODEL_PATH)
    >>> len(figure.axes)
    4
    """
    source = open_model(model)
    graph = source.proto.graph
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ParameterError(f"bins must be a positive int, got {bins!r}")
    if not isinstance(max_layers, int) or isinstance(max_layers, bool) or max_layers < 1:
        raise ParameterError(f"max_layers must be a positive int, got {max_layers!r}")
    if layers is None:
        initializers = {tensor.name: tensor for tensor in graph.initializer}
        candidates = [name for index, name in enumerate(node_names(graph))
                      if (weight := _node_weight(graph, index, initializers)) is not None and len(weight[1].dims) >= 2]
        if not candidates:
            raise ParameterError("layers: the model has no weights of rank >= 2; name initializers to draw")
        picked = candidates
        if len(candidates) > max_layers:
            positions = np.unique(np.round(np.linspace(0, len(candidates) - 1, max_layers)).astype(int))
            picked = [candidates[position] for position in positions]
        heading = (f"{len(picked)} of {len(candidates)} weight layers (evenly spaced; pass layers= to choose)"
                   if len(picked) < len(candidates) else f"{len(picked)} weight layers")
    else:
        picked = [layers] if isinstance(layers, str) else list(layers)
        if not picked:
            raise ParameterError("layers: no layers given")
        heading = f"{len(picked)} weight tensor{'s' * (len(picked) > 1)}"
    names = node_names(graph)
    ncols = min(4, len(picked))
    nrows = math.ceil(len(picked) / ncols)
    if figure is None:
        figure = new_figure((2.6 * ncols + 0.4, 1.9 * nrows + 0.5))
    axes = np.atleast_1d(figure.subplots(nrows, ncols, squeeze=False).ravel())
    for ax, layer in zip(axes, picked):
        name, values, node = _resolve_weight(source, layer, parameter="layers")
        flat = as_float64(values.reshape(-1))
        if flat is None or flat.size == 0:
            raise ParameterError(f"layers: weight {name!r} has no numeric values to draw")
        ax.hist(flat, bins=bins, color="C0", alpha=0.85)
        ax.axvline(0.0, color="0.3", linewidth=0.7, linestyle="--")
        label = names[node] if node is not None else name
        ax.set_title(f"{shorten(label, 34)}\n{shorten(name, 24)} {_shape(values.shape)}", fontsize=7)
        ax.text(0.98, 0.95, f"std {flat.std():.3g}\nzeros {np.mean(flat == 0):.0%}", transform=ax.transAxes,
                ha="right", va="top", fontsize=6, color="0.2",
                bbox=dict(boxstyle="round,pad=0.2", facecolor="white", edgecolor="none", alpha=0.8))
        ax.tick_params(labelsize=6)
    for ax in axes[len(picked):]:
        ax.set_axis_off()
    for ax in axes[::ncols]:
        ax.set_ylabel("count", fontsize=7)
    figure.suptitle(f"Weight distributions: {heading}", fontsize=9)
    return figure


def weight_heatmap(model, name, *, limit=None, cmap="RdBu_r", ax=None):
    """Draw a weight matrix as a heatmap, outputs as rows and inputs as columns.

    Gemm and MatMul weights are transposed where needed so rows are always output units.
    Weights of more than two dimensions are reshaped to (out, -1): a Conv weight
    (out, in, kh, kw) becomes (out, in·kh·kw), columns ordered by input channel, then kernel
    row, then kernel column (:func:`filter_grid` shows the same weight as images).

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    name : str
        A layer's display name, its weight initializer's name, or its output tensor.
    limit : float, optional
        Colour scale ``[-limit, limit]``; by default the 99.5th percentile of ``|w|`` (values
        beyond it saturate, and the colorbar gets arrows).
    cmap : str
        Diverging colormap, centred on zero.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> ax = weight_heatmap(DEFAULT_MODEL_PATH, "/classifier/Gemm")
    >>> ax.images[0].get_array().shape
    (10, 512)
    """
    source = open_model(model)
    weight, values, node_index = _resolve_weight(source, name, parameter="name")
    graph = source.proto.graph
    node = graph.node[node_index] if node_index is not None else None
    if values.ndim < 2:
        raise ParameterError(
            f"name: weight {weight!r} of {name!r} has shape {values.shape}; a heatmap needs 2 or more "
            "dimensions (weight_histograms draws vectors)"
        )
    matrix = as_float64(values)
    if matrix is None:
        raise ParameterError(f"name: weight {weight!r} has no numeric values to draw")
    op_type = node.op_type if node is not None else None
    position = list(node.input).index(weight) if node is not None else None
    transposed = op_type == "Gemm" and {a.name: a.i for a in node.attribute}.get("transB", 0)
    inputs_label, outputs_label = "inputs", "outputs"
    if op_type in ("Conv", "ConvTranspose") and position == 1 and matrix.ndim > 2:
        if op_type == "ConvTranspose":  # stored (in, out / groups, k...)
            matrix = np.swapaxes(matrix, 0, 1)
        kernel = "×".join(map(str, matrix.shape[2:]))
        inputs_label = f"inputs × kernel: {matrix.shape[1]} channels × {kernel}"
    elif op_type in ("MatMul", "Gemm") and position == 1 and matrix.ndim == 2:
        if not transposed:  # stored (in, out)
            matrix = matrix.T
    elif not (op_type == "MatMul" and position == 0 and matrix.ndim == 2):  # W @ x is already (out, in)
        inputs_label, outputs_label = "axis 1" + (" (flattened)" if matrix.ndim > 2 else ""), "axis 0"
    matrix = matrix.reshape(matrix.shape[0], -1)
    limit, extend = _colour_limit(matrix, limit)
    if ax is None:
        rows, columns = matrix.shape
        height = min(7.0, max(2.4, 6.0 * rows / columns + 1.2))
        ax = new_figure((7.0, height)).add_subplot()
    small = max(matrix.shape) <= 512
    image = ax.imshow(matrix, cmap=cmap, vmin=-limit, vmax=limit, aspect="auto",
                      interpolation="nearest" if small else "antialiased")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight", extend=extend)
    ax.set_xlabel(f"{inputs_label} ({matrix.shape[1]})", fontsize="small")
    ax.set_ylabel(f"{outputs_label} ({matrix.shape[0]})", fontsize="small")
    ax.tick_params(labelsize="x-small")
    label = node_names(graph)[node_index] if node_index is not None else weight
    ax.set_title(f"{label} ({op_type or 'unused'}): {weight} {_shape(values.shape)}", fontsize="small")
    return ax


def shorten(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by an ellipsis in the middle."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[:keep // 2] + "…" + text[len(text) - (keep - keep // 2):]


def _colour_limit(values: np.ndarray, limit) -> tuple[float, str]:
    """A symmetric colour limit (given, or the 99.5th percentile of |values|) and the
    colorbar ``extend`` that says whether some values lie beyond it."""
    magnitude = np.abs(values[np.isfinite(values)])
    if limit is None:
        limit = float(np.percentile(magnitude, 99.5)) if magnitude.size else 0.0
        limit = limit or (float(magnitude.max()) if magnitude.size else 0.0) or 1.0
    elif isinstance(limit, bool) or not isinstance(limit, (int, float, np.number)) or not np.isfinite(limit) or limit <= 0:
        raise ParameterError(f"limit must be a positive number or None, got {limit!r}")
    limit = float(limit)
    return limit, "both" if magnitude.size and magnitude.max() > limit else "neither"


def _shape(shape) -> str:
    return "(" + ",".join(str(dim) for dim in shape) + ")"


def _corner(index: int, ncols: int, height: int, width: int, gap: int) -> tuple[int, int]:
    row, column = divmod(index, ncols)
    return row * (height + gap), column * (width + gap)


def _node_weight(graph, index: int, initializers: dict):
    """(input position, TensorProto) of node ``index``'s weight initializer, or None."""
    node = graph.node[index]
    found = [(position, initializers[name]) for position, name in enumerate(node.input) if name in initializers]
    if not found:
        return None
    preferred = _WEIGHT_INPUT.get(node.op_type)
    for position, tensor in found:
        if position == preferred:
            return position, tensor
    return max(found, key=lambda item: (len(item[1].dims) >= 2, int(np.prod(item[1].dims))))


def _resolve_weight(source, name, *, parameter: str):
    """(initializer name, values, index of the node using it or None) for a layer or weight name."""
    graph = source.proto.graph
    if not isinstance(name, str):
        raise ParameterError(f"{parameter}: layer and weight names are strings, got {name!r}")
    names = node_names(graph)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    if name in initializers:
        used = consumers(graph).get(name, [])
        # the node that uses it as its weight, when one does, names the layer
        index = next((i for i in used if (w := _node_weight(graph, i, initializers)) and w[1].name == name),
                     used[0] if used else None)
        return name, source.array(initializers[name]), index
    index = names.index(name) if name in names else producers(graph).get(name)
    if index is None:
        known = [*names, *initializers]
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ParameterError(
            f"{parameter}: the model has no layer or initializer {name!r}{hint} "
            "(graph.layers(model) lists layers, graph.weights(model) initializers)"
        )
    found = _node_weight(graph, index, initializers)
    if found is None:
        raise ParameterError(
            f"{parameter}: layer {names[index]!r} ({graph.node[index].op_type}) has no weight initializer"
        )
    return found[1].name, source.array(found[1]), index
