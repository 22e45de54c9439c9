"""XGBoost models to ONNX with onnxmltools, checked against XGBoost's own predictions.

Accepts the scikit-learn wrappers (``XGBClassifier``, ``XGBRegressor``, ...) and raw
``xgboost.Booster`` objects. Classifiers (``binary:logistic``, ``multi:softprob``) give
``probabilities`` (batch, n_classes) as the first output and ``label`` second; regressors one
``variable`` (batch, 1).

Two converter quirks are handled here (onnxmltools 1.16, XGBoost 3.2):

- a booster with feature names that are not ``f0, f1, ...`` (one trained on a DataFrame)
  fails with "Unable to interpret 'name', feature names should follow pattern 'f%d'": a copy
  without feature names is converted (the names still go to the metadata);
- ``reg:logistic``: onnxmltools adds the stored ``base_score`` (a probability) to the margin
  as it is and applies no sigmoid, so its outputs are off by up to 2 on a 0-1 scale. The
  converted graph is repaired: ``logit(base_score)`` becomes the base value and a ``Sigmoid``
  node follows the tree ensemble.

XGBoost 3's vector-valued ``base_score`` (``"[5E-1]"``) itself is parsed correctly by
onnxmltools 1.16; binary, multiclass and regression models reach parity near 1e-7.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .parity import DEFAULT_ATOL, DEFAULT_RTOL
from .tree_cover import add_cover
from .tabular import INPUT_NAME, PICKLE_SUFFIXES, finish_tabular, first_line, tabular_sample, unpickle

__all__ = ["from_xgboost", "load_native"]

EXTRA = "agnostic-explain[xgboost]"
#: objectives onnxmltools converts to something other than what XGBoost predicts
UNSUPPORTED_OBJECTIVES = {
    "binary:logitraw": "onnxmltools outputs sigmoid probabilities with a wrongly transformed base score",
    "binary:hinge": "onnxmltools outputs margins where XGBoost predicts 0/1",
    "multi:softmax": "XGBoost predicts class indices, onnxmltools outputs raw margins",
}
CLASSIFIER_PREFIXES = ("binary:", "multi:")


def from_xgboost(
    model, sample, *, class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, opset=None,
):
    """Convert a fitted XGBoost model to ONNX and prove it on ``sample``.

    Parameters
    ----------
    model : xgboost.XGBModel (XGBClassifier, XGBRegressor, ...) or xgboost.Booster
    sample : ndarray or pandas.DataFrame of shape (n_rows, n_features)
        Numeric rows, cast to float32 (NaN means missing, as in XGBoost). ONNX Runtime's
        probabilities (classifiers) or predictions must match XGBoost's on them.
    class_names, feature_names : sequence of str, optional
        Default to the wrapper's ``classes_`` and the model's feature names
        (``feature_names_in_``, or the booster's ``feature_names``).
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
        An objective the converter gets wrong, a failed conversion, or a sample of the wrong shape.
    ParityError
        ONNX Runtime's outputs differ from XGBoost's beyond the tolerances.

    Examples
    --------
    >>> import numpy as np, xgboost
    >>> x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    >>> fitted = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(x, x[:, 0] > 0)
    >>> [output.name for output in from_xgboost(fitted, x).graph.output]
    ['probabilities', 'label']
    """
    xgboost = require("xgboost", EXTRA)
    require("onnxmltools", EXTRA)
    booster = model.get_booster() if isinstance(model, xgboost.XGBModel) else model
    if not isinstance(booster, xgboost.Booster):
        raise ConversionError(
            f"model: expected an XGBoost estimator (XGBClassifier, XGBRegressor, ...) or an xgboost.Booster, "
            f"got {type(model).__name__}"
        )
    objective = _objective(booster)
    if objective in UNSUPPORTED_OBJECTIVES:
        raise ConversionError(
            f"model: objective {objective!r} cannot be converted: {UNSUPPORTED_OBJECTIVES[objective]}; "
            "train with binary:logistic or multi:softprob for probabilities"
        )
    booster_names = booster.feature_names
    model_names = getattr(model, "feature_names_in_", None)
    x, columns = tabular_sample(sample, booster.num_features(), model_names=model_names)
    classifier = objective.startswith(CLASSIFIER_PREFIXES)
    proto = _convert(model, booster, x, opset=opset)
    if objective == "reg:logistic":
        proto = _logistic_regression_fix(proto, booster, opset=opset)
    expected, labels = _predict(model, booster, x, xgboost, classifier=classifier)
    names = model_names if model_names is not None else booster_names
    classes = getattr(model, "classes_", None) if classifier else None
    proto = add_cover(proto, model)  # the training cover path-dependent TreeShap needs
    return finish_tabular(
        proto, x, expected, labels=labels, framework="xgboost", framework_version=xgboost.__version__,
        class_names=class_names if class_names is not None else classes,
        feature_names=feature_names if feature_names is not None else (names if names is not None else columns),
        preprocessing=preprocessing, path=path, atol=atol, rtol=rtol,
    )


def load_native(path, *, allow_pickle=False):
    """Load a saved XGBoost model: ``.json`` or ``.ubj`` (pickle files only when allowed).

    The objective stored in the file decides the wrapper: ``binary:*`` and ``multi:*`` give an
    ``XGBClassifier`` (its classes come from the file when it was saved from the wrapper, else
    ``0 .. n_classes - 1``), every other objective an ``XGBRegressor``.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"source: no such file {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return unpickle(path, allow_pickle=allow_pickle, extra=EXTRA)
    if suffix not in (".json", ".ubj"):
        raise ConversionError(
            f"source: {path.name!r} is not an XGBoost model file; expected .json or .ubj (saved with "
            "save_model), or with --allow-pickle a pickle file"
        )
    xgboost = require("xgboost", EXTRA)
    try:
        objective = _objective(xgboost.Booster(model_file=str(path)))
        model = xgboost.XGBClassifier() if objective.startswith(CLASSIFIER_PREFIXES) else xgboost.XGBRegressor()
        model.load_model(str(path))
    except xgboost.core.XGBoostError as error:
        raise ConversionError(f"source: XGBoost cannot read {path.name!r}: {first_line(error)}") from error
    return model


def _objective(booster) -> str:
    return json.loads(booster.save_config())["learner"]["objective"]["name"]


def _convert(model, booster, x, *, opset) -> onnx.ModelProto:
    from onnxmltools import convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = booster.feature_names
    if names is not None and not all(re.fullmatch(r"f\d+", str(name)) for name in names):
        # onnxmltools maps split features through the names 'f0', 'f1', ... only
        model = copy.deepcopy(model)
        target = model.get_booster() if hasattr(model, "get_booster") else model
        target.feature_names = None
    try:
        return convert_xgboost(
            model, initial_types=[(INPUT_NAME, FloatTensorType([None, x.shape[1]]))], target_opset=opset,
        )
    except Exception as error:
        raise ConversionError(
            f"model: onnxmltools could not convert {type(model).__name__}: {first_line(error)}. "
            "Try another opset (opset=...)"
        ) from error


def _predict(model, booster, x, xgboost, *, classifier):
    """XGBoost's probabilities (or predictions) and labels on ``x``."""
    if isinstance(model, xgboost.XGBModel):
        if classifier:
            return model.predict_proba(x), model.predict(x)
        return model.predict(x), None
    values = booster.predict(xgboost.DMatrix(x, feature_names=booster.feature_names))
    if not classifier:
        return values, None
    if values.ndim == 1:
        values = np.stack([1.0 - values, values], axis=1)
    return values, values.argmax(axis=1)


def _logistic_regression_fix(proto: onnx.ModelProto, booster, *, opset=None) -> onnx.ModelProto:
    """Base value ``logit(base_score)`` and a Sigmoid after the trees (see the module docstring)."""
    base_score = float(json.loads(booster.save_config())["learner"]["learner_model_param"]["base_score"].strip("[]"))
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = edited.graph
    index = next((i for i, node in enumerate(graph.node) if node.op_type == "TreeEnsembleRegressor"), None)
    if index is None:
        return edited
    node = graph.node[index]
    attributes = {attribute.name: attribute for attribute in node.attribute}
    transform = attributes["post_transform"].s if "post_transform" in attributes else b"NONE"
    base = list(attributes["base_values"].floats) if "base_values" in attributes else []
    if transform != b"NONE" or len(base) != 1 or not np.isclose(base[0], base_score, atol=1e-6):
        return edited  # a converter that handles reg:logistic itself; parity has the last word
    attributes["base_values"].floats[:] = [float(np.log(base_score / (1.0 - base_score)))]
    output = node.output[0]
    node.output[0] = f"{output}_margin"
    sigmoid = onnx.helper.make_node("Sigmoid", [f"{output}_margin"], [output], name="reg_logistic_sigmoid")
    graph.node.insert(index + 1, sigmoid)
    if not any(entry.domain in ("", "ai.onnx") for entry in edited.opset_import):
        edited.opset_import.append(onnx.helper.make_opsetid("", int(opset or 13)))
    return edited
