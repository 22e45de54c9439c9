"""The seed models, built in code: the embedded digits CNN, a linear model, a two-input model and
a linear model whose weights live in an external file."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


@dataclass
class Seed:
    """A model as bytes, with the files beside it (external weights), by file name."""

    name: str
    model: bytes
    files: dict = field(default_factory=dict)


def _model(nodes, inputs, outputs, initializers=(), metadata=None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "seed", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata:
        helper.set_model_props(model, metadata)
    return model


def _weights(seed: int, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _float(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def linear() -> onnx.ModelProto:
    return _model(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        [_float("x", ["N", 4])], [_float("y", ["N", 3])],
        [numpy_helper.from_array(_weights(0, 4, 3), "W"), numpy_helper.from_array(_weights(1, 3), "b")],
        metadata={"class_names": '["a", "b", "c"]', "feature_names": '["f0", "f1", "f2", "f3"]'},
    )


def two_input() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Mul", ["x", "z"], ["xz"]), helper.make_node("MatMul", ["xz", "W"], ["y"])],
        [_float("x", ["N", 4]), _float("z", ["N", 4])], [_float("y", ["N", 3])],
        [numpy_helper.from_array(_weights(20, 4, 3), "W")],
    )


def external() -> Seed:
    """The linear model with ``W`` and ``b`` in ``weights.bin`` beside it."""
    proto = linear()
    blob = b""
    for tensor in proto.graph.initializer:
        raw = numpy_helper.to_array(tensor).tobytes()
        offset = len(blob)
        blob += raw
        tensor.ClearField("float_data")
        tensor.raw_data = b""
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "weights.bin"), ("offset", str(offset)), ("length", str(len(raw)))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return Seed("external", proto.SerializeToString(), {"weights.bin": blob})


def digits() -> onnx.ModelProto:
    from agnostic_explain.data import DEFAULT_MODEL_PATH

    return onnx.load(str(DEFAULT_MODEL_PATH))


def seeds() -> list[Seed]:
    return [
        Seed("digits_cnn", digits().SerializeToString()),
        Seed("linear", linear().SerializeToString()),
        Seed("two_input", two_input().SerializeToString()),
        external(),
    ]
