"""Which layer the layer methods read, and how its activation reads as channel maps.

The automatic choice (CAM methods) is the last activation that is a spatial feature map of the
explained row: batch first, a layout the graph shows (``graph.layouts``: channels-first or
channels-last), and more than one position (a tensor after global pooling is not a map). A
vision transformer's only map is its patch embedding, which says nothing about the class:
when token sequences ``(batch, [class token +] h*w, dim)`` follow the last map and feed
attention, the input of the last attention block is chosen instead, its class token dropped
and its tokens laid out on the ``h x w`` grid, as pytorch-grad-cam's ``reshape_transform``
does for ViT. Text, recurrent and tabular models have no map: the choice refuses and asks
for ``layer=``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..graph.layouts import tensor_layouts
from ..graph.split import cut
from ..graph.topology import ancestors

__all__ = ["LayerView", "choose_layer", "view_of"]


@dataclass(frozen=True)
class LayerView:
    """How a layer's activation reads as maps of shape (batch, channels, height, width).

    Attributes
    ----------
    layout : {"nchw", "nhwc", "tokens"}
    grid : (h, w) or None
        The token grid, for "tokens".
    skip : int
        Leading tokens left out of the grid (the class token).
    """

    layout: str
    grid: tuple | None = None
    skip: int = 0

    @property
    def channel_axis(self) -> int:
        """The channel axis of the activation itself, batch axis included."""
        return {"nchw": 1, "nhwc": 3, "tokens": 2}[self.layout]

    def maps(self, activations: np.ndarray) -> np.ndarray:
        """The activation as (batch, channels, height, width)."""
        if self.layout == "nchw":
            return activations
        if self.layout == "nhwc":
            return activations.transpose(0, 3, 1, 2)
        n, _, dim = activations.shape
        return activations[:, self.skip:].reshape(n, *self.grid, dim).transpose(0, 3, 1, 2)

    def ablate(self, rows: np.ndarray, units: np.ndarray, value) -> np.ndarray:
        """``rows`` (in place) with channel ``units[i]`` of row ``i`` set to ``value`` on the map."""
        index = np.arange(len(rows))
        if self.layout == "nchw":
            rows[index, units] = value
        elif self.layout == "nhwc":
            rows[index, :, :, units] = value
        else:
            rows[index[:, None], np.arange(self.skip, rows.shape[1])[None, :], units[:, None]] = value
        return rows

    def scale(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``rows`` (in place) with every channel multiplied by ``weights`` (k, h, w) per position."""
        if self.layout == "nchw":
            rows *= weights[:, None]
        elif self.layout == "nhwc":
            rows *= weights[..., None]
        else:
            rows[:, self.skip:] *= weights.reshape(len(weights), -1, 1)
        return rows

    def describe(self) -> str:
        if self.layout != "tokens":
            return self.layout
        dropped = f", the first {self.skip} token(s) (class token) dropped" if self.skip else ""
        return f"tokens reshaped to a {self.grid[0]}x{self.grid[1]} grid{dropped}"


def view_of(name: str, shape: tuple, layout: str | None, method: str) -> LayerView:
    """The view of a layer the caller named: a 4-D map, or a token sequence on a square grid."""
    if len(shape) == 4:
        return LayerView(layout or "nchw")
    if len(shape) == 3 and isinstance(shape[1], int):
        for skip in (0, 1):
            side = math.isqrt(max(shape[1] - skip, 0))
            if side > 1 and side * side == shape[1] - skip:
                return LayerView("tokens", (side, side), skip)
    raise InputShapeError(
        f"layer: {method} needs a spatial feature map: 4-D, (batch, channels, height, width) or (batch, height, "
        f"width, channels), or tokens (batch, [1 +] h*h, dim); {name!r} has shape {shape}. Pass another layer, or "
        "None to choose one automatically"
    )


def choose_layer(source, found: dict, symbol, spatial: bool, method: str):
    """The automatically chosen layer: ``(name, view, (head, tail))``.

    ``found`` maps tensor names to TensorInfo (with shapes); ``symbol`` is the batch dimension
    of the explained input in the graph (its symbol, or its size when the export fixed it). Without ``spatial``, any batch-first activation of rank >= 2 is
    accepted when there is no map.
    """
    graph = source.proto.graph
    ranks = {name: len(info.shape) for name, info in found.items() if info.shape is not None}
    layouts = tensor_layouts(source.proto, ranks)
    order = [name for node in graph.node for name in node.output if name]
    position = {name: index for index, name in enumerate(order)}

    def candidate(name):
        info = found.get(name)
        if info is None or info.kind != "intermediate" or info.shape is None or len(info.shape) < 2:
            return None
        return info.shape if _batch_first(info.shape, symbol) else None

    maps = [name for name in reversed(order) if (shape := candidate(name)) is not None and len(shape) == 4
            and name in layouts and _has_extent(shape, layouts[name])]
    for name in maps:
        parts = _cut(source, name)
        if parts is None:
            continue
        tokens = _token_layer(source, found, name, layouts[name], symbol, position)
        if tokens is not None:
            return tokens
        return name, LayerView(layouts[name]), parts
    if not spatial:
        for name in reversed(order):
            if candidate(name) is not None and (parts := _cut(source, name)) is not None:
                return name, LayerView(layouts.get(name, "nchw")), parts
    wanted = ("4-D spatial feature map (a batch-first activation of shape (batch, channels, height, width) or "
              "(batch, height, width, channels) with more than one position)") if spatial else "batch-first activation"
    raise ParameterError(
        f"layer: {method} found no {wanted} where the graph can be cut: text, recurrent and tabular models have "
        "none. Pass layer='tensor name' (agnostic-explain layers MODEL lists them), or use a method that explains "
        "the input itself"
    )


def _batch_first(shape: tuple, symbol) -> bool:
    """Whether axis 0 is the batch: the input's batch dimension (a symbol, or the size of a
    static batch), or a dimension shape inference lost."""
    first = shape[0]
    lost = first is None or (isinstance(first, str) and first.startswith("unk__"))
    if symbol is None:
        return lost or isinstance(first, str)
    return first == symbol or lost


def _has_extent(shape: tuple, layout: str) -> bool:
    height, width = shape[2:4] if layout == "nchw" else shape[1:3]
    return not (isinstance(height, int) and isinstance(width, int) and height * width <= 1)


def _cut(source, name):
    try:
        return cut(source, [name], parameter="layer")
    except ParameterError:
        return None


def _token_layer(source, found, map_name: str, layout: str, symbol, position: dict):
    """A ViT's last attention input after its patch map, as ``(name, view, parts)``, or None."""
    shape = found[map_name].shape
    height, width = shape[2:4] if layout == "nchw" else shape[1:3]
    if not (isinstance(height, int) and isinstance(width, int)):
        return None
    graph = source.proto.graph
    softmax_inputs = [node.input[0] for node in graph.node if node.op_type == "Softmax"]
    if not softmax_inputs:
        return None
    feeding_attention = {name for index in ancestors(graph, softmax_inputs) for name in graph.node[index].output}
    residual = {name for node in graph.node if node.op_type == "Add" for name in node.input}
    after = position[map_name]
    for name in sorted(feeding_attention & residual, key=lambda item: -position.get(item, -1)):
        info = found.get(name)
        if info is None or info.shape is None or len(info.shape) != 3 or position.get(name, -1) <= after:
            continue
        tokens = info.shape[1]
        skip = tokens - height * width if isinstance(tokens, int) else None
        if skip in (0, 1) and _batch_first(info.shape, symbol) and (parts := _cut(source, name)) is not None:
            return name, LayerView("tokens", (height, width), skip), parts
    return None
