"""Layer Integrated Gradients on token models against Captum: a small BERT from a transformers
config (the attention mask a fixed input), and a tiny embedding + attention model in torch."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import pytest
from gradient_cases import assert_close

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")


def export_tokens(module, ids, mask) -> onnx.ModelProto:
    buffer = io.BytesIO()
    axes = {"batch": 0, "seq": 1}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (ids, mask), buffer, dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {v: k for k, v in axes.items()},
                                        "attention_mask": {v: k for k, v in axes.items()}, "logits": {0: "batch"}})
    return onnx.load_from_string(buffer.getvalue())


class TinyAttention(torch.nn.Module):
    """Embedding, one masked self-attention layer, mean pooling, a linear head."""

    def __init__(self, vocabulary=30, dim=8, classes=3):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocabulary, dim)
        self.query, self.key, self.value = (torch.nn.Linear(dim, dim) for _ in range(3))
        self.head = torch.nn.Linear(dim, classes)

    def forward(self, ids, mask):
        x = self.embedding(ids)
        scores = self.query(x) @ self.key(x).transpose(1, 2) / 8 ** 0.5
        scores = scores + (1.0 - mask[:, None, :].float()) * -1e4
        mixed = torch.softmax(scores, -1) @ self.value(x)
        return self.head((mixed * mask[..., None].float()).sum(1) / mask.sum(1, keepdim=True).float())


class Logits(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, ids, mask):
        return self.model(input_ids=ids, attention_mask=mask).logits


def token_rows(vocabulary, seed):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocabulary, (3, 7), generator=generator)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[2, 5:] = 0
    return ids, mask


def check_against_captum(module, layer_module, ids, mask, **kwargs):
    model = ae.load(export_tokens(module, ids, mask), providers="cpu")
    ours = ae.LayerIntegratedGradients(model, steps=20, **kwargs).explain(
        ids.numpy(), target=[0, 1, 2], fixed_inputs={"attention_mask": mask.numpy()})
    baseline = torch.full_like(ids, kwargs.get("baseline", 0))
    expected, delta = captum_attr.LayerIntegratedGradients(module, layer_module).attribute(
        ids, baselines=baseline, target=torch.tensor([0, 1, 2]), additional_forward_args=(mask,), n_steps=20,
        return_convergence_delta=True)
    expected = expected.detach().numpy()
    assert_close(ours.extras["layer_values"], expected)
    assert_close(ours.values, expected.sum(-1))
    np.testing.assert_allclose(ours.extras["delta"], delta.numpy(), atol=1e-4 * np.abs(expected).sum())
    assert ours.params["layer_chosen_automatically"]
    return ours


def test_layer_integrated_gradients_on_a_tiny_attention_model():
    torch.manual_seed(0)
    module = TinyAttention().eval()
    ids, mask = token_rows(30, 0)
    ours = check_against_captum(module, module.embedding, ids, mask, baseline=0)
    sums = ours.values.sum(1)
    with torch.no_grad():
        f_x = module(ids, mask)[torch.arange(3), torch.tensor([0, 1, 2])].numpy()
        f_b = module(torch.zeros_like(ids), mask)[torch.arange(3), torch.tensor([0, 1, 2])].numpy()
    np.testing.assert_allclose(sums - (f_x - f_b), ours.extras["delta"], atol=1e-5)


def test_layer_integrated_gradients_on_a_small_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32, num_labels=3)
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(config).eval()
    ids, mask = token_rows(50, 1)
    check_against_captum(Logits(bert).eval(), bert.bert.embeddings.word_embeddings, ids, mask, baseline=0)


def test_no_embedding_found_asks_for_a_layer(linear):
    explainer = ae.LayerIntegratedGradients(ae.load(linear.proto, providers="cpu"))
    with pytest.raises(ParameterError, match="layer="):
        explainer.explain(np.zeros((1, 4), np.float32), target=0)
