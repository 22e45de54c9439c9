"""Targets: which scalar of a model's output an explanation explains, one per row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ModelExecutionError, ParameterError, TargetError

OUTPUT_TRANSFORMS = (None, "softmax", "sigmoid")


def transform(outputs: np.ndarray, kind: str | None) -> np.ndarray:
    """Apply ``output_transform`` to a batch of outputs (batch axis first).

    ``"softmax"`` normalises over axis 1 (the class axis), ``"sigmoid"`` is elementwise.
    """
    if kind is None:
        return outputs
    values = outputs.astype(np.float64, copy=False)
    if kind == "softmax":
        if values.ndim < 2:
            raise ParameterError(
                f"output_transform='softmax' needs outputs with a class axis, got shape {outputs.shape}"
            )
        shifted = values - values.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)
    if kind == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * values))
    raise ParameterError(
        f"output_transform must be one of {OUTPUT_TRANSFORMS}, got {kind!r}"
    )


@dataclass(frozen=True)
class Target:
    """A resolved target: per-row indices into the output, or a callable.

    Attributes
    ----------
    indices : ndarray of shape (n_rows, k) or None
        For each explained row, an index into the output's non-batch axes.
    function : callable or None
        ``function(outputs) -> ndarray of shape (batch,)`` for custom targets, or
        ``function(outputs, owners)`` when it needs the explained row each output row
        perturbs (a distance to that row's own unperturbed output, say).
    """

    indices: np.ndarray | None
    function: Callable | None = None
    with_owners: bool = False
    #: the explained output, for error messages
    output_name: str = "output"

    def select(self, outputs: np.ndarray, owners: np.ndarray) -> np.ndarray:
        """Scalars of shape (batch,) from outputs of shape (batch, ...).

        ``owners[i]`` is the explained row that produced output row ``i``.
        """
        if self.function is not None:
            found = self.function(outputs, owners) if self.with_owners else self.function(outputs)
            scalars = np.asarray(found, dtype=np.float64)
            if scalars.shape != (outputs.shape[0],):
                raise TargetError(
                    f"target callable must return one scalar per row, shape ({outputs.shape[0]},), "
                    f"got shape {scalars.shape}"
                )
            check_finite_scalars(scalars, outputs, owners, self.output_name, callable_target=True)
            return scalars
        flat = outputs.reshape(outputs.shape[0], -1)
        positions = self.positions(outputs.shape[1:])[owners]
        scalars = flat[np.arange(len(owners)), positions].astype(np.float64)
        check_finite_scalars(scalars, outputs, owners, self.output_name, callable_target=False)
        return scalars

    def positions(self, row_shape: tuple) -> np.ndarray:
        """Flat index of each explained row's target in an output row of ``row_shape``, shape (n_rows,)."""
        if self.indices.shape[1] == 0:
            return np.zeros(len(self.indices), dtype=np.int64)
        return np.ravel_multi_index(tuple(self.indices.T), row_shape).astype(np.int64)

    def as_array(self) -> np.ndarray | None:
        """Indices as stored in an Explanation: shape (n_rows,) for class targets."""
        if self.indices is None:
            return None
        if self.indices.shape[1] == 1:
            return self.indices[:, 0]
        return self.indices


def target_reducer(target: Target, output_transform: str | None) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The batching loop's ``reduce``: each output row's target scalar, after ``output_transform``."""

    def reduce(outputs: np.ndarray, owners: np.ndarray) -> np.ndarray:
        return target.select(transform(outputs, output_transform), owners)

    return reduce


def resolve(target, outputs: np.ndarray, *, output_name: str = "output") -> Target:
    """Validate ``target`` against the unperturbed outputs and resolve it per row.

    Parameters
    ----------
    target : int, tuple of int, sequence of (int or tuple), "predicted", callable, or None
        ``None`` is allowed only when each row's output is one scalar.
    outputs : ndarray of shape (n_rows, ...)
        The (transformed) outputs at the unperturbed inputs.
    output_name : str
        Used in error messages.

    Returns
    -------
    Target
    """
    n_rows, item_shape = outputs.shape[0], outputs.shape[1:]
    if callable(target):
        return Target(indices=None, function=target, with_owners=_takes_owners(target), output_name=output_name)
    if target is None:
        if int(np.prod(item_shape)) != 1:
            raise TargetError(
                f"target is required: output {output_name!r} has shape {outputs.shape[1:]} per row; "
                "pass an int class index, a list with one per row, 'predicted', or a callable"
            )
        return Target(indices=np.zeros((n_rows, 0), dtype=np.int64), output_name=output_name)
    if isinstance(target, str):
        if target != "predicted":
            raise TargetError(f"target: the only string accepted is 'predicted', got {target!r}")
        flat = outputs.reshape(n_rows, -1)
        best = np.argmax(flat, axis=1) if flat.shape[1] else np.zeros(n_rows, dtype=np.int64)
        if not item_shape:
            return Target(indices=np.zeros((n_rows, 0), dtype=np.int64), output_name=output_name)
        return Target(indices=np.stack(np.unravel_index(best, item_shape), axis=1), output_name=output_name)
    if isinstance(target, (int, np.integer, tuple)):
        # one target for every row: checked once, not once per row
        index = np.array(_one_index(target, item_shape, output_name), dtype=np.int64)
        return Target(indices=np.tile(index, (n_rows, 1)), output_name=output_name)
    if not isinstance(target, (list, np.ndarray)):
        raise TargetError(
            f"target must be an int, a tuple, a list, 'predicted' or a callable, got {type(target).__name__}"
        )
    if len(target) != n_rows:
        raise TargetError(f"target: a list of targets needs one per explained row ({n_rows}), got {len(target)}")
    try:
        array = np.asarray(target)
    except ValueError:  # ragged: tuples of several lengths, checked one by one below
        array = np.empty(0, dtype=object)
    if isinstance(target, list) and any(isinstance(item, (bool, np.bool_)) for item in target):
        array = np.empty(0, dtype=object)  # numpy would read True as 1: the check below refuses it
    if array.dtype.kind in "iu" and array.ndim in (1, 2):
        # integer targets: each distinct one is checked once, not once per row
        distinct = np.unique(array, axis=0)
        checked = [_one_index(tuple(item.tolist()) if array.ndim == 2 else int(item), item_shape, output_name)
                   for item in distinct]
        width = len(checked[0]) if checked else len(item_shape)
        indices = array.reshape(n_rows, -1).astype(np.int64)
        if indices.shape[1] < width:  # a class index into (batch, classes, 1) outputs
            indices = np.concatenate([indices, np.zeros((n_rows, width - indices.shape[1]), np.int64)], axis=1)
    else:
        indices = np.array([_one_index(item, item_shape, output_name) for item in target], dtype=np.int64)
    return Target(indices=indices.reshape(n_rows, -1), output_name=output_name)


def _one_index(item, item_shape: tuple, output_name: str) -> tuple:
    index = tuple(item) if isinstance(item, (tuple, list, np.ndarray)) else (item,)
    if not all(isinstance(value, (int, np.integer)) and not isinstance(value, bool) for value in index):
        raise TargetError(f"target: indices must be integers, got {item!r}")
    if len(index) == 1 and len(item_shape) == 2 and item_shape[1] == 1:
        index = (index[0], 0)  # a (batch, classes, 1) output still takes a class index
    if len(index) != len(item_shape):
        raise TargetError(
            f"target {item!r} indexes {len(index)} axes, but output {output_name!r} has "
            f"{len(item_shape)} non-batch axes {item_shape}; pass a tuple with one index per axis "
            "or a callable that reduces each row to a scalar"
        )
    for value, size in zip(index, item_shape):
        if not 0 <= value < size:
            # a negative index would wrap around and explain the last class without a word
            raise TargetError(
                f"target {item!r} is out of range for output {output_name!r} of shape "
                f"{item_shape} per row (valid: 0..{size - 1}); negative indices do not count from the end here"
            )
    return tuple(int(value) for value in index)


def check_finite_scalars(scalars: np.ndarray, outputs: np.ndarray, owners: np.ndarray, output_name: str, *,
                         callable_target: bool) -> None:
    """Refuse NaN or infinite target scalars, which would make every attribution NaN without a word.

    Raises
    ------
    ModelExecutionError
        The model's output itself is NaN or infinite at that row.
    TargetError
        A target callable returned NaN or infinity from finite outputs.
    """
    bad = ~np.isfinite(scalars)
    if not bad.any():
        return
    row = int(np.flatnonzero(bad)[0])
    owner = int(np.asarray(owners)[row])
    where = f"row {row} of the batch, which belongs to explained row {owner}"
    count = f"{int(bad.sum())} of {len(scalars)} rows"
    model_row = outputs[row]
    if not callable_target or (np.asarray(model_row).dtype.kind in "fc" and not np.isfinite(model_row).all()):
        raise ModelExecutionError(
            f"the model's output {output_name!r} is {scalars[row]} at {where} ({count} of this batch); "
            f"expected finite outputs: check the model and its inputs (a NaN or infinity there makes every "
            f"attribution NaN)"
        )
    raise TargetError(
        f"the target callable returned {scalars[row]} at {where} ({count} of this batch) from finite values of "
        f"output {output_name!r}; expected one finite scalar per row"
    )


def _takes_owners(function) -> bool:
    """Whether a target callable takes ``(outputs, owners)`` rather than ``(outputs)``."""
    import inspect

    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature take the outputs only
        return False
    required = [p for p in parameters
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return len(required) >= 2
