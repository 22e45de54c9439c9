"""graph.gradient's engine: naming, pruning, fan-out, errors, rule overrides (Guided Backprop, a
DeepLIFT-style rule with extra inputs), and ties compared element by element with PyTorch."""

import numpy as np
import onnx
import pytest
from gradient_cases import assert_close, run_gradient, session
from onnx import TensorProto, helper, numpy_helper

from agnostic_explain.errors import ParameterError
from agnostic_explain.graph import gradient
from agnostic_explain.graph.gradient import RULES, guided_relu

torch = pytest.importorskip("torch")


def _model(nodes, inputs, outputs, initializers=(), opset=17):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              initializer=[numpy_helper.from_array(v, n) for n, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _mlp(rng, hidden=6):
    w1 = rng.standard_normal((4, hidden)).astype(np.float32)
    w2 = rng.standard_normal((hidden, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["pre"], name="first"),
             helper.make_node("Relu", ["pre"], ["hidden"], name="relu"),
             helper.make_node("MatMul", ["hidden", "w2"], ["y"], name="second")]
    return _model(nodes, [("x", ["n", 4])], [("y", ["n", 3])], [("w1", w1), ("w2", w2)]), w1, w2


def test_seed_inputs_and_grad_outputs_are_named_and_typed():
    proto, _, _ = _mlp(np.random.default_rng(0))
    edited = gradient(proto, ["x", "hidden"])
    assert [value.name for value in edited.graph.input] == ["x", "y__seed"]
    assert [value.name for value in edited.graph.output] == ["y", "x__grad", "hidden__grad"]
    assert edited.graph.output[1].type == proto.graph.input[0].type
    assert edited.graph.input[1].type == proto.graph.output[0].type
    onnx.checker.check_model(edited, full_check=True)
    assert len(proto.graph.node) == 3, "the argument is left unchanged"


def test_only_the_path_between_wrt_and_output_is_differentiated():
    rng = np.random.default_rng(1)
    proto, _, _ = _mlp(rng)
    edited = gradient(proto, "hidden")
    backward = edited.graph.node[len(proto.graph.node):]
    assert [node.op_type for node in backward] == ["Transpose", "MatMul", "Identity"]


def test_an_intermediate_output_gets_the_seed():
    rng = np.random.default_rng(7)
    proto, w1, _ = _mlp(rng)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    seeds = {"hidden__seed": rng.standard_normal((3, 6)).astype(np.float32)}
    _, grads = run_gradient(proto, {"x": x}, "x", output="hidden", seeds=seeds)
    assert "hidden__seed" in [value.name for value in gradient(proto, "x", output="hidden").graph.input]
    expected = (seeds["hidden__seed"] * (x @ w1 > 0)) @ w1.T
    assert_close(grads["x"], expected)


def test_fan_out_is_accumulated():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    nodes = [helper.make_node("Tanh", ["x"], ["t"]), helper.make_node("Mul", ["t", "x"], ["m"]),
             helper.make_node("Add", ["m", "t"], ["y"]), helper.make_node("Sigmoid", ["t"], ["z"])]
    graph = helper.make_graph(nodes, "g", [x], [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3])
                                                 for n in ("y", "z")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    value = np.random.default_rng(2).standard_normal((5, 3)).astype(np.float32)
    seeds, grads = run_gradient(proto, {"x": value}, "x")

    def function(tx):
        t = torch.tanh(tx)
        return (t * tx + t) * torch.tensor(seeds["y__seed"]) + torch.sigmoid(t) * torch.tensor(seeds["z__seed"])

    tx = torch.tensor(value, requires_grad=True)
    function(tx).sum().backward()
    assert_close(grads["x"], tx.grad.numpy())


def test_unbroadcast_with_unrelated_symbolic_dims_is_resolved_at_run_time():
    """a is [p, q], b is [r, q]: which of a's axes were broadcast is only known when it runs."""
    nodes = [helper.make_node("Mul", ["a", "b"], ["y"])]
    proto = _model(nodes, [("a", ["p", "q"]), ("b", ["r", "q"])], [("y", ["s", "q"])])
    rng = np.random.default_rng(3)
    for a_rows, b_rows in ((1, 4), (4, 1), (3, 3)):
        a = rng.standard_normal((a_rows, 5)).astype(np.float32)
        b = rng.standard_normal((b_rows, 5)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"a": a, "b": b}, ["a", "b"])
        ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
        (ta * tb).backward(torch.tensor(seeds["y__seed"]))
        assert_close(grads["a"], ta.grad.numpy())
        assert_close(grads["b"], tb.grad.numpy())


def test_an_operator_without_a_rule_is_refused_by_name():
    nodes = [helper.make_node("Cos", ["x"], ["c"], name="my_cosine"), helper.make_node("Tanh", ["c"], ["y"])]
    proto = _model(nodes, [("x", [2])], [("y", [2])])
    with pytest.raises(ParameterError, match="'Cos'.*'my_cosine'"):
        gradient(proto, "x")
    # off the path it does not matter
    assert gradient(proto, "c").graph.output[-1].name == "c__grad"


@pytest.mark.parametrize("kwargs, message", [
    ({"wrt": "nope"}, "wrt: 'nope'"),
    ({"wrt": "w1"}, "initializer"),
    ({"wrt": []}, "wrt must be"),
    ({"wrt": "x", "output": "pre", "rules": "Relu"}, "rules must be a dict"),
    ({"wrt": "hidden", "output": "pre"}, "output: 'pre' does not depend"),
])
def test_bad_arguments_name_the_parameter(kwargs, message):
    proto, _, _ = _mlp(np.random.default_rng(4))
    with pytest.raises(ParameterError, match=message):
        gradient(proto, **kwargs)


def test_a_name_clash_and_an_old_opset_are_refused():
    nodes = [helper.make_node("Tanh", ["x"], ["y"]), helper.make_node("Tanh", ["x"], ["y__seed"])]
    with pytest.raises(ParameterError, match="y__seed"):
        gradient(_model(nodes, [("x", [2])], [("y", [2]), ("y__seed", [2])]), "x", output="y")
    with pytest.raises(ParameterError, match="opset 11"):
        gradient(_model(nodes[:1], [("x", [2])], [("y", [2])], opset=11), "x")


def test_the_rule_table_covers_the_listed_operators():
    listed = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "Relu", "LeakyRelu", "Clip", "Max", "Min", "Where", "BatchNormalization", "LayerNormalization", "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceMax", "GlobalAveragePool", "AveragePool", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Expand", "Pad", "Resize", "Cast", "Identity", "Dropout", "Shape", "ConstantOfShape", "Range", "Equal", "Less", "Greater", "Not", "ArgMax"]
    assert not set(listed) - set(RULES)


def test_guided_backprop_override_matches_captum():
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                                 torch.nn.Linear(8, 3)).eval()
    from gradient_cases import export

    proto = export(module, (torch.zeros(1, 4),), ["x"], ["y"], {"x": {0: "n"}, "y": {0: "n"}})
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    target = 2
    seed = np.zeros((6, 3), dtype=np.float32)
    seed[:, target] = 1
    _, grads = run_gradient(proto, {"x": x}, "x", seeds={"y__seed": seed}, rules={"Relu": guided_relu})
    expected = captum.GuidedBackprop(module).attribute(torch.tensor(x), target=target).detach().numpy()
    assert_close(grads["x"], expected)
    _, plain = run_gradient(proto, {"x": x}, "x", seeds={"y__seed": seed})
    assert not np.allclose(plain["x"], grads["x"]), "the override changed the gradient"


def rescale_relu(ctx, node, grads):
    """DeepLIFT's rescale rule: g * (relu(x) - relu(x_ref)) / (x - x_ref), x_ref fed as an extra input."""
    x, y = node.input[0], node.output[0]
    reference = ctx.add_input(x + "__reference", like=x)
    delta_out = ctx.op("Sub", [y, ctx.op("Relu", [reference])])
    return [ctx.mul(grads[0], ctx.op("Div", [delta_out, ctx.op("Sub", [x, reference])]))]


def test_a_rule_can_take_extra_context_as_inputs_deeplift_rescale():
    """With DeepLIFT's rescale rule, (x - x_ref) * grad sums to f(x) - f(x_ref) on a Linear-ReLU-Linear net."""
    rng = np.random.default_rng(6)
    proto, w1, w2 = _mlp(rng)
    edited = gradient(proto, "x", rules={"Relu": rescale_relu})
    assert "pre__reference" in [value.name for value in edited.graph.input]
    x = rng.standard_normal((5, 4)).astype(np.float32)
    baseline = np.zeros_like(x) + 0.1
    seed = np.zeros((5, 3), dtype=np.float32)
    seed[:, 1] = 1
    y, grad = session(edited).run(["y", "x__grad"], {"x": x, "y__seed": seed, "pre__reference": baseline @ w1})
    y_reference = np.maximum(baseline @ w1, 0) @ w2
    np.testing.assert_allclose(((x - baseline) * grad).sum(1), y[:, 1] - y_reference[:, 1], rtol=1e-4, atol=1e-5)
