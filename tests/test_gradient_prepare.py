"""Before differentiating, zero Pads read only by Convs are folded into them (graph.gradient.prepare),
and models are served without trailing empty input names (graph.tidy), so that ONNX Runtime's
Pad fusion applies to torch's ``Pad(x, pads, "")``. Both keep every output identical."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from agnostic_explain.graph import gradient
from agnostic_explain.graph.gradient.prepare import pads_in_convs
from agnostic_explain.graph.tidy import drop_empty_trailing_inputs
from agnostic_explain.runtime import OnnxModel
from gradient_cases import assert_close, check_two_batches, export, run_gradient, session, torch_vjp


class SamePadded(nn.Module):
    """TensorFlow-style "same" padding as EfficientNet-PyTorch exports it: an explicit Pad, then Convs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 8, 3, stride=2)
        self.depthwise = nn.Conv2d(8, 8, 5, stride=2, groups=8, padding=(1, 0))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(nn.functional.pad(x, (0, 1, 0, 1))))
        x = torch.relu(self.depthwise(nn.functional.pad(x, (1, 2, 2, 1))))
        return self.head(x.mean(dim=(2, 3)))


def _ops(proto):
    return [node.op_type for node in proto.graph.node]


def test_same_padding_folds_into_the_convs_and_matches_autograd():
    module = SamePadded().eval()
    rng = np.random.default_rng(0)
    check_two_batches(module, (3, 23, 22), rng)
    proto = export(module, (torch.zeros(1, 3, 23, 22),), ["x"], ["out"], {"x": {0: "n"}, "out": {0: "n"}})
    assert _ops(proto).count("Pad") == 2
    folded = pads_in_convs(proto)
    assert "Pad" not in _ops(folded) and _ops(proto).count("Pad") == 2  # the argument is left alone
    x = rng.standard_normal((3, 3, 23, 22)).astype(np.float32)
    np.testing.assert_array_equal(session(folded).run(None, {"x": x})[0], session(proto).run(None, {"x": x})[0])
    edited = gradient(proto, "x")
    assert "Pad" not in _ops(edited)
    # the backward crops through ConvTranspose's pads: no Slice reads a ConvTranspose
    produced_by = {out: node.op_type for node in edited.graph.node for out in node.output}
    assert not [n for n in edited.graph.node if n.op_type == "Slice" and produced_by.get(n.input[0]) == "ConvTranspose"]


def test_a_pad_that_is_wrt_or_read_elsewhere_or_not_zero_is_kept():
    rng = np.random.default_rng(1)

    class Padded(nn.Module):
        """A pad that must stay: read by a mean besides the Conv, or not a zero pad."""

        def __init__(self, value=0.0, mode="constant", mean=0.0):
            super().__init__()
            self.conv, self.value, self.mode, self.mean = nn.Conv2d(2, 3, 3), value, mode, mean

        def forward(self, x):
            extra = {"value": self.value} if self.mode == "constant" else {}
            p = nn.functional.pad(x, (1, 1, 1, 1), mode=self.mode, **extra)
            return self.conv(p).sum(dim=(2, 3)) + p.mean(dim=(1, 2, 3)).unsqueeze(1) * self.mean

    for module in (Padded(mean=0.5).eval(), Padded(value=1.5).eval(), Padded(mode="reflect").eval()):
        proto = export(module, (torch.zeros(1, 2, 6, 6),), ["x"], ["out"], {"x": {0: "n"}, "out": {0: "n"}})
        assert "Pad" in _ops(pads_in_convs(proto))  # read by the mean too, or not a zero pad
        x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["out__seed"])[0])
    # differentiating with respect to the padded tensor keeps it
    module = SamePadded().eval()
    proto = export(module, (torch.zeros(1, 3, 9, 9),), ["x"], ["out"], {"x": {0: "n"}, "out": {0: "n"}})
    pad_output = next(node.output[0] for node in proto.graph.node if node.op_type == "Pad")
    assert pad_output in {out for node in pads_in_convs(proto, keep={pad_output}).graph.node for out in node.output}
    seeds, grads = run_gradient(proto, {"x": rng.standard_normal((2, 3, 9, 9)).astype(np.float32)}, pad_output)
    assert grads[pad_output].shape == (2, 3, 10, 10)


def _pad_conv_model(pad_inputs):
    weight = numpy_helper.from_array(np.random.default_rng(2).standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    nodes = [helper.make_node("Pad", ["x", "pads", *pad_inputs], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3]),
             helper.make_node("Clip", ["y", "", "six"], ["z"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 8, 8])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 4, 8, 8])],
                              initializer=[weight, pads, numpy_helper.from_array(np.float32(6), "six")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_pad_read_inside_a_subgraph_is_kept():
    proto = _pad_conv_model([])
    branch = helper.make_graph([helper.make_node("Identity", ["p"], ["q"])], "then", [],
                               [helper.make_tensor_value_info("q", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["r"])], "else", [],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    proto.graph.node.append(helper.make_node("If", ["flag"], ["chosen"], then_branch=branch, else_branch=other))
    proto.graph.input.append(helper.make_tensor_value_info("flag", TensorProto.BOOL, []))
    proto.graph.output.append(helper.make_tensor_value_info("chosen", TensorProto.FLOAT, None))
    assert pads_in_convs(proto) is proto
    assert "Pad" not in _ops(pads_in_convs(_pad_conv_model([])))  # the same model without the If folds


def _optimized_ops(proto, tmp_path) -> list[str]:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return _ops(onnx.load(str(tmp_path / "optimized.onnx")))


def test_trailing_empty_inputs_are_dropped_so_onnx_runtime_fuses_the_pad(tmp_path):
    proto = _pad_conv_model([""])
    tidied = drop_empty_trailing_inputs(proto)
    assert list(proto.graph.node[0].input) == ["x", "pads", ""]  # the argument is left alone
    assert list(tidied.graph.node[0].input) == ["x", "pads"]
    assert list(tidied.graph.node[2].input) == ["y", "", "six"]  # an empty name before others stays
    assert "Pad" not in _optimized_ops(tidied, tmp_path)
    x = np.random.default_rng(3).standard_normal((2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(session(tidied).run(None, {"x": x})[0], session(proto).run(None, {"x": x})[0])
    assert drop_empty_trailing_inputs(tidied) is tidied


def test_subgraphs_are_tidied_too():
    inner = helper.make_graph([helper.make_node("Clip", ["x", "lo", ""], ["c"])], "then", [],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["d"])], "else", [],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, None)])
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=inner, else_branch=other)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]), helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializer=[numpy_helper.from_array(np.float32(0), "lo")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    tidied = drop_empty_trailing_inputs(proto)
    then = next(a.g for a in tidied.graph.node[0].attribute if a.name == "then_branch")
    assert list(then.node[0].input) == ["x", "lo"]
    x = np.array([-1.0, 0.5, 2.0], np.float32)
    assert session(tidied).run(None, {"x": x, "flag": np.array(True)})[0].tolist() == [0.0, 0.5, 2.0]


@pytest.mark.parametrize("from_file", [False, True])
def test_the_runtime_serves_the_tidied_graph_and_keeps_the_users_model(tmp_path, from_file):
    proto = _pad_conv_model([""])
    source = proto
    if from_file:
        onnx.save(proto, tmp_path / "model.onnx")
        source = tmp_path / "model.onnx"
    model = OnnxModel(source, providers="cpu")
    assert list(model.proto.graph.node[0].input) == ["x", "pads", ""]
    assert (model.path is not None) == from_file
    x = np.random.default_rng(4).standard_normal((2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), session(proto).run(None, {"x": x})[0])
