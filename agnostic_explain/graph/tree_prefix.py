"""The steps between a model's input and its tree ensemble, when each acts on one feature at a time.

scikit-learn pipelines put scalers, imputers and casts before the trees, and a
``ColumnTransformer`` selects columns (``ArrayFeatureExtractor``, ``Gather``) and concatenates
them again (``Concat``). None of these mixes two features, so a Shapley game on the trees'
input is the same game on the raw features, each tree feature standing for the raw column it
comes from: TreeSHAP runs on the transformed rows and hands each value back to that column.
Anything else (a PCA's ``MatMul``, a ``Normalizer``) mixes features and is refused.

One small rule per operator (``RULES``): it gets the node, its attributes, the constant inputs
and its one data input, and returns a numpy function of that input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import helper

from ..errors import ParameterError

__all__ = ["Prefix", "read_prefix"]

KERNEL_HINT = "explain this model with agnostic_explain.KernelShap instead"


@dataclass(frozen=True)
class Prefix:
    """The steps before the trees.

    Attributes
    ----------
    apply : callable
        Explained rows (n_rows, width) to the trees' input (n_rows, n_tree_features), in numpy.
    input : str
        The graph input they start from.
    columns : ndarray of shape (n_tree_features,) or None
        The input column behind each tree feature; None when the trees read the input's columns as they are.
    """

    apply: Callable[[np.ndarray], np.ndarray]
    input: str
    columns: np.ndarray | None


def read_prefix(name: str, producers: dict, constants: dict, inputs) -> Prefix:
    """Trace the trees' input ``name`` back to one graph input through per-feature steps.

    Raises
    ------
    ParameterError
        A step that may mix features, two graph inputs, or one raw column feeding two tree features.
    """
    widths = {value.name: _width(value) for value in inputs}
    sources: set = set()

    def build(tensor):
        if tensor in widths:
            sources.add(tensor)
            return (lambda rows: rows), None
        step = producers.get(tensor)
        if step is None:
            raise ParameterError(f"model: the trees' input {tensor!r} comes from neither a graph input nor a node")
        attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in step.attribute}
        data = [operand for operand in step.input if operand and operand not in constants]
        if step.op_type == "Concat" and attributes.get("axis") in (1, -1):
            parts = [build(operand) for operand in data]
            functions = [function for function, _ in parts]
            columns = np.concatenate([_known(columns, operand, widths, sources) for (_, columns), operand
                                      in zip(parts, data)])
            return (lambda rows: np.concatenate([function(rows) for function in functions], axis=1)), columns
        rule = RULES.get(step.op_type)
        if rule is None or len(data) != 1:
            raise ParameterError(
                f"model: a {step.op_type} node ({step.name or step.output[0]!r}) comes before the trees and may mix "
                f"features; TreeShap folds only per-feature steps ({', '.join(sorted(RULES))}, Concat); {KERNEL_HINT}"
            )
        inner, columns = build(data[0])
        apply, select = rule(step, attributes, constants, data[0])
        if select is not None:
            columns = _known(columns, data[0], widths, sources)[select]
        return (lambda rows: apply(inner(rows))), columns

    apply, columns = build(name)
    if len(sources) != 1:
        raise ParameterError(f"model: the trees read {len(sources)} graph inputs {sorted(sources)}; TreeShap explains "
                             f"one input; {KERNEL_HINT}")
    if columns is not None and len(np.unique(columns)) != len(columns):
        raise ParameterError(f"model: an input column feeds more than one tree feature (columns {columns.tolist()}); "
                             f"{KERNEL_HINT}")
    return Prefix(apply, sources.pop(), columns)


def _width(value) -> int | None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value"):
        return dims[1].dim_value
    return None


def _known(columns, operand, widths, sources):
    """``columns``, or all of the graph input's when a branch reads it as it is."""
    if columns is not None:
        return columns
    width = widths.get(next(iter(sources)) if operand not in widths else operand)
    if width is None:
        raise ParameterError(f"model: columns of {operand!r} are selected before the trees, but the input's width "
                             f"is not static; {KERNEL_HINT}")
    return np.arange(width)


def _per_feature(values, step):
    values = np.asarray(values)
    if values.ndim > 1 and any(size != 1 for size in values.shape[:-1]):
        raise ParameterError(
            f"model: {step.op_type} node {step.name!r} has a constant of shape {values.shape}; TreeShap folds only "
            f"constants with one value per feature; {KERNEL_HINT}"
        )
    return values.reshape(-1)


def _identity(step, attributes, constants, data):
    return (lambda rows: rows), None


def _scaler(step, attributes, constants, data):
    offset = np.asarray(attributes.get("offset", [0.0]), dtype=np.float32)
    scale = np.asarray(attributes.get("scale", [1.0]), dtype=np.float32)
    return (lambda rows: ((rows - offset) * scale).astype(rows.dtype)), None


def _imputer(step, attributes, constants, data):
    imputed = np.asarray(attributes.get("imputed_value_floats", []), dtype=np.float32)
    replaced = attributes.get("replaced_value_float", 0.0)

    def apply(rows):
        missing = np.isnan(rows) if np.isnan(replaced) else rows == replaced
        return np.where(missing, np.broadcast_to(imputed, rows.shape[1:]), rows).astype(rows.dtype)

    return apply, None


def _cast(step, attributes, constants, data):
    target = helper.tensor_dtype_to_np_dtype(attributes["to"])
    if target.kind != "f":
        raise ParameterError(f"model: Cast to {target} before the trees; {KERNEL_HINT}")
    return (lambda rows: rows.astype(target)), None


def _arithmetic(step, attributes, constants, data):
    operation = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[step.op_type]
    constant = _per_feature(constants[next(operand for operand in step.input if operand != data)], step)
    first = step.input[0] == data
    return (lambda rows: operation(rows, constant.astype(rows.dtype)) if first
            else operation(constant.astype(rows.dtype), rows)), None


def _select(step, attributes, constants, data):
    if step.op_type == "Gather" and attributes.get("axis", 0) not in (1, -1):
        raise ParameterError(f"model: a Gather on axis {attributes.get('axis', 0)} comes before the trees; "
                             f"{KERNEL_HINT}")
    indices = np.asarray(constants[step.input[1]], dtype=np.int64).reshape(-1)
    return (lambda rows: rows[:, indices]), indices


RULES = {
    "Identity": _identity,
    "Cast": _cast,
    "Scaler": _scaler,
    "Imputer": _imputer,
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Mul": _arithmetic,
    "Div": _arithmetic,
    "ArrayFeatureExtractor": _select,
    "Gather": _select,
}
