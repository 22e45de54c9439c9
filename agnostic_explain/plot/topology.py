"""A drawing of a model's graph: one box per node, arrows along the tensors, top to bottom.

The layout is a small Sugiyama one: nodes are layered by their longest path from the graph
inputs, edges that skip layers run through invisible waypoints, each layer is ordered to
reduce crossings, and boxes are pulled towards the boxes they connect to.
"""

from __future__ import annotations

import difflib
import re
import shutil

import numpy as np

from ..errors import MissingDependencyError, ParameterError, require
from ..graph.inspect import layers
from ..tables import format_shape
from ..graph.source import open_model
from ..graph.topology import consumers, node_inputs, node_names, producers
from .image import new_figure
from .weights import shorten

__all__ = ["topology"]

_COLOURS = {  # pale fills by op family; inputs, outputs and highlights use strong ones
    "weights": "#cfe2f3", "activation": "#d9ead3", "pool/norm": "#fff2cc", "merge": "#e6dcf0", "other": "#eeeeee",
}
_FAMILIES = {
    "weights": {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv",
                "QLinearMatMul", "LSTM", "GRU", "RNN", "Gather", "Einsum"},
    "activation": {"Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Softmax",
                   "LogSoftmax", "Gelu", "Elu", "Selu", "PRelu", "Mish", "Softplus", "Erf"},
    "pool/norm": {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization",
                  "LayerNormalization", "InstanceNormalization", "GroupNormalization", "LpNormalization", "LRN",
                  "ReduceMean", "ReduceMax", "ReduceSum"},
    "merge": {"Add", "Sub", "Mul", "Div", "Concat", "Sum", "Max", "Min", "Mean", "Where"},
}
_TERMINAL = "#3d4b5c"
_WIDTH, _DUMMY_WIDTH, _GAP, _BOX_HEIGHT = 1.0, 0.1, 0.25, 0.66
_INCHES_X, _INCHES_Y = 1.55, 0.56  # one box width, one layer, in inches at the default size


def topology(model, *, highlight=None, ax=None, max_nodes=300, engine="matplotlib",
             highlight_color="#ff8c00"):
    """Draw the graph: boxes with op type, short name and output shape, arrows along tensors.

    Graph inputs (top) and outputs (bottom) are dark boxes; nodes are filled by op family
    (weights, activation, pooling/normalisation, merge, other). Initializers are not drawn.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
    highlight : str or sequence of str, optional
        Nodes to colour with ``highlight_color``: node display names (as
        :func:`agnostic_explain.graph.layers` lists them), tensors (their producer, or the
        input box), or initializers (the nodes that use them), e.g. the layer a CAM used.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default a new headless Figure whose height grows with the depth.
    max_nodes : int or None
        Refuse graphs with more nodes than this (None: no limit); the figure of a very large
        graph is too tall to read.
    engine : {"matplotlib", "graphviz"}
        "graphviz" needs the ``graphviz`` package and Graphviz's ``dot`` program; it returns a
        ``graphviz.Digraph``, or draws its rendering on ``ax`` when one is given.
    highlight_color : color

    Returns
    -------
    matplotlib.axes.Axes or graphviz.Digraph
        Each node's box is a patch whose ``gid`` is the node's display name (inputs and
        outputs: ``"input:<name>"``, ``"output:<name>"``).

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> ax = topology(DEFAULT_MODEL_PATH, highlight="/relu3/Relu")
    >>> [patch.get_gid() for patch in ax.patches if patch.get_gid()][:3]
    ['input:image', '/conv1/Conv', '/relu1/Relu']
    """
    if engine not in ("matplotlib", "graphviz"):
        raise ParameterError(f"engine must be 'matplotlib' or 'graphviz', got {engine!r}")
    if max_nodes is not None and (not isinstance(max_nodes, int) or isinstance(max_nodes, bool) or max_nodes < 1):
        raise ParameterError(f"max_nodes must be a positive int or None, got {max_nodes!r}")
    source = open_model(model)
    graph = source.proto.graph
    if max_nodes is not None and len(graph.node) > max_nodes:
        raise ParameterError(
            f"max_nodes: the graph has {len(graph.node)} nodes, more than max_nodes={max_nodes}; pass a "
            "larger max_nodes (or None) to draw it anyway, or engine='graphviz'"
        )
    vertices, edges = _graph_of(source)
    marked = _highlighted(source, vertices, highlight)
    if engine == "graphviz":
        return _graphviz(vertices, edges, marked, highlight_color, ax)
    rank = _layering(vertices, edges)
    rows, points = _add_waypoints(len(vertices), rank, edges)
    _order(rows, points)
    x = _place(rows, points, len(vertices))
    depth = len(rows)
    if ax is None:
        span = max(x.values()) - min(x.values()) + _WIDTH
        ax = new_figure((max(3.2, span * _INCHES_X + 0.4), max(2.0, depth * _INCHES_Y + 0.5))).add_subplot()
    ax.set_axis_off()
    for index, vertex in enumerate(vertices):
        _draw_box(ax, vertex, x[index], -rank[index], index in marked, highlight_color)
    from matplotlib.patches import FancyArrowPatch
    from matplotlib.path import Path

    for (start, end), way in points.items():
        route = [(x[start], -rank[start] - _BOX_HEIGHT / 2), *((x[w], -(rank[start] + 1 + i)) for i, w in enumerate(way)),
                 (x[end], -rank[end] + _BOX_HEIGHT / 2)]
        ax.add_patch(FancyArrowPatch(path=Path(route), arrowstyle="-|>", mutation_scale=7, linewidth=0.7,
                                     color="0.35", zorder=1, shrinkA=0, shrinkB=0))
    xs = list(x.values())
    ax.set_xlim(min(xs) - _WIDTH / 2 - 0.05, max(xs) + _WIDTH / 2 + 0.05)
    ax.set_ylim(-(depth - 1) - _BOX_HEIGHT / 2 - 0.1, _BOX_HEIGHT / 2 + 0.1)
    return ax


def _graph_of(source):
    """Vertices (dicts: kind, gid, label lines, family) and (source, target) edges, deduplicated."""
    graph = source.proto.graph
    table = layers(source)
    initializers = {tensor.name for tensor in graph.initializer}
    vertices, input_vertex = [], {}
    for value in graph.input:
        if value.name not in initializers:
            input_vertex[value.name] = len(vertices)
            shape = table.tensors[value.name].shape if value.name in table.tensors else None
            vertices.append(dict(kind="input", gid=f"input:{value.name}", node=None,
                                 lines=("input", shorten(value.name, 24), format_shape(shape))))
    offset = len(vertices)
    for layer in table:
        shapes = layer.output_shapes
        shape = format_shape(shapes[0]) + (f" +{len(shapes) - 1}" if len(shapes) > 1 else "") if shapes else ""
        family = next((name for name, ops in _FAMILIES.items() if layer.op_type in ops), "other")
        vertices.append(dict(kind=family, gid=layer.name, node=layer.index,
                             lines=(layer.op_type, _short_name(layer.name, layer.op_type), shape)))
    made_by = producers(graph)
    edges = []
    for index, node in enumerate(graph.node):
        for name in node_inputs(node):
            start = offset + made_by[name] if name in made_by else input_vertex.get(name)
            if start is not None:
                edges.append((start, offset + index))
    for value in graph.output:
        start = offset + made_by[value.name] if value.name in made_by else input_vertex.get(value.name)
        vertices.append(dict(kind="output", gid=f"output:{value.name}", node=None,
                             lines=("output", shorten(value.name, 24), format_shape(table.tensors[value.name].shape)
                                    if value.name in table.tensors else "")))
        if start is not None:
            edges.append((start, len(vertices) - 1))
    return vertices, list(dict.fromkeys(edges))


def _short_name(name: str, op_type: str) -> str:
    """A node name without its leading slash and a last part that only repeats the op type."""
    parts = name.strip("/").split("/")
    if len(parts) > 1 and parts[-1] == op_type:
        parts = parts[:-1]
    short = "/".join(parts)
    return "" if re.fullmatch(rf"{re.escape(op_type)}(_\d+)*", short) else shorten(short, 26)


def _highlighted(source, vertices, highlight) -> set[int]:
    if highlight is None:
        return set()
    names = [highlight] if isinstance(highlight, str) else list(highlight)
    graph = source.proto.graph
    by_gid = {vertex["gid"]: index for index, vertex in enumerate(vertices)}
    node_vertex = {vertex["node"]: index for index, vertex in enumerate(vertices) if vertex["node"] is not None}
    made_by, read_by = producers(graph), consumers(graph)
    initializers = {tensor.name for tensor in graph.initializer}
    marked = set()
    for name in names:
        if not isinstance(name, str):
            raise ParameterError(f"highlight: names must be strings, got {name!r}")
        if name in by_gid:
            marked.add(by_gid[name])
        elif name in made_by:
            marked.add(node_vertex[made_by[name]])
        elif f"input:{name}" in by_gid:
            marked.add(by_gid[f"input:{name}"])
        elif name in initializers:
            marked.update(node_vertex[index] for index in read_by.get(name, []))
        else:
            known = [*node_names(graph), *made_by, *initializers, *(value.name for value in graph.input)]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ParameterError(
                f"highlight: the model has no node or tensor {name!r}{hint} (graph.layers(model) lists them)"
            )
    return marked


def _layering(vertices, edges) -> list[int]:
    """Longest path from the graph inputs; parts fed by no input (constants) sit just above
    their first consumer, and outputs just below their producer."""
    count = len(vertices)
    predecessors = [[] for _ in range(count)]
    successors = [[] for _ in range(count)]
    for start, end in edges:
        predecessors[end].append(start)
        successors[start].append(end)
    order = _topological_order(count, predecessors, successors)
    rank = [0] * count
    fed = [vertex["kind"] == "input" for vertex in vertices]
    for vertex in order:
        if predecessors[vertex]:
            rank[vertex] = 1 + max(rank[p] for p in predecessors[vertex])
            fed[vertex] = any(fed[p] for p in predecessors[vertex])
    for vertex in reversed(order):
        if not fed[vertex] and successors[vertex] and vertices[vertex]["kind"] != "output":
            rank[vertex] = min(rank[s] for s in successors[vertex]) - 1
    low = min(rank) if rank else 0
    return [value - low for value in rank]


def _topological_order(count, predecessors, successors) -> list[int]:
    waiting = [len(p) for p in predecessors]
    ready = [vertex for vertex in range(count) if not waiting[vertex]]
    order = []
    while ready:
        vertex = ready.pop(0)
        order.append(vertex)
        for end in successors[vertex]:
            waiting[end] -= 1
            if not waiting[end]:
                ready.append(end)
    return order + [vertex for vertex in range(count) if waiting[vertex]]  # cycles: keep going


def _add_waypoints(count, rank, edges):
    """Rows of vertex ids per layer (waypoints numbered from ``count``) and each edge's waypoints."""
    rows = [[] for _ in range(max(rank) + 1 if rank else 0)]
    for vertex in range(count):
        rows[rank[vertex]].append(vertex)
    points, next_id = {}, count
    for start, end in edges:
        way = []
        for level in range(rank[start] + 1, rank[end]):
            rows[level].append(next_id)
            way.append(next_id)
            next_id += 1
        points[(start, end)] = way
    return rows, points


def _links(points):
    """Neighbours above and below each vertex or waypoint, along the routed edges."""
    above, below = {}, {}
    for (start, end), way in points.items():
        chain = [start, *way, end]
        for upper, lower in zip(chain, chain[1:]):
            below.setdefault(upper, []).append(lower)
            above.setdefault(lower, []).append(upper)
    return above, below


def _order(rows, points, sweeps=4) -> None:
    """Reorder each row by the mean position of its neighbours (barycentre heuristic)."""
    above, below = _links(points)
    for _ in range(sweeps):
        for levels, neighbours in ((range(1, len(rows)), above), (range(len(rows) - 2, -1, -1), below)):
            for level in levels:
                adjacent = rows[level - 1] if neighbours is above else rows[level + 1]
                position = {vertex: index for index, vertex in enumerate(adjacent)}
                current = {vertex: index for index, vertex in enumerate(rows[level])}

                def key(vertex):
                    linked = [position[n] for n in neighbours.get(vertex, []) if n in position]
                    return np.mean(linked) if linked else current[vertex]
                rows[level].sort(key=key)


def _place(rows, points, count, rounds=12) -> dict:
    """x of every vertex and waypoint: each pulled towards its neighbours, order and spacing kept."""
    above, below = _links(points)

    def width(vertex):
        return _WIDTH if vertex < count else _DUMMY_WIDTH

    x = {}
    for row in rows:
        position = 0.0
        for vertex in row:
            x[vertex] = position
            position += width(vertex) + _GAP
    for round_ in range(rounds):
        neighbours = above if round_ % 2 == 0 else below
        for row in rows if round_ % 2 == 0 else rows[::-1]:
            if not row:
                continue
            wanted = [np.mean([x[n] for n in neighbours[v]]) if neighbours.get(v) else x[v] for v in row]
            gaps = [(width(a) + width(b)) / 2 + _GAP for a, b in zip(row, row[1:])]
            left, right = list(wanted), list(wanted)
            for i in range(1, len(row)):
                left[i] = max(wanted[i], left[i - 1] + gaps[i - 1])
            for i in range(len(row) - 2, -1, -1):
                right[i] = min(wanted[i], right[i + 1] - gaps[i])
            for vertex, a, b in zip(row, left, right):
                x[vertex] = (a + b) / 2  # both keep order and spacing, so their mean does
    return x


def _draw_box(ax, vertex, x, y, marked, highlight_color) -> None:
    from matplotlib.patches import FancyBboxPatch

    terminal = vertex["kind"] in ("input", "output")
    face = highlight_color if marked else (_TERMINAL if terminal else _COLOURS[vertex["kind"]])
    pad = 0.04
    box = FancyBboxPatch((x - _WIDTH / 2 + pad, y - _BOX_HEIGHT / 2 + pad), _WIDTH - 2 * pad, _BOX_HEIGHT - 2 * pad,
                         boxstyle=f"round,pad={pad},rounding_size={0.15 if terminal else 0.05}",
                         facecolor=face, edgecolor="#7a4000" if marked else "0.35",
                         linewidth=1.6 if marked else 0.6, zorder=2)
    box.set_gid(vertex["gid"])
    ax.add_patch(box)
    colour = "white" if terminal and not marked else "black"
    title, name, shape = vertex["lines"]
    ax.text(x, y + 0.17, title, ha="center", va="center", fontsize=6.5, fontweight="bold", color=colour, zorder=3)
    ax.text(x, y, name, ha="center", va="center", fontsize=5.5, color=colour, zorder=3)
    ax.text(x, y - 0.17, shape, ha="center", va="center", fontsize=5.5, color=colour, zorder=3,
            family="monospace")


def _graphviz(vertices, edges, marked, highlight_color, ax):
    graphviz = require("graphviz", "graphviz")
    if shutil.which("dot") is None:
        raise MissingDependencyError(
            "engine='graphviz' needs Graphviz's 'dot' program on the PATH, which was not found; install "
            "Graphviz (e.g. apt install graphviz, brew install graphviz) or use engine='matplotlib'"
        )
    digraph = graphviz.Digraph(graph_attr={"rankdir": "TB"},
                               node_attr={"shape": "box", "style": "rounded,filled", "fontsize": "9"})
    for index, vertex in enumerate(vertices):
        terminal = vertex["kind"] in ("input", "output")
        face = highlight_color if index in marked else (_TERMINAL if terminal else _COLOURS[vertex["kind"]])
        digraph.node(str(index), "\n".join(line for line in vertex["lines"] if line), fillcolor=face,
                     fontcolor="white" if terminal and index not in marked else "black")
    for start, end in edges:
        digraph.edge(str(start), str(end))
    if ax is None:
        return digraph
    import io

    from matplotlib.image import imread

    ax.imshow(imread(io.BytesIO(digraph.pipe(format="png")), format="png"))
    ax.set_axis_off()
    return ax
