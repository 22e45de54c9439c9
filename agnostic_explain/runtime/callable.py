"""CallableModel: any numpy function, explained with the same explainers as ONNX models."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ModelExecutionError, ParameterError
from .model import Model
from .specs import TensorSpec


class CallableModel(Model):
    """Wrap ``f(ndarray) -> ndarray`` so that explainers can run it in batches.

    Parameters
    ----------
    function : callable
        Takes an array of shape (batch, ...) and returns an array of shape (batch, ...).
        It may come from any runtime (a TensorFlow model's ``predict``, a scikit-learn
        ``predict_proba``, a remote service).
    batch_size : int
        Rows per call.
    dtype : numpy dtype
        The dtype inputs are cast to before the call.
    label_names, feature_names : sequence of str, optional

    Examples
    --------
    >>> import numpy as np
    >>> model = CallableModel(lambda x: x.sum(axis=1, keepdims=True))
    >>> model.predict(np.ones((3, 4))).ravel().tolist()
    [4.0, 4.0, 4.0]
    """

    def __init__(
        self,
        function: Callable[[np.ndarray], np.ndarray],
        *,
        batch_size: int = 64,
        dtype=np.float32,
        label_names=None,
        feature_names=None,
    ):
        super().__init__()
        if not callable(function):
            raise ParameterError(f"function must be callable, got {type(function).__name__}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ParameterError(f"batch_size must be a positive int, got {batch_size!r}")
        self.function = function
        self.batch_size = batch_size
        self.inputs = [TensorSpec("input", np.dtype(dtype), None, batch_axis=0)]
        self.outputs = [TensorSpec("output", np.dtype(np.float32), None, batch_axis=0)]
        self.label_names = tuple(label_names) if label_names is not None else None
        self.feature_names = tuple(feature_names) if feature_names is not None else None
        self.metadata = {}
        self.providers = ("python",)

    def __repr__(self) -> str:
        name = getattr(self.function, "__name__", type(self.function).__name__)
        return f"CallableModel({name}, batch_size={self.batch_size})"

    def _run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        rows = feeds["input"]
        try:
            result = np.asarray(self.function(rows))
        except Exception as error:
            raise ModelExecutionError(f"the wrapped function failed: {type(error).__name__}: {error}") from error
        if result.ndim == 0 or result.shape[0] != rows.shape[0]:
            raise ModelExecutionError(
                f"the wrapped function must return one output row per input row: got shape "
                f"{result.shape} for {rows.shape[0]} rows"
            )
        return [result]
