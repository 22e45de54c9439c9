"""graph.gradient on layers, normalisations and pools, against torch autograd, at two batch sizes."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = nn.functional

from gradient_cases import assert_close, check_two_batches, export, run_gradient, torch_vjp


class Function(nn.Module):
    def __init__(self, function, **modules):
        super().__init__()
        self.function = function
        self.layers = nn.ModuleDict(modules)

    def forward(self, x):
        return self.function(self.layers, x)


def _randomize_batch_norm(module):
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-1, 1)
            layer.running_var.uniform_(0.5, 2)
            layer.weight.data.uniform_(-2, 2)
    return module


CASES = {
    "conv_stride1_padded": (lambda m, x: m["c"](x), {"c": nn.Conv2d(3, 5, 3, padding=1)}, (3, 9, 9)),
    "conv_stride2_odd_size": (lambda m, x: m["c"](x), {"c": nn.Conv2d(3, 4, 3, stride=2)}, (3, 10, 10)),
    "conv_stride2_padded_even_size": (lambda m, x: m["c"](x), {"c": nn.Conv2d(3, 4, 3, stride=2, padding=1)},
                                      (3, 8, 8)),
    "conv_grouped_dilated": (lambda m, x: m["c"](x), {"c": nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2)},
                             (4, 8, 8)),
    "conv_depthwise_stride2": (lambda m, x: m["c"](x), {"c": nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4)},
                               (4, 11, 11)),
    "conv1d_no_bias": (lambda m, x: m["c"](x), {"c": nn.Conv1d(3, 2, 4, bias=False)}, (3, 12)),
    "conv_transpose": (lambda m, x: m["c"](x), {"c": nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1,
                                                                          output_padding=1)}, (3, 5, 5)),
    "linear_gemm": (lambda m, x: m["l"](x), {"l": nn.Linear(6, 3)}, (6,)),
    "linear_matmul_3d": (lambda m, x: m["l"](x), {"l": nn.Linear(6, 3)}, (4, 6)),
    "batch_norm": (lambda m, x: m["b"](x), {"b": nn.BatchNorm2d(3)}, (3, 4, 4)),
    "layer_norm": (lambda m, x: m["n"](x), {"n": nn.LayerNorm(6)}, (4, 6)),
    "layer_norm_two_axes": (lambda m, x: m["n"](x), {"n": nn.LayerNorm([4, 6])}, (4, 6)),
    "softmax_log_softmax": (lambda m, x: F.softmax(x, -1) * 3 + F.log_softmax(x, 1), {}, (4, 5)),
    "global_average_pool": (lambda m, x: F.adaptive_avg_pool2d(x, 1), {}, (3, 5, 6)),
    "average_pool": (lambda m, x: F.avg_pool2d(x, 3, 2), {}, (2, 8, 8)),
    "average_pool_padded_exclusive": (lambda m, x: F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=False), {},
                                      (2, 7, 7)),
    "average_pool_padded_inclusive": (lambda m, x: F.avg_pool2d(x, 3, 1, padding=1), {}, (2, 5, 5)),
    "max_pool_overlapping": (lambda m, x: F.max_pool2d(x, 3, 2, padding=1), {}, (3, 9, 9)),
    "max_pool_disjoint": (lambda m, x: F.max_pool2d(x, 2), {}, (3, 8, 8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_rule_matches_torch(case):
    function, modules, shape = CASES[case]
    torch.manual_seed(0)
    module = _randomize_batch_norm(Function(function, **modules)).eval()
    check_two_batches(module, shape, np.random.default_rng(2))


def test_gemm_transposes_and_bias_broadcast():
    """Gemm with transA/transB and alpha/beta, both operands and the bias differentiated."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(3)
    for trans_a in (0, 1):
        for trans_b in (0, 1):
            a = rng.standard_normal((4, 3) if trans_a else (3, 4)).astype(np.float32)
            b = rng.standard_normal((5, 4) if trans_b else (4, 5)).astype(np.float32)
            c = rng.standard_normal((5,)).astype(np.float32)
            node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], alpha=0.5, beta=2.0, transA=trans_a, transB=trans_b)
            graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, v.shape)
                                                    for n, v in (("a", a), ("b", b), ("c", c))],
                                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, (3, 5))])
            proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
            seeds, grads = run_gradient(proto, {"a": a, "b": b, "c": c}, ["a", "b", "c"])

            def gemm(ta, tb, tc, trans_a=trans_a, trans_b=trans_b):
                left = ta.T if trans_a else ta
                right = tb.T if trans_b else tb
                return 0.5 * left @ right + 2.0 * tc

            expected = torch_vjp(gemm, [a, b, c], seeds["y__seed"])
            for name, want in zip("abc", expected):
                assert_close(grads[name], want)


class Attention(nn.Module):
    def forward(self, q, k):
        scores = torch.matmul(q, k.transpose(-1, -2)) / 2.0
        mixed = torch.einsum("bij,bjd->bid", F.softmax(scores, -1), k)
        return mixed + torch.matmul(q, torch.ones(5))[..., None]


def test_matmul_einsum_both_operands():
    """Batched MatMul of two activations, an Einsum, and a MatMul by a 1-D vector."""
    module = Attention()
    rng = np.random.default_rng(4)
    q, k = (rng.standard_normal((2, 3, 5)).astype(np.float32) for _ in range(2))
    proto = export(module, (torch.tensor(q), torch.tensor(k)), ["q", "k"], ["out"],
                   {"q": {0: "b", 1: "s"}, "k": {0: "b", 1: "s"}, "out": {0: "b", 1: "s"}})
    assert {"MatMul", "Einsum"} <= {node.op_type for node in proto.graph.node}
    for batch, length in ((2, 3), (4, 7)):
        q, k = (rng.standard_normal((batch, length, 5)).astype(np.float32) for _ in range(2))
        seeds, grads = run_gradient(proto, {"q": q, "k": k}, ["q", "k"])
        expected = torch_vjp(module, [q, k], seeds["out__seed"])
        assert_close(grads["q"], expected[0])
        assert_close(grads["k"], expected[1])


@pytest.mark.parametrize("case", ["conv_stride2_padded_even_size", "conv_depthwise_stride2", "average_pool",
                                  "average_pool_padded_exclusive", "max_pool_overlapping", "conv_transpose"])
def test_strided_layers_with_dynamic_height_and_width(case):
    """Spatial sizes unknown at edit time: the transposed windows are fitted to Shape(x) at run time."""
    function, modules, shape = CASES[case]
    torch.manual_seed(0)
    module = Function(function, **modules).eval()
    rng = np.random.default_rng(7)
    axes = {0: "batch", 2: "height", 3: "width"}
    proto = export(module, (torch.zeros(2, *shape),), ["x"], ["out"], {"x": axes, "out": axes})
    for extra in (0, 1):
        x = rng.standard_normal((2, shape[0], shape[1] + extra, shape[2] + extra)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["out__seed"])[0])
