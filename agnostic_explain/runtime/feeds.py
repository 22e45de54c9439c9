"""Feeds: the explained input's rows and the other inputs, checked against the model and laid out
for it batch by batch. :func:`agnostic_explain.runtime.batching.evaluate` runs them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, InputShapeError, ParameterError
from .specs import TensorSpec, conform, require_finite

__all__ = ["Feeds", "to_model_layout"]

#: bytes a token id stands for in the memory budget (an embedding of 64 float32, a small
#: width): 48 tokens count as 12 KiB, so batches start at 64 rows; 512 tokens are a large row
EMBEDDED_BYTES = 256


@dataclass
class Feeds:
    """The explained input's rows (batch first) and the other inputs, validated once.

    Attributes
    ----------
    name : str
        The explained input.
    spec : TensorSpec
    rows : ndarray of shape (n_rows, ...)
        The explained input, batch axis first.
    fixed : dict of str to (ndarray, TensorSpec)
        The other inputs, batch axis first with 1 or n_rows rows, or as given when the
        input has no batch axis.
    """

    name: str
    spec: TensorSpec
    rows: np.ndarray
    fixed: dict

    @classmethod
    def prepare(cls, model, x, *, input=None, fixed_inputs=None, check_finite=True) -> "Feeds":
        spec = model.input_spec(input)
        rows = _batch_first(_with_batch_axis(x, spec), spec, parameter="x")
        if rows.ndim == 0:
            raise InputShapeError(
                f"x: input {spec.name!r} is declared with shape {tuple(spec.shape or ())}, a scalar with no "
                "axis of rows; only inputs with a batch axis can be explained"
            )
        if rows.shape[0] == 0:
            raise InputShapeError("x: no rows to explain (the batch axis has size 0)")
        if check_finite:
            require_finite(rows, parameter="x")
        if fixed_inputs is not None and not isinstance(fixed_inputs, Mapping):
            raise ParameterError(
                f"fixed_inputs must be a dict of input name to array, got {type(fixed_inputs).__name__} "
                f"{_short(fixed_inputs)}"
            )
        fixed_inputs = dict(fixed_inputs or {})
        if spec.name in fixed_inputs:
            raise ParameterError(
                f"fixed_inputs: {spec.name!r} is the explained input; pass it as x, not in fixed_inputs"
            )
        known = {other.name for other in model.inputs}
        unknown = sorted(set(fixed_inputs) - known)
        if unknown:
            raise ParameterError(f"fixed_inputs: model has no inputs {unknown}; inputs are {sorted(known)}")
        fixed = {}
        for other in model.inputs:
            if other.name == spec.name:
                continue
            if other.name not in fixed_inputs:
                raise InputError(
                    f"fixed_inputs: the model also needs input {other.name!r} {other.describe()} "
                    f"({other.dtype}); pass fixed_inputs={{{other.name!r}: array}}"
                )
            value = fixed_inputs[other.name]
            if other.ambiguous_axes:
                raise ParameterError(
                    f"fixed_inputs[{other.name!r}]: the model does not show which axis of {other.name!r} "
                    f"{other.describe()} is the batch: axes {list(other.ambiguous_axes)} are all dynamic. Load the "
                    f"model with batch_axes={{{other.name!r}: AXIS}} (or {{{other.name!r}: None}} if it has no batch)"
                )
            if other.batch_axis is None:
                value = conform(value, other, parameter=f"fixed_inputs[{other.name!r}]")
                if check_finite:
                    require_finite(value, parameter=f"fixed_inputs[{other.name!r}]")
                fixed[other.name] = (value, other)
                continue
            value = _batch_first(_with_batch_axis(value, other), other, parameter=f"fixed_inputs[{other.name!r}]")
            if check_finite:
                require_finite(value, parameter=f"fixed_inputs[{other.name!r}]")
            if value.shape[0] not in (1, rows.shape[0]):
                raise InputShapeError(
                    f"fixed_inputs[{other.name!r}]: its batch axis has {value.shape[0]} rows; expected 1 "
                    f"(shared by all rows) or {rows.shape[0]} (one per row of x)"
                )
            fixed[other.name] = (value, other)
        return cls(name=spec.name, spec=spec, rows=rows, fixed=fixed)

    def batch(self, rows, owners: np.ndarray) -> dict[str, np.ndarray]:
        """The model feeds for a batch of explained rows whose sources are ``owners``.

        ``rows`` is the explained input's rows, or a dict that also perturbs fixed inputs
        with a batch axis (batch first), e.g. an attention mask held in step with the tokens.
        """
        given = dict(rows) if isinstance(rows, dict) else {self.name: rows}
        feeds = {self.name: to_model_layout(given.pop(self.name), self.spec)}
        unknown = sorted(set(given) - self.batched_names()) if given else None
        if unknown:
            raise ParameterError(f"perturbed inputs {unknown} are not fixed inputs with a batch axis")
        for name, (value, spec) in self.fixed.items():
            if spec.batch_axis is None:
                feeds[name] = value
            else:
                picked = given.get(name)
                if picked is None:
                    picked = self.fixed_rows(name, owners)
                feeds[name] = to_model_layout(picked, spec)
        return feeds

    def fixed_rows(self, name: str, owners: np.ndarray) -> np.ndarray:
        """Rows of fixed input ``name`` (batch first) for the explained rows ``owners``."""
        value = self.fixed[name][0]
        return value[owners] if value.shape[0] > 1 else np.repeat(value, len(owners), axis=0)

    def batched_names(self) -> set[str]:
        """The feeds that carry a batch axis."""
        return {self.name} | {name for name, (_, spec) in self.fixed.items() if spec.batch_axis is not None}

    def row_bytes(self, model, outputs) -> int:
        """Bytes one row moves in and out of the model, for the memory budget.

        Token ids (an integer explained input) count ``EMBEDDED_BYTES`` each: they index
        embeddings, and a transformer's activations are hundreds of times its input: a text
        model starts at tens of rows per batch, not thousands like a tabular one.
        """
        explained = self.rows[0].size * EMBEDDED_BYTES if self.rows.dtype.kind in "iu" else self.rows[0].nbytes
        total = explained + sum(value[0].nbytes for value, spec in self.fixed.values() if spec.batch_axis is not None)
        for name in [outputs] if isinstance(outputs, str) else outputs:
            out = model.output_spec(name)
            if out.shape is not None and all(isinstance(dim, int) for dim in out.row_shape()):
                total += int(np.prod(out.row_shape())) * out.dtype.itemsize
            else:
                total += self.rows[0].nbytes  # unknown output size: assume it matches the input
        return max(total, 1)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _with_batch_axis(value, spec: TensorSpec) -> np.ndarray:
    value = np.asarray(value)
    if spec.shape is not None and spec.batch_axis is not None and value.ndim == len(spec.shape) - 1:
        value = np.expand_dims(value, spec.batch_axis)  # one row given without its batch axis
    return value


def _batch_first(value: np.ndarray, spec: TensorSpec, *, parameter: str) -> np.ndarray:
    value = conform(value, spec, parameter=parameter)
    if spec.batch_axis:
        value = np.moveaxis(value, spec.batch_axis, 0)
    return value


def to_model_layout(rows: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.batch_axis:
        rows = np.moveaxis(rows, 0, spec.batch_axis)
    return np.ascontiguousarray(rows)
