"""The shape every data-set level method shares.

A data-set method is a class built from a model and its settings (which it only stores), and
called on a data set: ``PermutationImportance(model, ...).explain(X, y)``,
``GlobalSurrogate(model, ...).fit(X)``, and :func:`partial_dependence` (a function, as in
scikit-learn, built on the same steps). They load the model and check the data set through
:meth:`DatasetMethod._prepare`, run every row through the one batching loop, and an
``Explanation`` result is built by :func:`agnostic_explain.explainers.base.make_explanation`.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ..runtime.batching import Feeds
from ..runtime.model import Model
from ..runtime.loading import load
from ..runtime.targets import OUTPUT_TRANSFORMS

__all__ = ["DatasetMethod", "prepare_dataset"]


def prepare_dataset(model, X, *, input=None, fixed_inputs=None, output_transform=None) -> tuple[Model, Feeds]:
    """The loaded model and the checked rows of data set ``X``, before any model call."""
    if output_transform not in OUTPUT_TRANSFORMS:
        raise ParameterError(f"output_transform must be one of {OUTPUT_TRANSFORMS}, got {output_transform!r}")
    loaded = model if isinstance(model, Model) else load(model)
    return loaded, Feeds.prepare(loaded, X, input=input, fixed_inputs=fixed_inputs)


class DatasetMethod:
    """Base of the data-set level methods: the model and settings in, the data set at the call."""

    #: the method's name, as results record it
    method = "dataset_method"

    def __init__(self, model):
        self.model = model

    def _prepare(self, X, *, input=None, fixed_inputs=None, output_transform=None) -> tuple[Model, Feeds]:
        model, feeds = prepare_dataset(
            self.model, X, input=input, fixed_inputs=fixed_inputs, output_transform=output_transform
        )
        self.model = model  # loaded once, reused by later calls
        return model, feeds

    def _loaded(self) -> Model:
        if not isinstance(self.model, Model):
            self.model = load(self.model)
        return self.model


def as_float_rows(X, parameter: str = "X") -> np.ndarray:
    """``X`` as a float32 array, refused with a clear error when it is not numeric."""
    try:
        return np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError):
        raise ParameterError(f"{parameter}: expected a numeric array of rows, got {type(X).__name__}") from None
