"""LightGBM models to ONNX with onnxmltools, checked against LightGBM's own predictions.

Accepts the scikit-learn wrappers (``LGBMClassifier``, ``LGBMRegressor``) and raw
``lightgbm.Booster`` objects (``lgb.train``, or a ``.txt`` model file). The converter runs with
``zipmap=False``, so classifiers (objectives ``binary``, ``multiclass``) give
``probabilities`` (batch, n_classes) as the first output and ``label`` second; regressors one
``variable`` (batch, 1). onnxmltools declares the label's batch as a fixed 1, which ONNX
Runtime warns about on every run; the batch axis of every output is made symbolic.

Not converted: ``multiclassova`` (onnxmltools normalises the one-vs-all probabilities,
LightGBM does not), ``cross_entropy`` and ``mape`` (onnxmltools has no converter for them).
A classifier whose classes are neither integers nor strings (``bool``, ``float``) is
converted from its booster, since onnxmltools takes them for strings: its ``label`` output is
then the class index. A booster trained with an objective alias (``softmax`` for ``multiclass``) is converted from a
copy that names the canonical objective, since onnxmltools reads ``Booster.params`` verbatim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .parity import DEFAULT_ATOL, DEFAULT_RTOL
from .tree_cover import add_cover
from .tabular import (
    INPUT_NAME, PICKLE_SUFFIXES, finish_tabular, first_line, native_rows, tabular_sample, unpickle,
)

__all__ = ["from_lightgbm", "load_native"]

EXTRA = "agnostic-explain[lightgbm]"
CLASSIFIER_OBJECTIVES = ("binary", "multiclass")
UNSUPPORTED_OBJECTIVES = {
    "multiclassova": "onnxmltools normalises the one-vs-all probabilities to sum to 1, LightGBM does not",
    "cross_entropy": "onnxmltools has no converter for it",
    "cross_entropy_lambda": "onnxmltools has no converter for it",
    "mape": "onnxmltools has no converter for it",
}


def from_lightgbm(
    model, sample, *, class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, opset=None,
):
    """Convert a fitted LightGBM model to ONNX and prove it on ``sample``.

    Parameters
    ----------
    model : lightgbm.LGBMModel (LGBMClassifier, LGBMRegressor) or lightgbm.Booster
    sample : ndarray or pandas.DataFrame of shape (n_rows, n_features)
        Numeric rows, cast to float32. ONNX Runtime's probabilities (classifiers) or
        predictions must match LightGBM's on them.
    class_names, feature_names : sequence of str, optional
        Default to the wrapper's ``classes_`` and the model's feature names
        (``feature_name_``, or the booster's ``feature_name()``: ``Column_0, ...`` when it was
        trained on an array).
    preprocessing : dict, optional
        Stored as metadata.
    path : str or Path, optional
        Where to save the model.
    atol, rtol : float
        Parity tolerances.
    opset : int, optional
        The default-domain opset; by default onnxmltools' choice (at most 15 in 1.16).

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ConversionError
        An objective the converter does not handle, a failed conversion, or a sample of the
        wrong shape.
    ParityError
        ONNX Runtime's outputs differ from LightGBM's beyond the tolerances.

    Examples
    --------
    >>> import numpy as np, lightgbm
    >>> x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    >>> fitted = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, x[:, 0] > 0)
    >>> [output.name for output in from_lightgbm(fitted, x).graph.output]
    ['probabilities', 'label']
    """
    lightgbm = require("lightgbm", EXTRA)
    require("onnxmltools", EXTRA)
    wrapper = isinstance(model, lightgbm.LGBMModel)
    booster = model.booster_ if wrapper else model
    if not isinstance(booster, lightgbm.Booster):
        raise ConversionError(
            f"model: expected a LightGBM estimator (LGBMClassifier, LGBMRegressor) or a lightgbm.Booster, "
            f"got {type(model).__name__}"
        )
    objective = _objective(booster)
    if objective in UNSUPPORTED_OBJECTIVES:
        raise ConversionError(
            f"model: objective {objective!r} cannot be converted: {UNSUPPORTED_OBJECTIVES[objective]}; "
            "train with binary or multiclass for probabilities"
        )
    model_names = getattr(model, "feature_names_in_", None) if wrapper else None
    x, columns = tabular_sample(sample, booster.num_feature(), model_names=model_names)
    classifier = objective in CLASSIFIER_OBJECTIVES
    source = model
    if wrapper and classifier and np.asarray(model.classes_).dtype.kind not in "iuUSO":
        # onnxmltools takes other classes (bool, float) for strings and fails on .encode: convert
        # the booster, whose label output is then the class index
        source = booster
    proto = _convert(_canonical_objective(source, booster, objective, lightgbm), x, opset=opset)
    rows = native_rows(x, sample, model_names)
    if wrapper:
        expected = model.predict_proba(rows) if classifier else model.predict(rows)
        labels = (model.predict(rows) if source is model else expected.argmax(axis=1)) if classifier else None
    else:
        expected, labels = booster.predict(x), None
        if classifier:
            expected = np.stack([1.0 - expected, expected], axis=1) if expected.ndim == 1 else expected
            labels = expected.argmax(axis=1)
    classes = getattr(model, "classes_", None) if classifier else None
    proto = add_cover(proto, source)  # the training cover path-dependent TreeShap needs
    return finish_tabular(
        proto, x, expected, labels=labels, framework="lightgbm", framework_version=lightgbm.__version__,
        class_names=class_names if class_names is not None else classes,
        feature_names=feature_names if feature_names is not None else (booster.feature_name() or columns),
        preprocessing=preprocessing, path=path, atol=atol, rtol=rtol,
    )


def load_native(path, *, allow_pickle=False):
    """Load a saved LightGBM model: a text model file (``.txt``) as a ``lightgbm.Booster``.

    The booster carries its objective, which decides how :func:`from_lightgbm` treats it:
    ``binary`` and ``multiclass`` are classifiers (classes ``0 .. n_classes - 1``), every
    other objective a regressor. Pickle files load only with ``allow_pickle=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"source: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return unpickle(path, allow_pickle=allow_pickle, extra=EXTRA)
    if suffix != ".txt":
        raise ConversionError(
            f"source: {path.name!r} is not a LightGBM model file; expected a .txt model (saved with "
            "Booster.save_model), or with --allow-pickle a pickle file"
        )
    lightgbm = require("lightgbm", EXTRA)
    try:
        return lightgbm.Booster(model_file=str(path))
    except lightgbm.basic.LightGBMError as error:
        raise ConversionError(f"source: LightGBM cannot read {path.name!r}: {first_line(error)}") from error


def _objective(booster) -> str:
    """The canonical objective name (aliases such as 'softmax' resolved), without its parameters."""
    return str(booster.dump_model(num_iteration=1).get("objective", "")).split(" ")[0]


def _canonical_objective(model, booster, objective, lightgbm):
    """A booster trained with an alias (``softmax``) is copied with the canonical objective:
    onnxmltools reads ``Booster.params`` and knows only the canonical names."""
    given = str(booster.params.get("objective") or objective)
    if isinstance(model, lightgbm.LGBMModel) or given.split(" ")[0] == objective:
        return model
    renamed = lightgbm.Booster(model_str=booster.model_to_string())
    renamed.params = {**booster.params, "objective": objective}
    return renamed


def _convert(model, x, *, opset) -> onnx.ModelProto:
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    try:
        return convert_lightgbm(
            model, initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))], target_opset=opset,
            zipmap=False,
        )
    except Exception as error:
        raise ConversionError(
            f"model: onnxmltools could not convert {type(model).__name__}: {first_line(error)}. "
            "Try another opset (opset=...)"
        ) from error
