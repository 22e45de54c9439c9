"""The automatic layer of the CAM methods on the export patterns of real architectures.

Each model is built in code with random weights and exported the usual way: a ConvNeXt-style
network (channels-last LayerNorm blocks and a pooled channels-last head), a small ViT, a
recurrent and a text model (no map at all), and the EfficientNet-PyTorch pattern whose tail
reads ``Shape(input)`` and whose cut tensor loses its batch symbol to shape inference.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError

torch = pytest.importorskip("torch")
from conftest import OPSET, export_torch  # noqa: E402


class _ChannelsLastBlock(torch.nn.Module):
    """ConvNeXt's block: depthwise conv, then LayerNorm and an MLP on channels-last tensors."""

    def __init__(self, dim):
        super().__init__()
        self.dw = torch.nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.up, self.down = torch.nn.Linear(dim, 2 * dim), torch.nn.Linear(2 * dim, dim)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.down(torch.nn.functional.gelu(self.up(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class _ConvNeXtLike(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 4, stride=4)
        self.blocks = torch.nn.Sequential(_ChannelsLastBlock(8), _ChannelsLastBlock(8))
        self.head_norm = torch.nn.LayerNorm(8)
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        pooled = x.mean((-2, -1), keepdim=True).permute(0, 2, 3, 1)  # (batch, 1, 1, C): not a map
        return self.fc(self.head_norm(pooled).flatten(1))


class _Block(torch.nn.Module):
    """A pre-norm transformer block, as timm's ViT writes it."""

    def __init__(self, dim, heads=2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(dim), torch.nn.LayerNorm(dim)
        self.qkv, self.proj = torch.nn.Linear(dim, 3 * dim), torch.nn.Linear(dim, dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(), torch.nn.Linear(2 * dim, dim))

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((attention @ v).transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.norm2(x))


class _TinyViT(torch.nn.Module):
    def __init__(self, dim=16, grid=4, patch=4):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = torch.nn.Parameter(torch.randn(1, 1, dim))
        self.position = torch.nn.Parameter(torch.randn(1, 1 + grid * grid, dim))
        self.blocks = torch.nn.Sequential(_Block(dim), _Block(dim))
        self.norm = torch.nn.LayerNorm(dim)
        self.fc = torch.nn.Linear(dim, 5)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], dim=1) + self.position
        return self.fc(self.norm(self.blocks(tokens))[:, 0])


class _Recurrent(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(6, 8, num_layers=2, bidirectional=True)  # (sequence, batch, ...)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x):
        out, _ = self.lstm(x.transpose(0, 1))
        return self.fc(out[-1])


class _Text(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 8)
        self.fc = torch.nn.Linear(8, 2)

    def forward(self, ids):
        return self.fc(torch.tanh(self.embed(ids)).mean(1))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("method", [ae.AblationCam, ae.ScoreCam])
def test_convnext_style_heads_give_the_last_map_not_the_pooled_tensor(method):
    torch.manual_seed(0)
    onnx_bytes = export_torch(_ConvNeXtLike().eval(), torch.zeros(1, 3, 28, 28))
    x = np.random.default_rng(0).normal(size=(2, 3, 28, 28)).astype(np.float32)
    explanation = method(ae.load(onnx_bytes, providers="cpu")).explain(x, target=1)
    low = explanation.extras["layer_map"]
    assert low.shape == (2, 7, 7)  # the 7x7 map of the last stage, not (1, 1) after pooling
    assert explanation.values.shape == (2, 1, 28, 28) and np.isfinite(explanation.values).all()
    table = {name: info.shape for name, info in ae.graph.tensors(onnx_bytes).items()}
    assert table[explanation.params["layer"]][1:] in ((8, 7, 7), (7, 7, 8))
    assert explanation.params["layer_layout"] in ("nchw", "nhwc")


def test_a_channels_last_layer_map_is_read_channels_last(images):
    """The last block's output is read through its NHWC twin when that is the last map."""
    torch.manual_seed(0)
    onnx_bytes = export_torch(_ConvNeXtLike().eval(), torch.zeros(1, 3, 16, 16))
    layouts = ae.graph.layouts.tensor_layouts(
        onnx.load_from_string(onnx_bytes), {n: len(i.shape) for n, i in ae.graph.tensors(onnx_bytes).items() if i.shape}
    )
    assert "nhwc" in layouts.values() and "nchw" in layouts.values()
    pooled = [name for name, info in ae.graph.tensors(onnx_bytes).items()
              if info.shape and len(info.shape) == 4 and info.shape[1:] == (1, 1, 8)]
    assert pooled and all(layouts.get(name) == "nhwc" for name in pooled)


@pytest.mark.parametrize("method", [ae.AblationCam, ae.ScoreCam])
def test_a_vit_gets_a_patch_grid_map_from_its_last_attention_input(method):
    torch.manual_seed(0)
    net = _TinyViT().eval()
    onnx_bytes = export_torch(net, torch.zeros(1, 3, 16, 16))
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    explanation = method(ae.load(onnx_bytes, providers="cpu")).explain(x, target=2)
    assert explanation.params["layer_layout"] == "tokens reshaped to a 4x4 grid, the first 1 token(s) (class token) dropped"
    assert explanation.extras["layer_map"].shape == (2, 4, 4)
    assert explanation.values.shape == (2, 1, 16, 16) and np.isfinite(explanation.values).all()
    shape = ae.graph.tensors(onnx_bytes)[explanation.params["layer"]].shape
    assert len(shape) == 3 and shape[1:] == (17, 16)
    assert np.ptp(explanation.extras["layer_map"]) > 0  # the grid tokens reach the output


@pytest.mark.parametrize("method", [ae.AblationCam, ae.ScoreCam])
def test_recurrent_models_have_no_map_and_say_so(method):
    torch.manual_seed(0)
    onnx_bytes = export_torch(_Recurrent().eval(), torch.zeros(1, 5, 6))
    x = np.random.default_rng(1).normal(size=(2, 5, 6)).astype(np.float32)
    with pytest.raises(ParameterError, match=r"layer: .* found no 4-D .*layer='tensor name'"):
        method(onnx_bytes).explain(x)


@pytest.mark.parametrize("method", [ae.AblationCam, ae.ScoreCam])
def test_text_models_have_no_map_and_say_so(method):
    torch.manual_seed(0)
    onnx_bytes = export_torch(_Text().eval(), torch.zeros(1, 7, dtype=torch.int64))
    ids = np.random.default_rng(1).integers(0, 50, size=(2, 7))
    with pytest.raises(ParameterError, match=r"layer: .* found no 4-D"):
        method(onnx_bytes).explain(ids)


def _shape_reading_tail_model() -> onnx.ModelProto:
    """EfficientNet-PyTorch's pattern: static-same padding computed from Shape(x), which loses the
    batch symbol downstream, and a final Reshape to Shape(x)[0] rows."""
    rng = np.random.default_rng(0)
    arrays = {"w": rng.normal(size=(4, 3, 3, 3)), "fc": rng.normal(size=(4, 5)), "zero": np.array([0]),
              "minus1": np.array([-1]), "two": np.array([2]), "four": np.array([4])}
    initializers = [numpy_helper.from_array(value.astype(np.float32 if value.dtype.kind == "f" else np.int64), name)
                    for name, value in arrays.items()]
    nodes = [
        helper.make_node("Shape", ["x"], ["xs"]),
        helper.make_node("Gather", ["xs", "zero"], ["n1"], axis=0),
        helper.make_node("Slice", ["xs", "two", "four"], ["hw"]),
        helper.make_node("Sub", ["hw", "hw"], ["zhw"]),
        helper.make_node("Concat", ["zero", "zero", "zhw", "zero", "zero", "zhw"], ["pads"], axis=0),
        helper.make_node("Pad", ["x", "pads"], ["xp"]),
        helper.make_node("Conv", ["xp", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Concat", ["n1", "minus1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["g", "newshape"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "efficientnet_pattern",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_a_tail_that_reads_the_input_gets_the_batch_symbol_and_runs_ablation_cam():
    model = _shape_reading_tail_model()
    assert ae.graph.tensors(model)["r"].shape[0].startswith("unk__")  # what inference gives the cut tensor
    head, tail = ae.graph.split(model, "r")
    inputs = {value.name: value.type.tensor_type.shape.dim[0].dim_param for value in tail.graph.input}
    assert inputs == {"r": "N", "x": "N"}
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    explanation = ae.AblationCam(model).explain(x, target=2)
    assert explanation.params["layer"] == "r" and explanation.values.shape == (3, 1, 8, 8)
    # the tail, fed the activations and the input together, gives the model's own output
    loaded = ae.load(model, providers="cpu")
    activations = ae.load(ae.graph.expose(model, ["r"]), providers="cpu").predict(x, output="r")
    tail_out = ae.load(tail, providers="cpu").predict(activations, input="r", fixed_inputs={"x": x})
    np.testing.assert_allclose(tail_out, loaded.predict(x), rtol=1e-5, atol=1e-5)
