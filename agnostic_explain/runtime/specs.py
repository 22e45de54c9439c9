"""Tensor specifications and the checks that fit user arrays to them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputDtypeError, InputShapeError, NonFiniteInputError

# ONNX Runtime's type strings, e.g. "tensor(float)", mapped to numpy dtypes.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
}


def dtype_from_ort(type_string: str) -> np.dtype:
    """Map an ONNX Runtime type string such as ``"tensor(float)"`` to a numpy dtype."""
    if type_string not in _ORT_DTYPES:
        return np.dtype(object)
    return np.dtype(_ORT_DTYPES[type_string])


Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one model input or output.

    Attributes
    ----------
    name : str
    dtype : numpy.dtype
    shape : tuple of (int, str or None), or None
        Static sizes are ints, symbolic dimensions keep their name (str), unknown ones are None.
        None as a whole means any shape (a wrapped Python function).
    batch_axis : int or None
        The axis that indexes rows, or None when the tensor has no batch axis.
    ambiguous_axes : tuple of int
        For an input whose batch axis the model does not show (several unnamed dynamic axes),
        the axes that could hold it; using it raises an error that shows ``batch_axes=``.
    """

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...] | None
    batch_axis: int | None = 0
    ambiguous_axes: tuple = ()

    @property
    def is_floating(self) -> bool:
        return np.issubdtype(self.dtype, np.floating)

    def describe(self) -> str:
        """Shape as text, e.g. ``(batch, 3, 224, 224)``."""
        if self.shape is None:
            return "(any shape)"
        dims = ["?" if dim is None else str(dim) for dim in self.shape]
        return "(" + ", ".join(dims) + (",)" if len(dims) == 1 else ")")

    def row_shape(self) -> tuple[Dim, ...]:
        """The shape without the batch axis."""
        if self.batch_axis is None or self.shape is None:
            return self.shape
        return self.shape[: self.batch_axis] + self.shape[self.batch_axis + 1 :]


def conform(array, spec: TensorSpec, *, parameter: str, batched: bool = True) -> np.ndarray:
    """Return ``array`` as an ndarray of ``spec``'s dtype, checking rank and static dims.

    Parameters
    ----------
    array : array_like
        User data. With ``batched=True`` it includes the batch axis at ``spec.batch_axis``.
    spec : TensorSpec
    parameter : str
        Name of the user-facing parameter, used in error messages.
    batched : bool
        Whether ``array`` carries the batch axis.

    Raises
    ------
    InputShapeError, InputDtypeError
    """
    array = np.asarray(array)
    if spec.shape is None:
        return cast(array, spec, parameter=parameter)
    expected = spec.shape if batched else spec.row_shape()
    if array.ndim != len(expected):
        raise InputShapeError(
            f"{parameter}: input {spec.name!r} expects {len(expected)} dimensions "
            f"{spec.describe()}, got an array of shape {array.shape}"
        )
    for axis, (got, want) in enumerate(zip(array.shape, expected)):
        is_batch = batched and axis == spec.batch_axis
        if isinstance(want, int) and got != want and not is_batch:
            raise InputShapeError(
                f"{parameter}: input {spec.name!r} expects shape {spec.describe()}, "
                f"got {array.shape} (axis {axis} is {got}, expected {want})"
            )
    return cast(array, spec, parameter=parameter)


def cast(array: np.ndarray, spec: TensorSpec, *, parameter: str) -> np.ndarray:
    """Cast to the model's dtype when no information is lost in kind (float->float, int->int)."""
    want = spec.dtype
    if array.dtype == want:
        return array
    got = array.dtype
    if np.issubdtype(want, np.floating) and (
        np.issubdtype(got, np.floating) or np.issubdtype(got, np.integer) or got == np.bool_
    ):
        return array.astype(want)
    if np.issubdtype(want, np.integer) and np.issubdtype(got, np.integer):
        info = np.iinfo(want)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InputDtypeError(
                f"{parameter}: input {spec.name!r} is {want}, and the values "
                f"[{array.min()}, {array.max()}] do not fit"
            )
        return array.astype(want)
    if np.issubdtype(want, np.integer) and np.issubdtype(got, np.floating):
        if np.all(np.isfinite(array)) and np.all(np.mod(array, 1) == 0):
            return array.astype(want)
    if want == np.bool_ and got == np.bool_:
        return array
    raise InputDtypeError(
        f"{parameter}: input {spec.name!r} expects dtype {want}, got {got}, "
        "which cannot be converted without losing information"
    )


def require_finite(array: np.ndarray, *, parameter: str) -> None:
    """Raise :class:`NonFiniteInputError` if a floating array holds NaN or infinity."""
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise NonFiniteInputError(
            f"{parameter}: {bad} value(s) are NaN or infinite; attributions of "
            "non-finite inputs are undefined. Replace them (e.g. np.nan_to_num) first"
        )
