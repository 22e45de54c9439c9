"""The embedded demo model and samples.

``digits_cnn.onnx`` is a small CNN trained on scikit-learn's 8x8 digits; its input
``image`` has shape (batch, 1, 8, 8), float32 pixels in [0, 1], and its output
``logits`` has shape (batch, 10). Rebuild both files with
``python -m agnostic_explain.data.build_default``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_MODEL_PATH", "DEFAULT_SAMPLES_PATH", "load_samples"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "digits_cnn.onnx"
DEFAULT_SAMPLES_PATH = Path(__file__).resolve().parent / "digits_samples.npz"


def load_samples() -> tuple[np.ndarray, np.ndarray]:
    """Load one correctly classified test image per digit class.

    Returns
    -------
    images : ndarray of shape (10, 1, 8, 8), float32
        Pixels in [0, 1], ready for ``DEFAULT_MODEL_PATH``; row ``i`` shows digit ``i``.
    labels : ndarray of shape (10,), int64
        The class of each image, ``0`` to ``9``.

    Examples
    --------
    >>> images, labels = load_samples()
    >>> images.shape, labels.tolist()
    ((10, 1, 8, 8), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    with np.load(DEFAULT_SAMPLES_PATH) as samples:
        return samples["images"], samples["labels"]
