"""scikit-learn estimators and pipelines to ONNX with skl2onnx, checked against ``predict_proba``.

Classifiers are converted without skl2onnx's ZipMap, so the probabilities are a plain
``(batch, n_classes)`` float tensor; it is the model's first output (the label follows), and
so the output explainers read by default. Regressors have one ``(batch, 1)`` output. The one
input, ``input``, is a float32 matrix of every feature, also when the estimator was fitted on
a numeric DataFrame.

Pipelines with a ``ColumnTransformer`` (say ``StandardScaler`` on some columns and
``OneHotEncoder`` on integer-coded categorical columns of the same matrix) followed by
``GradientBoostingClassifier``, ``HistGradientBoostingClassifier``, random forests or linear
models convert; columns selected by name are mapped to their index first.

The helpers at the end (sample checks, output order, the label check, pickle guard) serve the
XGBoost and LightGBM converters as well.
"""

from __future__ import annotations

import copy
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .parity import DEFAULT_ATOL, DEFAULT_RTOL
from .tree_cover import add_cover
from .tabular import (
    INPUT_NAME, PICKLE_SUFFIXES, finish_tabular, first_line, native_rows, tabular_sample, unpickle,
)

__all__ = ["from_sklearn", "load_native"]

EXTRA = "agnostic-explain[sklearn]"


def from_sklearn(
    estimator, sample, *, class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, opset=None, options=None,
):
    """Convert a fitted scikit-learn estimator or pipeline to ONNX and prove it on ``sample``.

    Parameters
    ----------
    estimator : fitted sklearn estimator or Pipeline
    sample : ndarray or pandas.DataFrame of shape (n_rows, n_features)
        Numeric rows, cast to float32. They fix the input width and are the parity sample:
        ONNX Runtime's probabilities (classifiers) or predictions (regressors) must match
        ``predict_proba`` / ``predict`` on the same float32 rows.
    class_names, feature_names : sequence of str, optional
        Default to the estimator's ``classes_`` and ``feature_names_in_`` (or the
        DataFrame's columns).
    preprocessing : dict, optional
        Stored as metadata (see :func:`converters.metadata.annotate`).
    path : str or Path, optional
        Where to save the model.
    atol, rtol : float
        Parity tolerances.
    opset : int or dict, optional
        skl2onnx's ``target_opset``: the default opset's version, or ``{domain: version}``;
        by default skl2onnx's latest.
    options : dict, optional
        skl2onnx converter options, keyed by ``id(step)`` or step class. ZipMap is always
        turned off on the final classifier.

    Returns
    -------
    onnx.ModelProto
        Outputs ``probabilities`` (batch, n_classes) then ``label`` (batch,) for classifiers,
        ``variable`` (batch, 1) for regressors.

    Raises
    ------
    ConversionError
        An estimator skl2onnx cannot convert (named), or a sample of the wrong shape.
    ParityError
        ONNX Runtime's outputs differ from scikit-learn's beyond the tolerances.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> fitted = LogisticRegression().fit(x, x[:, 0] > 0)
    >>> proto = from_sklearn(fitted, x)
    >>> [output.name for output in proto.graph.output]
    ['probabilities', 'label']
    """
    sklearn = require("sklearn", EXTRA)
    require("skl2onnx", EXTRA)
    from sklearn.base import is_classifier
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except (NotFittedError, TypeError) as error:
        raise ConversionError(f"estimator: {type(estimator).__name__} is not a fitted estimator ({error})") from error
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    model_names = getattr(estimator, "feature_names_in_", None)
    x, columns = tabular_sample(sample, getattr(estimator, "n_features_in_", None), model_names=model_names)
    classifier = is_classifier(estimator)
    converted_estimator = _columns_by_index(estimator, list(model_names) if model_names is not None else columns)
    proto = _convert(converted_estimator, x, classifier=classifier, opset=opset, options=options)
    native_input = native_rows(x, sample, model_names)
    if classifier:
        expected = estimator.predict_proba(native_input)
        labels = estimator.predict(native_input)
    else:
        expected, labels = estimator.predict(native_input), None
    classes = getattr(final, "classes_", None)
    proto = add_cover(proto, estimator)  # the training cover path-dependent TreeShap needs
    return finish_tabular(
        proto, x, expected, labels=labels, framework="scikit-learn", framework_version=sklearn.__version__,
        class_names=class_names if class_names is not None else (classes if classifier else None),
        feature_names=feature_names if feature_names is not None else (
            model_names if model_names is not None else columns
        ),
        preprocessing=preprocessing, path=path, atol=atol, rtol=rtol,
    )


def load_native(path, *, allow_pickle=False):
    """Load a saved scikit-learn model: ``.skops`` safely, pickle files only when allowed.

    A ``.skops`` file loads with skops' default trusted types. When it holds other types
    (``sklearn.tree._tree.Tree`` in every tree model, say), they are trusted only with
    ``allow_pickle=True``, and then exactly the ones the file lists. ``.pkl``, ``.pickle`` and
    ``.joblib`` files load (with joblib) only with ``allow_pickle=True``.

    Raises
    ------
    ConversionError
        Untrusted skops types or a pickle file without ``allow_pickle``, or an unknown suffix.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"source: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix == ".skops":
        skops_io = require("skops.io", EXTRA)
        untrusted = skops_io.get_untrusted_types(file=path)
        if untrusted and not allow_pickle:
            raise ConversionError(
                f"source: {path.name!r} holds types skops does not trust by default: {untrusted}. Loading "
                "them can run code or crash on a malicious file; pass --allow-pickle (allow_pickle=True) "
                "only if the file is trusted"
            )
        if untrusted:
            warnings.warn(f"trusting the skops types {untrusted} of {path.name!r}", stacklevel=2)
        return skops_io.load(path, trusted=untrusted or None)
    if suffix in PICKLE_SUFFIXES:
        return unpickle(path, allow_pickle=allow_pickle, extra=EXTRA)
    raise ConversionError(
        f"source: {path.name!r} is not a scikit-learn model file; expected .skops (or, with "
        f"--allow-pickle, {', '.join(PICKLE_SUFFIXES)})"
    )


# -- skl2onnx ------------------------------------------------------------------------------
_PATCH_LOCK = threading.Lock()


def _convert(estimator, x, *, classifier, opset, options) -> onnx.ModelProto:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    merged = dict(options or {})
    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    if classifier:
        merged[id(final)] = {**merged.get(id(final), {}), "zipmap": False}
    try:
        with _hist_gradient_boosting_fix():
            return to_onnx(
                estimator, initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))],
                target_opset=opset, options=merged or None,
            )
    except Exception as error:
        unsupported = _unsupported_steps(estimator)
        if unsupported:
            raise ConversionError(
                f"estimator: skl2onnx has no converter for {', '.join(unsupported)}; see "
                "skl2onnx.supported_converters() for the supported estimators, or register one with "
                "skl2onnx.update_registered_converter"
            ) from error
        raise ConversionError(
            f"estimator: skl2onnx could not convert {type(estimator).__name__}: "
            f"{first_line(error)}. Try another opset (opset=...) or converter options (options=...)"
        ) from error


@contextmanager
def _hist_gradient_boosting_fix():
    """skl2onnx 1.20 passes Python bools to an INT attribute for HistGradientBoosting* leaves,
    which onnx >= 1.17's make_attribute rejects; coerce them to int during the conversion."""
    from skl2onnx.common import tree_ensemble

    with _PATCH_LOCK:
        original = tree_ensemble.add_node

        def add_node(*args, nodes_missing_value_tracks_true=0, **kwargs):
            return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

        tree_ensemble.add_node = add_node
        try:
            yield
        finally:
            tree_ensemble.add_node = original


def _steps(estimator):
    """Every estimator inside a Pipeline, ColumnTransformer or FeatureUnion, depth first."""
    yield estimator
    children = []
    if hasattr(estimator, "steps"):
        children = [step for _, step in estimator.steps]
    elif hasattr(estimator, "transformers_"):
        children = [step for _, step, _ in estimator.transformers_]
    elif hasattr(estimator, "transformer_list"):
        children = [step for _, step in estimator.transformer_list]
    for child in children:
        if child is not None and not isinstance(child, str):
            yield from _steps(child)


def _unsupported_steps(estimator) -> list[str]:
    from skl2onnx._supported_operators import sklearn_operator_name_map

    return list(dict.fromkeys(
        type(step).__name__ for step in _steps(estimator) if type(step) not in sklearn_operator_name_map
    ))


def _columns_by_index(estimator, names):
    """A copy whose ColumnTransformers select columns by index: the ONNX model has one matrix input."""
    transformers = [step for step in _steps(estimator) if hasattr(step, "transformers_")]
    named = [step for step in transformers if any(
        isinstance(column, str) for _, _, columns in step.transformers_ for column in np.atleast_1d(columns)
    )]
    if not named:
        return estimator
    if names is None:
        raise ConversionError(
            "estimator: a ColumnTransformer selects columns by name, but neither the estimator "
            "(feature_names_in_) nor the sample (a DataFrame) gives the column names"
        )
    edited = copy.deepcopy(estimator)
    for step in _steps(edited):
        if hasattr(step, "transformers_"):
            step.transformers_ = [
                (name, transformer, _indices(columns, names)) for name, transformer, columns in step.transformers_
            ]
    return edited


def _indices(columns, names):
    values = list(np.atleast_1d(columns)) if not isinstance(columns, slice) else columns
    if isinstance(values, slice) or not any(isinstance(value, str) for value in values):
        return columns
    missing = [value for value in values if value not in names]
    if missing:
        raise ConversionError(f"estimator: ColumnTransformer columns {missing} are not among {list(names)}")
    return [list(names).index(value) for value in values]
