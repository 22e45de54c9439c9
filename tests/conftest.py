"""Shared builders: small ONNX models made in code, with the weights that define their answers.

Every builder returns a :class:`Case` holding the ``onnx.ModelProto`` and the arrays a test
needs to compute the expected answer by hand. Nothing is downloaded.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# Batch sizes learned in one test must not carry over to another through the disk cache;
# tests/test_engine.py turns it on where it is the subject.
os.environ["AGNOSTIC_EXPLAIN_CACHE_DIR"] = "off"

OPSET = 17
IR_VERSION = 8  # accepted by every onnxruntime this package supports

N_FEATURES = 4
N_CLASSES = 3


@dataclass
class Case:
    """A model and the arrays that define its answers."""

    proto: onnx.ModelProto
    arrays: dict = field(default_factory=dict)

    def __getattr__(self, name):
        if name == "arrays":
            raise AttributeError(name)
        try:
            return self.arrays[name]
        except KeyError:
            raise AttributeError(name) from None


def make_model(nodes, inputs, outputs, initializers=(), metadata=None) -> onnx.ModelProto:
    """An opset-17 model that passes the ONNX checker."""
    graph = helper.make_graph(
        nodes,
        "test",
        inputs,
        outputs,
        initializer=[numpy_helper.from_array(np.asarray(value), name) for name, value in initializers],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    return model


def float_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def weights(seed: int, *shape) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def build_linear(batch="N", n_features=N_FEATURES, n_classes=N_CLASSES, metadata=None, seed=0) -> Case:
    """y = x @ W + b, x of shape (batch, n_features)."""
    w, b = weights(seed, n_features, n_classes), weights(seed + 1, n_classes)
    proto = make_model(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        [float_input("x", [batch, n_features])],
        [float_input("y", [batch, n_classes])],
        [("W", w), ("b", b)],
        metadata=metadata,
    )
    return Case(proto, {"W": w, "b": b})


def build_reshape_static(batch=1, n_features=N_FEATURES, n_classes=N_CLASSES) -> Case:
    """y = reshape(x, [batch, -1]) @ W + b: the static batch is baked into a constant."""
    w, b = weights(10, n_features, n_classes), weights(11, n_classes)
    proto = make_model(
        [
            helper.make_node("Reshape", ["x", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["y"]),
        ],
        [float_input("x", [batch, n_features])],
        [float_input("y", [batch, n_classes])],
        [("W", w), ("b", b), ("shape", np.array([batch, -1], dtype=np.int64))],
    )
    return Case(proto, {"W": w, "b": b})


def build_scaled(batch=1, baked=False, n_features=N_FEATURES, n_classes=N_CLASSES) -> Case:
    """y = x @ W / T with a scalar (rank-0) input T; ``baked`` reshapes x to [batch, -1] first."""
    w = weights(15, n_features, n_classes)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Div", ["xw", "T"], ["y"])]
    initializers = [("W", w)]
    if baked:
        nodes.insert(0, helper.make_node("Reshape", ["x", "shape"], ["flat"]))
        nodes[1].input[0] = "flat"
        initializers.append(("shape", np.array([batch, -1], dtype=np.int64)))
    proto = make_model(
        nodes,
        [float_input("x", [batch, n_features]), float_input("T", [])],
        [float_input("y", [batch, n_classes])],
        initializers,
    )
    return Case(proto, {"W": w})


def build_two_input(n_features=N_FEATURES, n_classes=N_CLASSES) -> Case:
    """y = (x * z) @ W, x and z of shape (N, n_features)."""
    w = weights(20, n_features, n_classes)
    proto = make_model(
        [helper.make_node("Mul", ["x", "z"], ["xz"]), helper.make_node("MatMul", ["xz", "W"], ["y"])],
        [float_input("x", ["N", n_features]), float_input("z", ["N", n_features])],
        [float_input("y", ["N", n_classes])],
        [("W", w)],
    )
    return Case(proto, {"W": w})


def build_batch_axis_one(n_features=N_FEATURES, n_classes=N_CLASSES) -> Case:
    """y = (x + transpose(t)) @ W with x of shape (N, F) and t of shape (F, N)."""
    w = weights(30, n_features, n_classes)
    proto = make_model(
        [
            helper.make_node("Transpose", ["t"], ["tt"], perm=[1, 0]),
            helper.make_node("Add", ["x", "tt"], ["s"]),
            helper.make_node("MatMul", ["s", "W"], ["y"]),
        ],
        [float_input("x", ["N", n_features]), float_input("t", [n_features, "N"])],
        [float_input("y", ["N", n_classes])],
        [("W", w)],
    )
    return Case(proto, {"W": w})


def build_tokens(vocabulary=10, length=6, n_classes=N_CLASSES) -> Case:
    """y[n, c] = sum_l E[ids[n, l], c]: ids int64 (N, L) -> Gather -> ReduceSum over L."""
    embedding = weights(40, vocabulary, n_classes)
    proto = make_model(
        [
            helper.make_node("Gather", ["E", "ids"], ["embedded"], axis=0),
            helper.make_node("ReduceSum", ["embedded", "axes"], ["y"], keepdims=0),
        ],
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", length])],
        [float_input("y", ["N", n_classes])],
        [("E", embedding), ("axes", np.array([1], dtype=np.int64))],
    )
    return Case(proto, {"E": embedding})


def build_argmax_first(n_features=N_FEATURES, n_classes=N_CLASSES) -> Case:
    """Outputs ("label" int64 argmax, "logits" float): the first output is not floating."""
    w = weights(50, n_features, n_classes)
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["logits"]),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
        ],
        [float_input("x", ["N", n_features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]), float_input("logits", ["N", n_classes])],
        [("W", w)],
    )
    return Case(proto, {"W": w})


def build_grid_output(n_features=N_FEATURES) -> Case:
    """y = reshape(x @ W, (N, 2, 3)): a multi-dimensional output per row."""
    w = weights(60, n_features, 6)
    proto = make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["y"]),
        ],
        [float_input("x", ["N", n_features])],
        [float_input("y", ["N", 2, 3])],
        [("W", w), ("shape", np.array([-1, 2, 3], dtype=np.int64))],
    )
    return Case(proto, {"W": w})


def build_sum_of_squares(n_features=N_FEATURES) -> Case:
    """y = sum(x * x) over the features, shape (N, 1)."""
    proto = make_model(
        [
            helper.make_node("Mul", ["x", "x"], ["squares"]),
            helper.make_node("ReduceSum", ["squares", "axes"], ["y"], keepdims=1),
        ],
        [float_input("x", ["N", n_features])],
        [float_input("y", ["N", 1])],
        [("axes", np.array([1], dtype=np.int64))],
    )
    return Case(proto)


def build_square_of_sum(n_features=N_FEATURES) -> Case:
    """y = (sum x)^2, shape (N, 1): every pair of features interacts."""
    proto = make_model(
        [
            helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=1),
            helper.make_node("Mul", ["total", "total"], ["y"]),
        ],
        [float_input("x", ["N", n_features])],
        [float_input("y", ["N", 1])],
        [("axes", np.array([1], dtype=np.int64))],
    )
    return Case(proto)


def build_image_linear(channels=3, height=8, width=8, n_classes=N_CLASSES, layout="NCHW") -> Case:
    """y = flatten(x in NCHW order) @ W; an NHWC model transposes to NCHW first, same W."""
    w = weights(70, channels * height * width, n_classes)
    nodes = [helper.make_node("Flatten", ["chw"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "W"], ["y"])]
    if layout == "NCHW":
        nodes[0].input[0] = "x"
        shape = ["N", channels, height, width]
    else:
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["chw"], perm=[0, 3, 1, 2]))
        shape = ["N", height, width, channels]
    proto = make_model(nodes, [float_input("x", shape)], [float_input("y", ["N", n_classes])], [("W", w)])
    return Case(proto, {"W": w})


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def linear() -> Case:
    return build_linear()


@pytest.fixture(scope="session")
def linear_static() -> Case:
    return build_linear(batch=1)


@pytest.fixture(scope="session")
def reshape_static() -> Case:
    return build_reshape_static()


@pytest.fixture(scope="session")
def reshape_static_three() -> Case:
    return build_reshape_static(batch=3)


@pytest.fixture(scope="session")
def make_scaled():
    """Factory: ``make_scaled(batch=..., baked=...)`` builds y = x @ W / T with a scalar T."""
    return build_scaled


@pytest.fixture(scope="session")
def two_input() -> Case:
    return build_two_input()


@pytest.fixture(scope="session")
def batch_axis_one() -> Case:
    return build_batch_axis_one()


@pytest.fixture(scope="session")
def tokens() -> Case:
    return build_tokens()


@pytest.fixture(scope="session")
def argmax_first() -> Case:
    return build_argmax_first()


@pytest.fixture(scope="session")
def grid_output() -> Case:
    return build_grid_output()


@pytest.fixture(scope="session")
def labelled_linear() -> Case:
    return build_linear(metadata={"class_names": json.dumps(["cat", "dog", "eel"])})


@pytest.fixture(scope="session")
def sum_of_squares() -> Case:
    return build_sum_of_squares()


@pytest.fixture(scope="session")
def square_of_sum() -> Case:
    return build_square_of_sum()


@pytest.fixture(scope="session")
def image_nchw() -> Case:
    return build_image_linear(layout="NCHW")


@pytest.fixture(scope="session")
def image_nhwc() -> Case:
    return build_image_linear(layout="NHWC")


@pytest.fixture(scope="session")
def make_linear():
    """Factory: ``make_linear(n_features=..., metadata=...)`` builds another linear model."""
    return build_linear


@pytest.fixture(scope="session")
def make_onnx_model():
    """Factory: ``make_onnx_model(nodes, inputs, outputs, initializers)`` builds a checked model."""
    return make_model


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def export_torch(module, example, *, input_shape_name="input"):
    """Export ``module`` to ONNX bytes with a dynamic batch (TorchScript exporter, opset 17)."""
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
        torch.onnx.export(
            module,
            example,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_shape_name],
            output_names=["logits"],
            dynamic_axes={input_shape_name: {0: "batch"}, "logits": {0: "batch"}},
        )
    return buffer.getvalue()


@pytest.fixture(scope="session")
def torch_cnn():
    """A small random CNN on (3, 12, 12) images with 5 classes: (torch module, ONNX bytes)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 8, 3, stride=2),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 5 * 5, 5),
    ).eval()
    return net, export_torch(net, torch.zeros(1, 3, 12, 12))


@pytest.fixture(scope="session")
def torch_mlp():
    """A small random MLP on 10 tabular features with 4 classes: (torch module, ONNX bytes)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    ).eval()
    return net, export_torch(net, torch.zeros(1, 10))
