"""graph.gradient on hand-built float64 graphs, against central finite differences.

Covers the rules no torch export in the other files reaches: variadic Sum/Mean with
broadcasting, Dropout and Identity, GatherElements, GlobalMaxPool, ReduceMin, Einsum with a
letter summed in one operand alone, Pad by edge, cubic Resize, and the zero-gradient Sign/Floor.
"""

import numpy as np
import onnx
import pytest
from gradient_cases import assert_close, run_gradient, session
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inputs, initializers=(), dtype=TensorProto.DOUBLE):
    values = [helper.make_tensor_value_info(name, dtype, shape) for name, shape in inputs]
    graph = helper.make_graph(nodes, "g", values, [helper.make_tensor_value_info("y", dtype, None)],
                              initializer=[numpy_helper.from_array(v, n) for n, v in initializers])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model)
    typed = {value.name: value for value in inferred.graph.value_info}
    model.graph.output[0].CopyFrom(typed.get("y", inferred.graph.output[0]))
    return model


def _finite_differences(proto, feeds, name, seed, step=1e-6):
    forward = session(proto)
    gradient = np.zeros_like(feeds[name])
    flat = gradient.reshape(-1)
    for index in range(flat.size):
        shifted = {}
        for sign in (1, -1):
            moved = feeds[name].copy().reshape(-1)
            moved[index] += sign * step
            shifted[sign] = forward.run(["y"], {**feeds, name: moved.reshape(feeds[name].shape)})[0]
        flat[index] = ((shifted[1] - shifted[-1]) / (2 * step) * seed).sum()
    return gradient


def node(op_type, inputs, output="y", **attributes):
    return helper.make_node(op_type, inputs, [output], **attributes)


CASES = {
    "sum_mean_variadic_broadcast": ([node("Sum", ["a", "b", "c"], "s"), node("Mean", ["s", "b"])],
                                    {"a": (3, 4), "b": (4,), "c": (3, 1)}),
    "dropout_identity": ([node("Dropout", ["a"], "d"), node("Identity", ["d"], "i"), node("Mul", ["i", "a"])],
                         {"a": (2, 3)}),
    "gather_elements": ([node("GatherElements", ["a", "index"], axis=1)], {"a": (3, 4)}),
    "global_max_pool": ([node("GlobalMaxPool", ["a"])], {"a": (2, 3, 4, 5)}),
    "reduce_min": ([node("ReduceMin", ["a"], axes=[1], keepdims=0)], {"a": (3, 4)}),
    "einsum_letter_summed_alone": ([node("Einsum", ["a", "b"], equation="ij,jk->i")], {"a": (3, 4), "b": (4, 5)}),
    "einsum_batched": ([node("Einsum", ["a", "b"], equation="bij,bkj->bik")], {"a": (2, 3, 4), "b": (2, 5, 4)}),
    "pad_edge": ([node("Pad", ["a", "pads"], mode="edge")], {"a": (3, 4)}),
    "resize_cubic": ([node("Resize", ["a", "", "scales"], mode="cubic")], {"a": (1, 2, 4, 5)}),
    "sign_floor_are_flat": ([node("Sign", ["a"], "s"), node("Floor", ["a"], "f"), node("Add", ["s", "f"], "t"),
                             node("Mul", ["t", "a"])], {"a": (5,)}),
}
FLOAT32_ONLY = {"global_max_pool", "resize_cubic", "sum_mean_variadic_broadcast"}
CONSTANTS = [("index", np.array([[0, 3, 3], [1, 1, 0], [2, 0, 1]], dtype=np.int64)),
             ("pads", np.array([1, 2, 2, 1], dtype=np.int64)),
             ("scales", np.array([1, 1, 2, 1.5], dtype=np.float32))]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_matches_finite_differences(case):
    nodes, shapes = CASES[case]
    used = {name for n in nodes for name in n.input}
    # ONNX Runtime has no float64 GlobalMaxPool, Resize or Mean: those run in float32, where they
    # are piecewise linear, so a larger step stays exact up to rounding (1e-7 / step)
    single = case in FLOAT32_ONLY
    dtype, numpy_dtype = (TensorProto.FLOAT, np.float32) if single else (TensorProto.DOUBLE, np.float64)
    proto = _model(nodes, list(shapes.items()), [c for c in CONSTANTS if c[0] in used], dtype)
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(0.2, 1.5, shape).astype(numpy_dtype) for name, shape in shapes.items()}
    output = session(proto).run(["y"], feeds)[0]
    seed = rng.standard_normal(output.shape).astype(numpy_dtype)
    _, grads = run_gradient(proto, feeds, list(shapes), seeds={"y__seed": seed})
    for name in shapes:
        expected = _finite_differences(proto, feeds, name, seed, step=1e-3 if single else 1e-6)
        assert_close(grads[name], expected, rtol=1e-3 if single else 1e-6)


def test_batch_normalization_with_computed_statistics():
    """Scale and variance computed in the graph (not initializers): the factor is built at run time."""
    nodes = [node("Abs", ["v"], "variance"), node("Exp", ["s"], "scale"),
             helper.make_node("BatchNormalization", ["a", "scale", "b", "m", "variance"], ["y"], epsilon=1e-3)]
    proto = _model(nodes, [("a", (2, 3, 4, 4)), ("s", (3,)), ("b", (3,)), ("m", (3,)), ("v", (3,))])
    rng = np.random.default_rng(1)
    feeds = {name: rng.uniform(0.2, 1.5, shape) for name, shape in
             (("a", (2, 3, 4, 4)), ("s", (3,)), ("b", (3,)), ("m", (3,)), ("v", (3,)))}
    seed = rng.standard_normal((2, 3, 4, 4))
    _, grads = run_gradient(proto, feeds, "a", seeds={"y__seed": seed})
    assert_close(grads["a"], _finite_differences(proto, feeds, "a", seed), rtol=1e-6)
