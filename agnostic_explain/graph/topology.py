"""Structure of a graph: who produces and consumes each tensor, and what a tensor depends on.

A node with subgraphs (``If``, ``Loop``, ``Scan``) also reads the outer tensors its bodies
name; those count as its inputs here, so dependencies cross subgraph boundaries correctly.
"""

from __future__ import annotations

import onnx

__all__ = ["ancestors", "consumers", "inner_tensors", "node_inputs", "node_names", "producers"]


def _subgraphs(node: onnx.NodeProto):
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            yield from attribute.graphs


def _outer_references(graph: onnx.GraphProto) -> set[str]:
    """Names a (sub)graph reads that it does not define itself."""
    defined = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer}
    used = set()
    for node in graph.node:
        used.update(name for name in node.input if name)
        for body in _subgraphs(node):
            used |= _outer_references(body)
        defined.update(node.output)
    used.update(value.name for value in graph.output)
    return used - defined


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """The tensors ``node`` reads: its inputs, then the outer tensors its subgraphs name."""
    explicit = [name for name in node.input if name]
    implicit = set()
    for body in _subgraphs(node):
        implicit |= _outer_references(body)
    return explicit + sorted(implicit - set(explicit))


def inner_tensors(graph: onnx.GraphProto) -> dict[str, str]:
    """Tensors defined inside subgraph bodies, mapped to the name of the node that owns the body."""
    found = {}
    for node, owner in zip(graph.node, node_names(graph)):
        for body in _subgraphs(node):
            stack = [body]
            while stack:
                current = stack.pop()
                names = [value.name for value in current.input] + [tensor.name for tensor in current.initializer]
                for inner in current.node:
                    names.extend(name for name in inner.output if name)
                    stack.extend(_subgraphs(inner))
                for name in names:
                    found.setdefault(name, f"{node.op_type} node {owner!r}")
    return found


def node_names(graph: onnx.GraphProto) -> list[str]:
    """A unique display name per node: its own name, or ``<OpType>_<index>`` when empty or repeated."""
    seen, names = set(), []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if name in seen:
            name = f"{name}_{index}"
        seen.add(name)
        names.append(name)
    return names


def producers(graph: onnx.GraphProto) -> dict[str, int]:
    """Tensor name to the index of the node that outputs it."""
    return {name: index for index, node in enumerate(graph.node) for name in node.output if name}


def consumers(graph: onnx.GraphProto) -> dict[str, list[int]]:
    """Tensor name to the indices of the nodes that read it (subgraph references included)."""
    found: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node_inputs(node):
            found.setdefault(name, []).append(index)
    return found


def ancestors(graph: onnx.GraphProto, names, *, stop_at=()) -> set[int]:
    """Indices of the nodes needed to compute tensors ``names``, not looking past ``stop_at``."""
    made_by = producers(graph)
    stop = set(stop_at)
    needed: set[int] = set()
    pending = [name for name in names if name not in stop]
    while pending:
        index = made_by.get(pending.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        pending.extend(name for name in node_inputs(graph.node[index]) if name not in stop)
    return needed
