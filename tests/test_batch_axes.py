"""Batch axes of inputs whose dimensions have no names: inferred where unambiguous, given otherwise.

The pattern is a stateful audio model's export: ``input [?, ?]``, ``state [2, ?, 128]`` and a
scalar ``sr``, none of the dynamic dimensions named.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import OPSET
from onnx import TensorProto, helper, numpy_helper

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError


def _stateful(state_shape) -> onnx.ModelProto:
    """``y = sr * sum_j x[:, j] + mean(state over its non-batch axes)``, shape (batch, 1)."""
    nodes = [
        helper.make_node("ReduceSum", ["input", "one"], ["x_sum"], keepdims=0),
        helper.make_node("ReduceMean", ["state"], ["s_mean"], axes=[0, 2], keepdims=0),
        helper.make_node("Cast", ["sr"], ["srf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x_sum", "srf"], ["scaled"]),
        helper.make_node("Add", ["scaled", "s_mean"], ["y0"]),
        helper.make_node("Unsqueeze", ["y0", "one"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "stateful",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, None]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, state_shape),
         helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
        [numpy_helper.from_array(np.array([1], np.int64), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 5)).astype(np.float32), rng.normal(size=(2, 3, 128)).astype(np.float32)


def test_the_only_dynamic_axis_of_a_fixed_input_is_its_batch(data):
    x, state = data
    model = ae.load(_stateful([2, None, 128]), providers="cpu")
    assert model.input_spec("state").batch_axis == 1 and model.input_spec("sr").batch_axis is None
    fixed = {"state": state, "sr": np.array(16000, np.int64)}
    explanation = ae.FeatureAblation(model).explain(x, target=0, fixed_inputs=fixed)
    np.testing.assert_allclose(explanation.values, x * 16000, rtol=1e-4)
    expected = 16000 * x.sum(axis=1) + state.mean(axis=(0, 2))
    np.testing.assert_allclose(explanation.base_values, expected, rtol=1e-5)


def test_an_ambiguous_input_names_itself_and_the_override(data):
    x, state = data
    ambiguous = _stateful([None, None, 128])
    fixed = {"state": state, "sr": np.array(16000, np.int64)}
    with pytest.raises(ParameterError, match=r"fixed_inputs\['state'\].*axes \[0, 1\].*batch_axes=\{'state': AXIS\}"):
        ae.FeatureAblation(ae.load(ambiguous, providers="cpu")).explain(x, target=0, fixed_inputs=fixed)
    model = ae.load(ambiguous, providers="cpu", batch_axes={"state": 1})
    explanation = ae.FeatureAblation(model).explain(x, target=0, fixed_inputs=fixed)
    np.testing.assert_allclose(explanation.values, x * 16000, rtol=1e-4)


@pytest.mark.parametrize("batch_axes, message", [
    ({"nope": 0}, "no input 'nope'"), ({"state": 3}, r"batch_axes\['state'\]"), ([1], "must be a dict"),
])
def test_bad_batch_axes_are_refused(batch_axes, message):
    with pytest.raises(ParameterError, match=message):
        ae.load(_stateful([2, None, 128]), providers="cpu", batch_axes=batch_axes)
