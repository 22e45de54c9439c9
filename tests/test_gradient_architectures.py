"""``graph.gradient`` on the building blocks of widely used architectures, built in code with random
weights and exported the usual ways, against PyTorch autograd (1e-4 of the largest gradient).

ResNet (BasicBlock with BatchNorm, ReLU, MaxPool, residual Add), MobileNetV3 (depthwise conv,
HardSwish, squeeze-excitation with HardSigmoid), ConvNeXt (depthwise 7x7 conv, channels-last
LayerNorm, GELU, layer scale) and a ViT block, the ViT through both the TorchScript and the
dynamo (torch.export) exporters. Random normal inputs put no activation exactly on a kink, so
the comparison needs no tie allowance (ties are counted in tests/test_gradient_ties.py).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
from gradient_cases import assert_close, export, run_gradient, torch_vjp  # noqa: E402

nn = torch.nn


class _Basic(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)

    def forward(self, x):
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class _ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        self.blocks = nn.Sequential(_Basic(8), _Basic(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1))


class _MobileNetV3Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.expand = nn.Sequential(nn.Conv2d(3, 16, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.depthwise = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16), nn.BatchNorm2d(16),
                                       nn.Hardswish())
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 16, 1),
                                nn.Hardsigmoid())
        self.project = nn.Sequential(nn.Conv2d(16, 8, 1), nn.BatchNorm2d(8))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.depthwise(self.expand(x))
        y = self.project(y * self.se(y))
        return self.fc(y.mean((2, 3)))


class _ConvNeXtBlock(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.stem = nn.Conv2d(3, dim, 4, stride=4)
        self.dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))
        self.fc = nn.Linear(dim, 5)

    def forward(self, x):
        x = self.stem(x)
        y = self.down(nn.functional.gelu(self.up(self.norm(self.dw(x).permute(0, 2, 3, 1)))))
        x = x + (self.gamma * y).permute(0, 3, 1, 2)
        return self.fc(x.mean((-2, -1)))


class _ViT(nn.Module):
    def __init__(self, dim=16, heads=2):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.norm1, self.norm2, self.norm = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.fc = nn.Linear(dim, 5)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(x.shape[0], -1, -1), t], dim=1)
        n, length, d = t.shape
        q, k, v = self.qkv(self.norm1(t)).reshape(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / (d // self.heads) ** 0.5, dim=-1)
        t = t + self.proj((attention @ v).transpose(1, 2).reshape(n, length, d))
        t = t + self.mlp(self.norm2(t))
        return self.fc(self.norm(t)[:, 0])


def _randomised(module, seed):
    torch.manual_seed(seed)
    for parameter in module.parameters():  # batch-norm statistics too, so that no layer is the identity
        parameter.data.normal_(0, 0.3)
    for buffer_name, buffer in module.named_buffers():
        if buffer_name.endswith("running_var"):
            buffer.data.uniform_(0.5, 1.5)
        elif buffer_name.endswith("running_mean"):
            buffer.data.normal_(0, 0.1)
    return module.eval()


def _dynamo_export(module, example) -> onnx.ModelProto:
    pytest.importorskip("onnxscript")
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(module, (example,), dynamo=True, input_names=["x"], output_names=["logits"],
                                dynamic_shapes=({0: batch},), opset_version=18)
    return program.model_proto


CASES = {
    "resnet": (_ResNet, (3, 32, 32)),
    "mobilenetv3": (_MobileNetV3Block, (3, 16, 16)),
    "convnext": (_ConvNeXtBlock, (3, 16, 16)),
    "vit": (_ViT, (3, 16, 16)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_torchscript_exports_match_autograd(name):
    cls, shape = CASES[name]
    module = _randomised(cls(), seed=len(name))
    proto = export(module, (torch.zeros(1, *shape),), ["x"], ["logits"], {"x": {0: "n"}, "logits": {0: "n"}})
    x = np.random.default_rng(1).normal(size=(3, *shape)).astype(np.float32)
    seeds, grads = run_gradient(proto, {"x": x}, "x")
    assert_close(grads["x"], torch_vjp(module, [x], seeds["logits__seed"])[0])


@pytest.mark.parametrize("name", ["vit", "resnet"])
def test_dynamo_exports_match_autograd(name):
    cls, shape = CASES[name]
    module = _randomised(cls(), seed=len(name))
    proto = _dynamo_export(module, torch.zeros(2, *shape))
    x = np.random.default_rng(2).normal(size=(3, *shape)).astype(np.float32)
    seeds, grads = run_gradient(proto, {proto.graph.input[0].name: x}, proto.graph.input[0].name)
    (grad,) = grads.values()
    assert_close(grad, torch_vjp(module, [x], next(iter(seeds.values())))[0])
