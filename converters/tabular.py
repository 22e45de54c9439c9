"""What the tabular converters (scikit-learn, XGBoost, LightGBM) share: one float matrix in,
probabilities (or values) first out, a named batch axis, and the pickle guard."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, require

from .metadata import finish

__all__ = ["BATCH", "INPUT_NAME", "PICKLE_SUFFIXES", "arrange_outputs", "finish_tabular", "first_line",
           "native_rows", "tabular_sample", "unpickle"]

INPUT_NAME = "input"
BATCH = "batch"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def native_rows(x, sample, model_names):
    """The float32 rows as a DataFrame when the model was fitted on one (else it warns), else ``x``."""
    if model_names is None:
        return x
    import pandas as pd

    return pd.DataFrame(x, columns=[str(name) for name in model_names],
                        index=getattr(sample, "index", None))


def tabular_sample(sample, n_features, *, model_names=None):
    """``sample`` as a float32 matrix, and its column names when it is a DataFrame.

    Raises ConversionError naming ``sample`` when it is not 2-D, not numeric, or its width
    is not ``n_features`` (when known).
    """
    columns = None
    if hasattr(sample, "columns") and hasattr(sample, "dtypes"):
        columns = [str(column) for column in sample.columns]
        from pandas.api.types import is_numeric_dtype

        text = [column for column, dtype in zip(columns, sample.dtypes) if not is_numeric_dtype(dtype)]
        if text:
            raise ConversionError(
                f"sample: columns {text} are not numeric; the ONNX model takes one float matrix, so "
                "encode categories as integer codes first"
            )
        if model_names is not None and list(columns) != [str(name) for name in model_names]:
            raise ConversionError(
                f"sample: the DataFrame's columns {columns} differ from the model's feature names "
                f"{[str(name) for name in model_names]}"
            )
        sample = sample.to_numpy()
    try:
        x = np.asarray(sample, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ConversionError(f"sample: expected a numeric array of shape (n_rows, n_features), got {error}") from error
    width = "n_features" if n_features is None else str(int(n_features))
    if x.ndim != 2 or x.shape[0] == 0:
        raise ConversionError(f"sample: expected a non-empty array of shape (n_rows, {width}), got shape {x.shape}")
    if n_features is not None and x.shape[1] != int(n_features):
        raise ConversionError(
            f"sample: the model takes {int(n_features)} features, so the sample must have shape "
            f"(n_rows, {int(n_features)}); got {x.shape}"
        )
    return x, columns


def finish_tabular(proto, x, expected, *, labels=None, **finish_options) -> onnx.ModelProto:
    """Probabilities (or values) first, a named batch axis, the label check, then :func:`finish`.

    Parity compares the first floating output with ``expected``; labels, when given, are
    compared exactly, and mismatches only warn (a probability tie can flip one in float32).
    """
    from agnostic_explain.runtime import load

    proto = arrange_outputs(proto)
    main = proto.graph.output[0].name
    model = load(proto, providers="cpu")  # one session for the label check and the parity check
    if labels is not None:
        _check_labels(model, proto, x, np.asarray(labels))
    return finish(proto, feeds={proto.graph.input[0].name: x}, expected={main: np.asarray(expected)}, model=model,
                  **finish_options)


def arrange_outputs(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with floating outputs first (stable) and the first axis of inputs and outputs named ``batch``."""
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    outputs = list(edited.graph.output)
    floating = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}
    ordered = sorted(outputs, key=lambda value: value.type.tensor_type.elem_type not in floating)
    del edited.graph.output[:]
    edited.graph.output.extend(ordered)
    initializers = {tensor.name for tensor in edited.graph.initializer}
    # every tabular model maps rows to rows; converters leave the batch unnamed or (LightGBM's
    # label) wrongly fixed at 1, which ONNX Runtime warns about on every run
    for value in [value for value in edited.graph.input if value.name not in initializers] + list(edited.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = BATCH
    return edited


def _check_labels(model, proto, x, labels) -> None:
    label_output = next((value.name for value in proto.graph.output[1:]), None)
    if label_output is None:
        return
    got = np.asarray(model.run({proto.graph.input[0].name: x}, [label_output])[0]).ravel()
    expected = labels.ravel()
    same = got.astype(str) == expected.astype(str) if got.dtype.kind in "OUS" or expected.dtype.kind in "OUS" else (
        got == expected
    )
    if got.shape != expected.shape or not np.all(same):
        different = int(np.size(same) - np.count_nonzero(same)) if got.shape == expected.shape else len(expected)
        warnings.warn(
            f"parity: the ONNX label differs from the source's predicted label on {different} of "
            f"{len(expected)} sample rows (the probabilities match)", stacklevel=3,
        )


def unpickle(path: Path, *, allow_pickle: bool, extra: str):
    """Load a pickle or joblib file only when ``allow_pickle`` is set, with a warning."""
    if not allow_pickle:
        raise ConversionError(
            f"source: {path.name!r} is a pickle file, and unpickling can run arbitrary code; pass "
            "--allow-pickle (allow_pickle=True) only if the file is trusted"
        )
    warnings.warn(f"loading {path.name!r}: unpickling can run arbitrary code", stacklevel=3)
    joblib = require("joblib", extra)
    return joblib.load(path)


def first_line(error: BaseException, limit: int = 300) -> str:
    """The start of an error's message: converters' messages can dump megabytes of attributes."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text if len(text) <= limit else text[:limit] + " ..."
