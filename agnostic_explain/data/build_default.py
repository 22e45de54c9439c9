"""Rebuild the embedded demo model (``digits_cnn.onnx``) and its samples (``digits_samples.npz``).

Run from the repository root::

    python -m agnostic_explain.data.build_default

The script trains a small CNN on scikit-learn's bundled 8x8 digits, exports it to
ONNX, checks ONNX Runtime against PyTorch, and writes both files next to this
module. Everything is seeded and single-threaded, so two runs on the same machine
and library versions give byte-identical files (the sha256 of both is printed).
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path

import numpy as np

SEED = 0
EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
OPSET = 17
CLASS_NAMES = [str(digit) for digit in range(10)]
# load_digits pixels are integers 0..16; the model sees pixel / 16.
PIXEL_SCALE = 1.0 / 16.0

DATA_DIR = Path(__file__).resolve().parent
MODEL_PATH = DATA_DIR / "digits_cnn.onnx"
SAMPLES_PATH = DATA_DIR / "digits_samples.npz"


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "Rebuilding the default model needs PyTorch: pip install torch==2.13.0"
        ) from e
    return torch


def load_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, x_test, y_train, y_test)``; images of shape (n, 1, 8, 8) float32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images * PIXEL_SCALE).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    return train_test_split(
        images, labels, test_size=0.25, random_state=SEED, stratify=labels
    )


def build_model():
    """Return the untrained CNN: 1x8x8 image in, 10 logits out."""
    from collections import OrderedDict

    torch = _import_torch()
    nn = torch.nn
    # Named layers give readable ONNX node and tensor names ("/conv3/Conv"),
    # which is what users pass when splitting the graph at a layer.
    layers = [
        ("conv1", nn.Conv2d(1, 16, 3, padding=1)),
        ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(16, 32, 3, padding=1)),
        ("relu2", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("conv3", nn.Conv2d(32, 32, 3, padding=1)),
        ("relu3", nn.ReLU()),
        ("flatten", nn.Flatten()),
        ("classifier", nn.Linear(32 * 4 * 4, 10)),
    ]
    return nn.Sequential(OrderedDict(layers))


def train(x_train: np.ndarray, y_train: np.ndarray):
    """Train the CNN deterministically and return it in eval mode."""
    torch = _import_torch()
    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.use_deterministic_algorithms(True)
    # Thread count changes the order of float reductions, hence the weights.
    torch.set_num_threads(1)

    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    # A private RandomState, so the shuffling order does not depend on global state.
    order_rng = np.random.RandomState(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.from_numpy(order_rng.permutation(len(x)))
        for start in range(0, len(x), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            optimizer.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    return model.eval()


def torch_logits(model, images: np.ndarray) -> np.ndarray:
    """Return the model's logits, ndarray of shape (n, 10)."""
    torch = _import_torch()
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy()


def export_onnx(model, test_accuracy: float) -> bytes:
    """Export ``model`` to ONNX bytes with a symbolic batch and the package's metadata."""
    import onnx

    torch = _import_torch()
    buffer = io.BytesIO()
    # The legacy exporter gives a compact graph with stable node names; its
    # deprecation warning is expected here, so it is not shown.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 8, 8),),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    metadata = {
        "class_names": json.dumps(CLASS_NAMES),
        "preprocessing": json.dumps(
            {"layout": "NCHW", "scale": PIXEL_SCALE, "mean": [0.0], "std": [1.0]}
        ),
        "description": (
            "Small CNN (3 conv + linear) on scikit-learn 8x8 digits, "
            f"input pixel/16 in [0, 1]; test accuracy {test_accuracy:.4f}."
        ),
        "source": "agnostic_explain.data.build_default",
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString(deterministic=True)


def onnx_logits(model_bytes: bytes, images: np.ndarray) -> np.ndarray:
    """Run the exported model on ONNX Runtime's CPU provider."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        model_bytes, providers=["CPUExecutionProvider"]
    )
    return session.run(["logits"], {"image": images})[0]


def pick_samples(
    images: np.ndarray, labels: np.ndarray, predictions: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the first correctly classified image of each class, in class order."""
    picked = []
    for digit in range(len(CLASS_NAMES)):
        hits = np.flatnonzero((labels == digit) & (predictions == digit))
        if hits.size == 0:
            raise RuntimeError(f"no correctly classified test image of class {digit}")
        picked.append(hits[0])
    return images[picked], labels[picked]


def write_samples(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write the samples .npz; np.savez stamps no dates, so its bytes are reproducible."""
    with open(path, "wb") as f:
        np.savez(
            f,
            images=images.astype(np.float32),
            labels=labels.astype(np.int64),
            class_names=np.array(CLASS_NAMES),
        )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    x_train, x_test, y_train, y_test = load_split()
    model = train(x_train, y_train)
    train_accuracy = float((torch_logits(model, x_train).argmax(1) == y_train).mean())
    expected = torch_logits(model, x_test)
    test_accuracy = float((expected.argmax(1) == y_test).mean())
    print(f"torch train accuracy {train_accuracy:.4f}, test accuracy {test_accuracy:.4f}")

    model_bytes = export_onnx(model, test_accuracy)
    actual = onnx_logits(model_bytes, x_test)
    max_difference = float(np.abs(actual - expected).max())
    if max_difference > 1e-4:
        raise RuntimeError(f"ONNX and torch logits differ by {max_difference:.2e} > 1e-4")
    predictions = actual.argmax(1)
    print(
        f"onnx test accuracy {(predictions == y_test).mean():.4f}, "
        f"max |onnx - torch| {max_difference:.2e}"
    )

    MODEL_PATH.write_bytes(model_bytes)
    write_samples(SAMPLES_PATH, *pick_samples(x_test, y_test, predictions))
    for path in (MODEL_PATH, SAMPLES_PATH):
        print(f"{path.name}: {path.stat().st_size} bytes, sha256 {_sha256(path)}")


if __name__ == "__main__":
    main()
