"""Edits of the forward graph made before differentiating it: same outputs, cheaper gradients.

Exports of TensorFlow-style "same" padding (EfficientNet-PyTorch, timm's ``tf_`` models) put
an explicit zero ``Pad`` before a ``Conv``. Its backward is a ``Slice`` of the transposed
convolution's output, and in ONNX Runtime the Pad also keeps the convolutions on either side
from sharing the NCHWc layout. Folded into the Conv's own ``pads``, the forward computes the
same sums, and the conv rule crops the transposed convolution through its pads instead.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .fold import folded

__all__ = ["pads_in_convs"]


def pads_in_convs(proto: onnx.ModelProto, keep=()) -> onnx.ModelProto:
    """A copy of ``proto`` where each constant zero Pad read only by Conv nodes is folded into them.

    A Pad is folded when its mode is constant, its value zero, its pads known (from constants)
    and non-negative on the spatial axes only, and its output is neither a graph output, nor
    read inside a subgraph, nor one of ``keep`` (tensors the caller names: ``wrt``,
    differentiated outputs). ``proto`` itself is returned when nothing folds.
    """
    candidates = [node for node in proto.graph.node if node.op_type == "Pad" and node.domain in ("", "ai.onnx")]
    if not candidates:
        return proto
    readers: dict[str, list] = {}
    for node in proto.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    kept = set(keep) | {value.name for value in proto.graph.output} | _read_in_subgraphs(proto.graph)
    constants = None
    plans = {}
    for pad in candidates:
        convs = readers.get(pad.output[0], [])
        if pad.output[0] in kept or not convs or not all(_plain_conv(conv, pad.output[0]) for conv in convs):
            continue
        if constants is None:
            constants = {t.name: t for t in folded(proto).graph.initializer}
        ranks = {_spatial_rank(conv, constants) for conv in convs}
        spatial = _spatial_pads(pad, constants, ranks.pop()) if len(ranks) == 1 and None not in ranks else None
        if spatial is not None:
            plans[pad.output[0]] = (pad, spatial)
    if not plans:
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    nodes = []
    for node in copy.graph.node:
        if node.op_type == "Pad" and node.output and node.output[0] in plans:
            continue
        if node.op_type == "Conv" and node.input[0] in plans:
            pad, spatial = plans[node.input[0]]
            _add_pads(node, spatial)
            node.input[0] = pad.input[0]
        nodes.append(node)
    del copy.graph.node[:]
    copy.graph.node.extend(nodes)
    return copy


def _read_in_subgraphs(graph) -> set:
    """Names the subgraphs of ``graph``'s nodes read (outer-scope values among them)."""
    names = set()
    for node in graph.node:
        for attribute in node.attribute:
            subgraphs = [attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)
            for sub in subgraphs:
                names |= {name for inner in sub.node for name in inner.input} | _read_in_subgraphs(sub)
    return names


def _plain_conv(node, name) -> bool:
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or list(node.input).count(name) != 1:
        return False
    auto_pad = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "auto_pad"), b"NOTSET")
    return node.input[0] == name and auto_pad in (b"NOTSET", "NOTSET")


def _value(name, constants):
    if not name:
        return None
    tensor = constants.get(name)
    return None if tensor is None else numpy_helper.to_array(tensor)


def _spatial_rank(conv, constants):
    """The Conv's number of spatial axes, from its kernel_shape or its constant weight."""
    kernel = next((helper.get_attribute_value(a) for a in conv.attribute if a.name == "kernel_shape"), None)
    if kernel is not None:
        return len(kernel)
    weight = constants.get(conv.input[1])
    return len(weight.dims) - 2 if weight is not None else None


def _spatial_pads(pad, constants, n_spatial):
    """``(begin, end)`` for the ``n_spatial`` axes after N and C, or None when the Pad cannot be folded."""
    attributes = {a.name: helper.get_attribute_value(a) for a in pad.attribute}
    if attributes.get("mode", b"constant") not in (b"constant", "constant"):
        return None
    if len(pad.input) == 1:  # opset < 11: pads and value are attributes
        pads, value, axes = attributes.get("pads"), attributes.get("value", 0.0), None
    else:
        pads = _value(pad.input[1], constants)
        value = _value(pad.input[2], constants) if len(pad.input) > 2 and pad.input[2] else 0.0
        axes = _value(pad.input[3], constants) if len(pad.input) > 3 and pad.input[3] else None
        if pads is None or value is None or (len(pad.input) > 3 and pad.input[3] and axes is None):
            return None
    pads = [int(v) for v in np.asarray(pads).reshape(-1)]
    if not pads or len(pads) % 2 or np.any(np.asarray(value) != 0):
        return None
    count, rank = len(pads) // 2, 2 + n_spatial
    explicit = axes is not None
    axes = [int(a) for a in np.asarray(axes).reshape(-1)] if explicit else list(range(count))
    if len(axes) != count or (not explicit and count != rank) or any(not -rank <= a < rank for a in axes):
        return None
    full = dict(zip((a % rank for a in axes), zip(pads[:count], pads[count:])))
    if min(pads) < 0 or any(full.get(axis, (0, 0)) != (0, 0) for axis in (0, 1)):
        return None
    spatial = [full.get(axis, (0, 0)) for axis in range(2, rank)]
    return [b for b, _ in spatial], [e for _, e in spatial]


def _add_pads(conv, spatial) -> None:
    begin, end = spatial
    old = next((a for a in conv.attribute if a.name == "pads"), None)
    current = list(old.ints) if old is not None else [0] * (2 * len(begin))
    n = len(begin)
    total = [current[i] + begin[i] for i in range(n)] + [current[n + i] + end[i] for i in range(n)]
    if old is not None:
        conv.attribute.remove(old)
    conv.attribute.append(helper.make_attribute("pads", total))
