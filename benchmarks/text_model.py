"""A small transformer text classifier over token ids, trained here in seconds, for the benchmarks.

The task is synthetic sentiment: a sentence is ``SEQ_LEN`` word ids drawn from a vocabulary of
``VOCABULARY`` words, of which ``POSITIVE`` and ``NEGATIVE`` carry sentiment; the label is 1 when
positive words outnumber negative ones. Word ``i`` is written ``"w{i}"`` (id 0 is padding,
id 1 ``MASK``, the word that stands for a removed token), so lime's and DIANNA's text
explainers can run on strings that map back to the same ids. During training 10% of tokens are
replaced by the mask id, so that the model learns to read a removed word as neutral.

Nothing here downloads, and equal seeds give equal weights and sentences.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

VOCABULARY, SEQ_LEN, PAD_ID, MASK_ID = 1000, 48, 0, 1
#: word ids with positive and negative sentiment
POSITIVE, NEGATIVE = range(2, 52), range(52, 102)


class _EncoderLayer(nn.Module):
    """Pre-norm self-attention and feed-forward, written out so that the exporter sees plain ops."""

    def __init__(self, width: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ff = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x):
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attention = torch.softmax(q @ k.transpose(-1, -2) / (width // self.heads) ** 0.5, dim=-1)
        x = x + self.proj((attention @ v).transpose(1, 2).reshape(batch, length, width))
        return x + self.ff(self.norm2(x))


class TextClassifier(nn.Module):
    """Token ids (n, SEQ_LEN) to two logits (n, 2): embedding, encoder layers, mean pool, linear.

    ``forward`` casts its input to int64, so attribution libraries that blend inputs in floating
    point (Captum's KernelSHAP and LIME) can call it.
    """

    def __init__(self, width: int = 64, heads: int = 4, hidden: int = 128, layers: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(VOCABULARY, width)
        self.position = nn.Parameter(torch.zeros(1, SEQ_LEN, width))
        self.layers = nn.ModuleList(_EncoderLayer(width, heads, hidden) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 2)

    def forward(self, ids):
        x = self.embedding(ids.long()) + self.position
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(dim=1))


def sentences(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic sentences and their labels.

    Returns
    -------
    ids : ndarray of shape (n, SEQ_LEN), dtype int64
        About 10% positive and 10% negative words, the rest neutral.
    labels : ndarray of shape (n,), dtype int64
        1 where positive words outnumber negative ones (ties count as 0).
    """
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=(n, SEQ_LEN), p=[0.8, 0.1, 0.1])
    ids = rng.integers(NEGATIVE.stop, VOCABULARY, size=(n, SEQ_LEN))
    ids[kind == 1] = rng.integers(POSITIVE.start, POSITIVE.stop, size=int((kind == 1).sum()))
    ids[kind == 2] = rng.integers(NEGATIVE.start, NEGATIVE.stop, size=int((kind == 2).sum()))
    labels = ((kind == 1).sum(axis=1) > (kind == 2).sum(axis=1)).astype(np.int64)
    return ids.astype(np.int64), labels


def train_text_classifier(seed: int = 0, steps: int = 100, batch: int = 64, lr: float = 1e-2) -> TextClassifier:
    """A :class:`TextClassifier` trained for ``steps`` Adam steps on :func:`sentences` (a few seconds).

    Examples
    --------
    >>> model = train_text_classifier(steps=2)
    >>> model(torch.from_numpy(sentences(3, seed=1)[0])).shape
    torch.Size([3, 2])
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TextClassifier()
        ids, labels = sentences(steps * batch, seed=seed + 1)
        masked = np.random.default_rng(seed + 2).random(ids.shape) < 0.1
        ids = np.where(masked, MASK_ID, ids)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for step in range(steps):
            chunk = slice(step * batch, (step + 1) * batch)
            loss = nn.functional.cross_entropy(model(torch.from_numpy(ids[chunk])), torch.from_numpy(labels[chunk]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def export_text_onnx(module: nn.Module, path=None):
    """The classifier as one ONNX file: input "input_ids" int64 (batch, SEQ_LEN), output "logits".

    Exported with the TorchScript exporter (opset 17), with a dynamic batch.
    """
    import onnx

    buffer = io.BytesIO()
    torch.onnx.export(
        module, (torch.zeros(1, SEQ_LEN, dtype=torch.int64),), buffer, input_names=["input_ids"],
        output_names=["logits"], dynamic_axes={"input_ids": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17, dynamo=False,
    )
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model)
    if path is not None:
        onnx.save_model(model, path)
    return model


def words(ids) -> str:
    """Token ids of one sentence as a string of words ``"w5 w17 MASK ..."``."""
    return " ".join("MASK" if i == MASK_ID else f"w{i}" for i in np.asarray(ids).tolist())


def ids_of(texts) -> np.ndarray:
    """The inverse of :func:`words` for a list of strings, shape (len(texts), SEQ_LEN), int64.

    lime and DIANNA rebuild strings from the words they keep; any word that is not ``w<id>``
    (lime's and DIANNA's mask strings) becomes ``MASK_ID``.
    """
    rows = np.full((len(texts), SEQ_LEN), PAD_ID, dtype=np.int64)
    for index, text in enumerate(texts):
        tokens = text.split()[:SEQ_LEN]
        rows[index, : len(tokens)] = [int(t[1:]) if t[:1] == "w" and t[1:].isdigit() else MASK_ID for t in tokens]
    return rows


class WordTokenizer:
    """The whitespace tokenizer DIANNA's text explainers need (``tokenize``, ``convert_tokens_to_string``)."""

    mask_token = "MASK"

    def tokenize(self, text: str) -> list:
        return text.split()

    def convert_tokens_to_string(self, tokens) -> str:
        return " ".join(tokens)
