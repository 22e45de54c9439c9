"""Seeded mutations of a model: proto-level (dims, dtypes, op types, initializers, names, cycles,
subgraphs, metadata, external-data entries) and byte-level (flips, inserts, cuts, bad UTF-8).

Each mutator takes a ``random.Random`` and a ModelProto (edited in place) and returns a short
description of what it did; :func:`mutate` draws a few and serializes, then perhaps damages
the bytes. Everything depends only on the ``random.Random`` it is given.
"""

from __future__ import annotations

import json
import random

import onnx
from onnx import TensorProto, helper

DIMS = (0, 1, 2, 3, 7, 64, -1, -7, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1)
OP_TYPES = (
    "Relu", "Identity", "MatMul", "Gemm", "Conv", "Add", "Reshape", "Flatten", "Softmax", "Gather", "Concat",
    "Split", "Transpose", "MaxPool", "If", "Loop", "Scan", "Cast", "Shape", "Expand", "Tile", "ConstantOfShape",
    "Range", "Resize", "NoSuchOp", "", "Einsum", "TopK", "ReduceSum", "Slice", "Pad",
)
NAMES = ("", "x", "y", "W", "b", "image", "logits", "N", "\x00", "a" * 300, "../x", "é", "batch")


def _values(proto: onnx.ModelProto) -> list:
    graph = proto.graph
    return list(graph.input) + list(graph.output) + list(graph.value_info)


def _tensors(proto):
    names = {name for node in proto.graph.node for name in (*node.input, *node.output) if name}
    return sorted(names | {value.name for value in _values(proto)} | {t.name for t in proto.graph.initializer})


def dim(rng: random.Random, proto) -> str:
    values = [value for value in _values(proto) if value.type.HasField("tensor_type")]
    if not values:
        return "dim: none"
    value = rng.choice(values)
    shape = value.type.tensor_type.shape
    if not shape.dim or rng.random() < 0.15:
        shape.dim.add().dim_value = rng.choice(DIMS)
        return f"dim: added to {value.name!r}"
    entry = rng.choice(shape.dim)
    if rng.random() < 0.7:
        entry.dim_value = rng.choice(DIMS)
        return f"dim: {value.name!r} -> {entry.dim_value}"
    entry.dim_param = rng.choice(NAMES)
    return f"dim: {value.name!r} -> {entry.dim_param!r}"


def rank(rng, proto) -> str:
    values = [value for value in _values(proto) if value.type.HasField("tensor_type")]
    if not values:
        return "rank: none"
    value = rng.choice(values)
    if rng.random() < 0.5:
        value.type.tensor_type.ClearField("shape")
        return f"rank: {value.name!r} unknown"
    del value.type.tensor_type.shape.dim[:]
    for _ in range(rng.randint(0, 6)):
        value.type.tensor_type.shape.dim.add().dim_value = rng.choice((1, 2, 3, 8))
    return f"rank: {value.name!r} -> {len(value.type.tensor_type.shape.dim)}"


def dtype(rng, proto) -> str:
    elem = rng.randint(0, 26)
    if proto.graph.initializer and rng.random() < 0.4:
        tensor = rng.choice(proto.graph.initializer)
        tensor.data_type = elem
        return f"dtype: initializer {tensor.name!r} -> {elem}"
    values = [value for value in _values(proto) if value.type.HasField("tensor_type")]
    if not values:
        return "dtype: none"
    value = rng.choice(values)
    value.type.tensor_type.elem_type = elem
    return f"dtype: {value.name!r} -> {elem}"


def op_type(rng, proto) -> str:
    if not proto.graph.node:
        return "op: none"
    node = rng.choice(proto.graph.node)
    node.op_type = rng.choice(OP_TYPES)
    if rng.random() < 0.1:
        node.domain = rng.choice(("ai.onnx.ml", "com.microsoft", "no.such.domain"))
    return f"op: {node.name!r} -> {node.op_type!r}"


def attribute(rng, proto) -> str:
    nodes = [node for node in proto.graph.node if node.attribute]
    if not nodes:
        return "attribute: none"
    node = rng.choice(nodes)
    attr = rng.choice(node.attribute)
    if attr.ints:
        index = rng.randrange(len(attr.ints))
        attr.ints[index] = rng.choice(DIMS)
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = rng.choice(DIMS)
    else:
        attr.name = rng.choice(("axis", "perm", "kernel_shape", "to", ""))
    return f"attribute: {node.op_type}.{attr.name}"


def drop_initializer(rng, proto) -> str:
    if not proto.graph.initializer:
        return "drop initializer: none"
    index = rng.randrange(len(proto.graph.initializer))
    name = proto.graph.initializer[index].name
    del proto.graph.initializer[index]
    return f"drop initializer {name!r}"


def initializer_data(rng, proto) -> str:
    inline = [t for t in proto.graph.initializer if t.data_location != TensorProto.EXTERNAL]
    if not inline:
        return "initializer data: none"
    tensor = rng.choice(inline)
    choice = rng.random()
    if choice < 0.4 and tensor.dims:
        tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice(DIMS)
        return f"initializer dims {tensor.name!r}"
    if choice < 0.7:
        data = tensor.raw_data or b""
        tensor.raw_data = data[: rng.randrange(len(data) + 1)]
        del tensor.float_data[:]
        return f"initializer truncated {tensor.name!r}"
    tensor.dims.append(rng.choice((1, 2, 0)))
    return f"initializer rank {tensor.name!r}"


def duplicate(rng, proto) -> str:
    graph = proto.graph
    choice = rng.random()
    names = _tensors(proto)
    if choice < 0.3 and graph.node and names:
        node = rng.choice(graph.node)
        if node.output:
            node.output[0] = rng.choice(names)
        return "duplicate: node output renamed"
    if choice < 0.5 and graph.initializer:
        graph.initializer.add().CopyFrom(rng.choice(graph.initializer))
        return "duplicate: initializer"
    if choice < 0.7 and graph.input:
        graph.input.add().CopyFrom(rng.choice(graph.input))
        return "duplicate: input"
    if graph.node:
        graph.node.add().CopyFrom(rng.choice(graph.node))
        return "duplicate: node"
    return "duplicate: none"


def rename(rng, proto) -> str:
    """A tensor renamed in one place only, or a node's input pointed at another tensor."""
    graph = proto.graph
    nodes = [node for node in graph.node if node.input]
    if nodes and rng.random() < 0.6:
        node = rng.choice(nodes)
        index = rng.randrange(len(node.input))
        node.input[index] = rng.choice((*_tensors(proto), *NAMES))
        return f"rename: {node.op_type} input {index} -> {node.input[index]!r}"
    values = _values(proto)
    if not values:
        return "rename: none"
    value = rng.choice(values)
    value.name = rng.choice(NAMES)
    return f"rename: value -> {value.name!r}"


def cycle(rng, proto) -> str:
    nodes = proto.graph.node
    if len(nodes) < 1 or not nodes[0].input or not nodes[-1].output:
        return "cycle: none"
    nodes[0].input[0] = nodes[-1].output[0]
    if rng.random() < 0.5 and len(nodes) > 1:
        nodes[0].input[0], nodes[1].input[0] = nodes[1].output[0], nodes[0].output[0]
    return "cycle"


def reorder(rng, proto) -> str:
    nodes = list(proto.graph.node)
    rng.shuffle(nodes)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return "reorder nodes"


def drop(rng, proto) -> str:
    graph = proto.graph
    field = rng.choice(("node", "input", "output", "output_all", "value_info"))
    if field == "output_all":
        del graph.output[:]
        return "drop: all outputs"
    items = getattr(graph, field)
    if not items:
        return f"drop {field}: none"
    del items[rng.randrange(len(items))]
    return f"drop {field}"


def subgraph(rng, proto) -> str:
    """Wrap a node in an If whose branches hold it (or break a branch)."""
    graph = proto.graph
    if not graph.node:
        return "subgraph: none"
    index = rng.randrange(len(graph.node))
    node = graph.node[index]
    if not node.output:
        return "subgraph: none"
    outputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in node.output]
    inner = onnx.NodeProto()
    inner.CopyFrom(node)
    branch = helper.make_graph([inner], "branch", [], outputs)
    other = onnx.GraphProto()
    other.CopyFrom(branch)
    if rng.random() < 0.3:
        del other.output[:]
    if rng.random() < 0.2:
        other.node[0].op_type = rng.choice(OP_TYPES)
    condition = helper.make_tensor("cond_" + str(index), TensorProto.BOOL, [], [rng.random() < 0.5])
    graph.initializer.append(condition)
    wrapped = helper.make_node("If", [condition.name], list(node.output), then_branch=branch, else_branch=other)
    graph.node[index].CopyFrom(wrapped)
    return "subgraph: If"


def metadata(rng, proto) -> str:
    key = rng.choice(("class_names", "feature_names", "preprocessing", "parity", "source_framework"))
    depth = rng.choice((1, 10, 5000, 100000))
    value = rng.choice((
        json.dumps({"a": "x", "b": "y"}),
        json.dumps({"0": "x", "2": "y"}),
        json.dumps({"-1": "x", "1e3": "y"}),
        json.dumps({"0": {"nested": 1}}),
        "[" * depth + "]" * depth,
        "{\"a\":" * depth + "1" + "}" * depth,
        json.dumps(["x"] * rng.choice((0, 1, 3, 10000))),
        json.dumps({"layout": rng.choice((5, "nchw", "weird", None)), "mean": rng.choice(("x", [1, 2], [[1]], 1e309)),
                    "std": rng.choice(([0], 0, "y", [1, 2, 3]))}),
        json.dumps({"max_abs": "x", "n_rows": None}),
        "not json",
        "",
        "NaN",
        "\x00\x01",
        json.dumps(12),
        json.dumps([None, [1], {"a": 1}]),
    ))
    props = [prop for prop in proto.metadata_props if prop.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
    return f"metadata {key}"


def external_data(rng, proto) -> str:
    """Point an initializer at an external file: odd locations, offsets, lengths."""
    if not proto.graph.initializer:
        return "external: none"
    tensor = rng.choice(proto.graph.initializer)
    if tensor.data_location != TensorProto.EXTERNAL:
        tensor.ClearField("raw_data")
        del tensor.float_data[:]
        tensor.data_location = TensorProto.EXTERNAL
        for key in ("location", "offset", "length"):
            tensor.external_data.add().key = key
        tensor.external_data[0].value = "weights.bin"
    entries = {entry.key: entry for entry in tensor.external_data}
    what = rng.choice(("location", "offset", "length", "checksum", "drop", "extra"))
    if what == "location" and "location" in entries:
        entries["location"].value = rng.choice((
            "weights.bin", "missing.bin", "", "../weights.bin", "/etc/hostname", "weights.bin\x00.txt", "w\x00",
            ".", "sub/../weights.bin", "w.bin",
        ))
    elif what in ("offset", "length") and what in entries:
        entries[what].value = rng.choice(("0", "4", "-1", "12", "99999999", str(2**63), "x", "", "1e3"))
    elif what == "drop" and tensor.external_data:
        del tensor.external_data[rng.randrange(len(tensor.external_data))]
    else:
        entry = tensor.external_data.add()
        entry.key, entry.value = rng.choice((("checksum", "abc"), ("basepath", ".."), ("location", "weights.bin")))
    return f"external {tensor.name!r} {what}"


def versions(rng, proto) -> str:
    if rng.random() < 0.5:
        proto.ir_version = rng.choice((0, 1, 3, 7, 8, 9, 10, 11, 99, 2**40))
        return f"ir_version {proto.ir_version}"
    if proto.opset_import:
        proto.opset_import[0].version = rng.choice((0, 1, 6, 11, 13, 17, 21, 22, 99, 2**40))
        return f"opset {proto.opset_import[0].version}"
    return "versions: none"


PROTO_MUTATORS = (
    dim, dim, rank, dtype, op_type, attribute, drop_initializer, initializer_data, duplicate, rename, cycle,
    reorder, drop, subgraph, metadata, metadata, external_data, external_data, versions,
)


def damage_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Byte-level damage: flips, inserted or deleted runs, a cut, a name made invalid UTF-8."""
    data = bytearray(data)
    what = rng.choice(("flip", "insert", "delete", "truncate", "utf8", "utf8"))
    if not data:
        return bytes(rng.randbytes(rng.randint(0, 64))), "random bytes"
    if what == "flip":
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif what == "insert":
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 16))
    elif what == "delete":
        at = rng.randrange(len(data))
        del data[at : at + rng.randint(1, 16)]
    elif what == "truncate":
        del data[rng.randrange(len(data)) :]
    else:
        # Make a short printable run (a name) start with a byte that is never valid UTF-8.
        starts = [i for i in range(1, len(data) - 2) if 0x61 <= data[i] <= 0x7A and data[i - 1] < 0x40]
        if starts:
            data[rng.choice(starts)] = rng.choice((0xFF, 0xC0, 0xFE))
    return bytes(data), f"bytes {what}"


def mutate(rng: random.Random, model: bytes) -> tuple[bytes, list[str]]:
    """A mutated copy of serialized ``model`` and the list of mutations applied."""
    proto = onnx.ModelProto()
    proto.ParseFromString(model)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        done.append(rng.choice(PROTO_MUTATORS)(rng, proto))
    try:
        data = proto.SerializeToString()
    except Exception as error:  # a mutation protobuf will not serialize
        data, _ = model, done.append(f"unserializable ({type(error).__name__}); seed kept")
    if rng.random() < 0.25:
        data, what = damage_bytes(rng, data)
        done.append(what)
    return data, done
