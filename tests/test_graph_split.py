"""graph.split on hand-built graphs: chains, residuals, skips from the input, branches, If bodies."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.graph import expose, split
from conftest import float_input, make_model, weights

F32 = {"rtol": 1e-5, "atol": 1e-5}


def run(proto, **feeds) -> dict:
    """Every output of ``proto`` by name (through load, so each part also passes the checker)."""
    model = ae.load(proto, providers="cpu")
    return dict(zip([spec.name for spec in model.outputs], model.run(feeds)))


def names(values) -> list[str]:
    return [value.name for value in values]


def first_dims(values) -> list:
    return [value.type.tensor_type.shape.dim[0].dim_param for value in values]


# -- models -----------------------------------------------------------------------------------
CHAIN_W, CHAIN_B = weights(1, 4, 3), weights(2, 3)


def build_chain():
    """y = tanh(relu(2 x) @ W) + b, x of shape (batch, 4): one tensor per node, a chain."""
    return make_model(
        [
            helper.make_node("Mul", ["x", "two"], ["s"], name="scale"),
            helper.make_node("Relu", ["s"], ["r"], name="relu"),
            helper.make_node("MatMul", ["r", "W"], ["h"], name="fc"),
            helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
            helper.make_node("Add", ["t", "b"], ["y"], name="bias"),
        ],
        [float_input("x", ["batch", 4])],
        [float_input("y", ["batch", 3])],
        [("two", np.float32(2.0)), ("W", CHAIN_W), ("b", CHAIN_B)],
        metadata={"preprocessing": '{"scale": 1}', "class_names": '["a", "b", "c"]'},
    )


def chain_values(x) -> dict:
    s = 2 * x
    r = np.maximum(s, 0)
    h = r @ CHAIN_W
    t = np.tanh(h)
    return {"s": s, "r": r, "h": h, "t": t, "y": t + CHAIN_B}


RESIDUAL_W, RESIDUAL_V = weights(3, 4, 4), weights(4, 4, 4)


def build_residual(skip_from_input=False):
    """a = relu(x @ W); b = a @ V; y = b + a (or b + x with ``skip_from_input``)."""
    return make_model(
        [
            helper.make_node("MatMul", ["x", "W"], ["m"], name="fc1"),
            helper.make_node("Relu", ["m"], ["a"], name="relu"),
            helper.make_node("MatMul", ["a", "V"], ["b"], name="fc2"),
            helper.make_node("Add", ["b", "x" if skip_from_input else "a"], ["y"], name="skip"),
            helper.make_node("Neg", ["x"], ["unused"], name="dangling"),
        ],
        [float_input("x", ["batch", 4])],
        [float_input("y", ["batch", 4])],
        [("W", RESIDUAL_W), ("V", RESIDUAL_V)],
    )


def residual_values(x, skip_from_input=False) -> dict:
    a = np.maximum(x @ RESIDUAL_W, 0)
    b = a @ RESIDUAL_V
    return {"a": a, "b": b, "y": b + (x if skip_from_input else a)}


BRANCH_P, BRANCH_Q = weights(5, 4, 3), weights(6, 4, 3)


def build_branches():
    """p = relu(x @ P), q = tanh(x @ Q), y = p * q: two parallel branches."""
    return make_model(
        [
            helper.make_node("MatMul", ["x", "P"], ["pm"], name="fc_p"),
            helper.make_node("Relu", ["pm"], ["p"], name="relu_p"),
            helper.make_node("MatMul", ["x", "Q"], ["qm"], name="fc_q"),
            helper.make_node("Tanh", ["qm"], ["q"], name="tanh_q"),
            helper.make_node("Mul", ["p", "q"], ["y"], name="join"),
        ],
        [float_input("x", ["batch", 4])],
        [float_input("y", ["batch", 3])],
        [("P", BRANCH_P), ("Q", BRANCH_Q)],
    )


def build_if():
    """a = relu(x); i = If(cond, then: a * two, else: -a); y = i + 1.

    The branches read ``a`` and the initializer ``two`` from the outer graph.
    """
    then_branch = helper.make_graph([helper.make_node("Mul", ["a", "two"], ["t"], name="double")], "then", [],
                                    [float_input("t", ["batch", 4])])
    else_branch = helper.make_graph([helper.make_node("Neg", ["a"], ["e"], name="negate")], "else", [],
                                    [float_input("e", ["batch", 4])])
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("If", ["cond"], ["i"], name="choose", then_branch=then_branch, else_branch=else_branch),
            helper.make_node("Add", ["i", "one"], ["y"], name="shift"),
        ],
        [float_input("x", ["batch", 4]), helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [float_input("y", ["batch", 4])],
        [("two", np.float32(2.0)), ("one", np.float32(1.0))],
    )


def build_loop():
    """a = relu(x); v = x, then three times v = v + a (a read from the outer graph); y = -v."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["v_in", "a"], ["v_out"], name="step")],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, []), float_input("v_in", ["batch", 4])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), float_input("v_out", ["batch", 4])],
    )
    return make_model(
        [
            helper.make_node("Relu", ["x"], ["a"], name="relu"),
            helper.make_node("Loop", ["trips", "", "x"], ["v"], name="repeat", body=body),
            helper.make_node("Neg", ["v"], ["y"], name="negate"),
        ],
        [float_input("x", ["batch", 4])],
        [float_input("y", ["batch", 4])],
        [("trips", np.array(3, dtype=np.int64))],
    )


def if_values(x, cond) -> dict:
    a = np.maximum(x, 0)
    i = 2 * a if cond else -a
    return {"a": a, "i": i, "y": i + 1}


# -- chains -----------------------------------------------------------------------------------
@pytest.mark.parametrize("at", ["s", "r", "h", "t", "y"])
@pytest.mark.parametrize("rows", [1, 5])
def test_every_single_cut_of_a_chain_composes_to_the_model(at, rows, rng):
    proto = build_chain()
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    head, tail = split(proto, at=at)
    assert names(head.graph.input) == ["x"] and names(head.graph.output) == [at]
    assert names(tail.graph.input) == [at] and names(tail.graph.output) == ["y"]
    assert first_dims(head.graph.output) == first_dims(tail.graph.input) == ["batch"]
    middle = run(head, x=x)[at]
    expected = chain_values(x)
    np.testing.assert_allclose(middle, expected[at], **F32)
    np.testing.assert_allclose(run(tail, **{at: middle})["y"], run(proto, x=x)["y"], **F32)
    np.testing.assert_allclose(run(tail, **{at: middle})["y"], expected["y"], **F32)


def test_parts_take_only_their_initializers_and_the_metadata_that_fits():
    head, tail = split(build_chain(), at="r")
    assert names(head.graph.initializer) == ["two"] and names(tail.graph.initializer) == ["W", "b"]
    assert [prop.key for prop in head.metadata_props] == ["preprocessing"]
    assert [prop.key for prop in tail.metadata_props] == ["class_names"]


@pytest.mark.parametrize("rows", [1, 5])
def test_expose_keeps_the_symbolic_batch(rows, rng):
    exposed = expose(build_chain(), ["r", "h"])
    assert first_dims(exposed.graph.output) == ["batch"] * 3
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    values, expected = run(exposed, x=x), chain_values(x)
    for name in ("y", "r", "h"):
        np.testing.assert_allclose(values[name], expected[name], **F32)


# -- what a cut must separate -----------------------------------------------------------------
def test_residual_cut_inside_the_block_is_refused_naming_the_skip():
    with pytest.raises(ParameterError, match=r"at: .*does not separate.*\['a'\].*add them"):
        split(build_residual(), at="b")


def test_residual_cut_at_both_ends_of_the_skip_works(rng):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    head, tail = split(build_residual(), at=["a", "b"])
    assert names(head.graph.output) == ["a", "b"] and names(tail.graph.input) == ["a", "b"]
    parts = run(head, x=x)
    expected = residual_values(x)
    np.testing.assert_allclose(parts["a"], expected["a"], **F32)
    np.testing.assert_allclose(run(tail, a=parts["a"], b=parts["b"])["y"], expected["y"], **F32)
    assert [node.op_type for node in head.graph.node] == ["MatMul", "Relu", "MatMul"]
    assert [node.op_type for node in tail.graph.node] == ["Add"] and not tail.graph.initializer


@pytest.mark.parametrize("rows", [1, 5])
def test_skip_from_the_input_becomes_an_extra_tail_input(rows, rng):
    proto = build_residual(skip_from_input=True)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    head, tail = split(proto, at="a")
    assert names(head.graph.input) == ["x"] and names(tail.graph.input) == ["a", "x"]
    assert first_dims(tail.graph.input) == ["batch", "batch"]
    output = run(tail, a=run(head, x=x)["a"], x=x)["y"]
    np.testing.assert_allclose(output, run(proto, x=x)["y"], **F32)
    np.testing.assert_allclose(output, residual_values(x, skip_from_input=True)["y"], **F32)


def test_cut_at_a_tensor_the_outputs_do_not_need_is_refused():
    with pytest.raises(ParameterError, match=r"at: the outputs do not depend on \['unused'\]"):
        split(build_residual(), at="unused")


def test_cut_at_an_input_or_an_unknown_name_is_refused():
    with pytest.raises(ParameterError, match="'x' is a graph input; expected a node output"):
        split(build_chain(), at="x")
    with pytest.raises(ParameterError, match="'W' is a graph initializer"):
        split(build_chain(), at="W")
    with pytest.raises(ParameterError, match="did you mean 'relu'|did you mean 'r'"):
        split(build_chain(), at="rr")


# -- several cuts -----------------------------------------------------------------------------
@pytest.mark.parametrize("order", [["p", "q"], ["q", "p"]])
def test_two_branch_cut_keeps_the_order_asked(order, rng):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    head, tail = split(build_branches(), at=order)
    assert names(head.graph.output) == order and names(tail.graph.input) == order
    assert [node.op_type for node in tail.graph.node] == ["Mul"] and not tail.graph.initializer
    parts = run(head, x=x)
    p, q = np.maximum(x @ BRANCH_P, 0), np.tanh(x @ BRANCH_Q)
    np.testing.assert_allclose(parts["p"], p, **F32)
    np.testing.assert_allclose(parts["q"], q, **F32)
    np.testing.assert_allclose(run(tail, **parts)["y"], p * q, **F32)


def test_cut_at_one_branch_recomputes_the_other_from_the_input(rng):
    x = rng.normal(size=(5, 4)).astype(np.float32)
    head, tail = split(build_branches(), at="p")
    assert names(tail.graph.input) == ["p", "x"] and names(tail.graph.initializer) == ["Q"]
    output = run(tail, p=run(head, x=x)["p"], x=x)["y"]
    np.testing.assert_allclose(output, np.maximum(x @ BRANCH_P, 0) * np.tanh(x @ BRANCH_Q), **F32)


# -- subgraphs --------------------------------------------------------------------------------
def test_cut_inside_an_if_body_is_refused_naming_the_if_node():
    with pytest.raises(ParameterError, match=r"'t' is defined inside the body of If node 'choose'"):
        split(build_if(), at="t")
    with pytest.raises(ParameterError, match=r"'e' is defined inside the body of If node 'choose'"):
        expose(build_if(), ["e"])


@pytest.mark.parametrize("cond", [True, False])
def test_cut_after_an_if_whose_branches_read_outer_tensors(cond, rng):
    proto = build_if()
    x = rng.normal(size=(5, 4)).astype(np.float32)
    flag = np.array(cond)
    expected = if_values(x, cond)
    head, tail = split(proto, at="i")
    assert names(head.graph.input) == ["x", "cond"] and "two" in names(head.graph.initializer)
    assert names(tail.graph.input) == ["i"] and [node.op_type for node in tail.graph.node] == ["Add"]
    middle = run(head, x=x, cond=flag)["i"]
    np.testing.assert_allclose(middle, expected["i"], **F32)
    np.testing.assert_allclose(run(tail, i=middle)["y"], expected["y"], **F32)


@pytest.mark.parametrize("cond", [True, False])
def test_cut_before_an_if_passes_the_outer_tensors_its_branches_read(cond, rng):
    proto = build_if()
    x = rng.normal(size=(5, 4)).astype(np.float32)
    flag = np.array(cond)
    head, tail = split(proto, at="a")
    assert names(head.graph.output) == ["a"] and names(head.graph.input) == ["x"]
    # "a" is read only inside the branches; "two" is an initializer read only there
    assert names(tail.graph.input) == ["a", "cond"] and set(names(tail.graph.initializer)) == {"two", "one"}
    output = run(tail, a=run(head, x=x)["a"], cond=flag)["y"]
    np.testing.assert_allclose(output, if_values(x, cond)["y"], **F32)
    np.testing.assert_allclose(output, run(proto, x=x, cond=flag)["y"], **F32)


def test_split_fills_a_cut_tensor_type_from_a_run(rng):
    """A cut at a Reshape to an input's values: inference misses the rank, a run finds it."""
    proto = make_model(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "shape"], ["y0"], name="reshape"),
            helper.make_node("Neg", ["y0"], ["y"], name="neg"),
        ],
        [float_input("x", ["batch", 6]), helper.make_tensor_value_info("shape", TensorProto.INT64, [None])],
        [float_input("y", ["a", "b", "c"])],
    )
    x = rng.normal(size=(4, 6)).astype(np.float32)
    head, tail = split(proto, at="y0", sample={"x": x, "shape": np.array([4, 3, 2])})
    declared = tail.graph.input[0].type.tensor_type
    assert declared.elem_type == TensorProto.FLOAT and len(declared.shape.dim) == 3
    onnx.checker.check_model(tail)
    middle = run(head, x=x[:2], shape=np.array([2, 2, 3]))["y0"]  # other sizes than the sample's
    np.testing.assert_array_equal(run(tail, y0=middle)["y"], -np.maximum(x[:2], 0).reshape(2, 2, 3))


def test_loop_body_cut_is_refused_and_its_outer_reads_become_tail_inputs(rng):
    proto = build_loop()
    with pytest.raises(ParameterError, match=r"'v_out' is defined inside the body of Loop node 'repeat'"):
        split(proto, at="v_out")
    x = rng.normal(size=(5, 4)).astype(np.float32)
    head, tail = split(proto, at="a")
    assert names(tail.graph.input) == ["a", "x"] and names(tail.graph.initializer) == ["trips"]
    output = run(tail, a=run(head, x=x)["a"], x=x)["y"]
    np.testing.assert_allclose(output, -(x + 3 * np.maximum(x, 0)), **F32)
    np.testing.assert_allclose(output, run(proto, x=x)["y"], **F32)
