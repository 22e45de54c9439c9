"""Shape facts for the rules: shape inference on a copy whose small constant subgraphs are folded.

torch's exporter computes pads, sizes and shapes with chains of ops on constants
(ConstantOfShape, Concat, Reshape...); ONNX shape inference stops at them and leaves every
later spatial size unknown, which would send the rules to their slower run-time paths. The
copy is used for inference only; the returned model keeps the original nodes.
"""

from __future__ import annotations

import onnx
from onnx import helper, numpy_helper

__all__ = ["inferred_types"]

_MAX_ELEMENTS = 10_000
_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Bernoulli",
                     "Multinomial"}


def _small(tensor: onnx.TensorProto) -> bool:
    count = 1
    for dim in tensor.dims:
        count *= dim
    return count <= _MAX_ELEMENTS and tensor.data_location != onnx.TensorProto.EXTERNAL


def folded(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` where nodes computed from small constants only are initializers."""
    from onnx.reference import ReferenceEvaluator

    values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer if _small(t)}
    kept, added = [], []
    for node in proto.graph.node:
        foldable = (node.domain in ("", "ai.onnx") and node.op_type not in _NONDETERMINISTIC
                    and all(name == "" or name in values for name in node.input)
                    and not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                                for a in node.attribute))
        if foldable:
            inputs = [name for name in node.input if name]
            graph = helper.make_graph([node], "fold", [], [helper.make_value_info(n, onnx.TypeProto())
                                                           for n in node.output if n],
                                      initializer=[numpy_helper.from_array(values[n], n) for n in inputs])
            try:
                results = ReferenceEvaluator(helper.make_model(graph, opset_imports=proto.opset_import)).run(None, {})
            except Exception:  # noqa: BLE001 - a node that cannot be evaluated stays a node
                results = None
            if results is not None and all(getattr(r, "size", _MAX_ELEMENTS + 1) <= _MAX_ELEMENTS for r in results):
                for name, value in zip([n for n in node.output if n], results):
                    values[name] = value
                    added.append(numpy_helper.from_array(value, name))
                continue
        kept.append(node)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.graph.node[:]
    copy.graph.node.extend(kept)
    copy.graph.initializer.extend(added)
    return copy


def inferred_types(proto: onnx.ModelProto) -> dict:
    """``{tensor name: ValueInfoProto}`` from the declarations, then inference on the folded copy."""
    types = {}
    sources = [proto]
    for attempt in (lambda: folded(proto), lambda: proto):
        try:
            sources.append(onnx.shape_inference.infer_shapes(attempt(), data_prop=True))
            break
        except Exception:  # noqa: BLE001, S112 - inference is a help here; the declared types remain
            continue
    for source in sources:
        for value in [*source.graph.value_info, *source.graph.input, *source.graph.output]:
            if value.type.HasField("tensor_type"):
                types[value.name] = value
    for source in sources:  # initializers, and the folded tensors of the copy
        for tensor in source.graph.initializer:
            types.setdefault(tensor.name, helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    return types
