"""Explanation: the one result type every explainer returns and every plot or metric takes."""

from __future__ import annotations

import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .errors import ParameterError

_ARRAYS = ("values", "base_values", "data", "target")
_EXTRA = "extras."
_FORMAT = "agnostic-explain/explanation/1"


@dataclass(frozen=True, eq=False)
class Explanation:
    """Attributions for a batch of inputs, with everything needed to read and plot them.

    Attributes
    ----------
    values : ndarray of shape (n_rows, ...)
        Attributions, shaped like the explained input with the batch axis first.
    base_values : ndarray of shape (n_rows,)
        The target at the unperturbed input.
    data : ndarray of shape (n_rows, ...)
        The explained input.
    target : ndarray of shape (n_rows,) or (n_rows, k), or None
        The output index explained for each row; None for a callable target.
    method : str
        The explainer's name, e.g. ``"occlusion"``.
    params : dict
        The explainer's parameters, JSON-serialisable.
    n_evals : int
        Model rows evaluated, the unperturbed ones included.
    seconds : float
        Wall time of the explanation.
    input_name, output_name : str or None
        The explained model input and output.
    feature_names, label_names : tuple of str or None
        Names of input features and of output classes, where the model carries them.
    providers : tuple of str
        Execution providers the model ran on.
    preprocessing : dict or None
        How raw inputs became ``data`` (layout, scale, mean, std), from the model's metadata;
        plots use it to show inputs un-normalised.
    extras : dict
        Method-specific results: arrays with the batch axis first (per-row surrogate scores,
        group-level values, feature masks) or JSON-serialisable values.
    """

    values: np.ndarray
    base_values: np.ndarray
    data: np.ndarray
    target: np.ndarray | None
    method: str
    params: dict = field(default_factory=dict)
    n_evals: int = 0
    seconds: float = 0.0
    input_name: str | None = None
    output_name: str | None = None
    feature_names: tuple[str, ...] | None = None
    label_names: tuple[str, ...] | None = None
    providers: tuple[str, ...] = ()
    preprocessing: dict | None = None
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, index) -> "Explanation":
        """Select rows; an int gives one row and keeps the batch axis (length 1)."""
        if isinstance(index, (int, np.integer)):
            if not -len(self) <= index < len(self):
                raise IndexError(f"row {index} is out of range for an explanation of {len(self)} rows")
            index = slice(int(index) % len(self), int(index) % len(self) + 1)
        pick = lambda array: None if array is None else array[index]  # noqa: E731
        rows = len(self)
        extras = {
            key: pick(value) if isinstance(value, np.ndarray) and value.ndim and len(value) == rows else value
            for key, value in self.extras.items()
        }
        return replace(
            self,
            values=pick(self.values),
            base_values=pick(self.base_values),
            data=pick(self.data),
            target=pick(self.target),
            extras=extras,
        )

    def __repr__(self) -> str:
        return (
            f"Explanation(method={self.method!r}, rows={len(self)}, values shape={self.values.shape}, "
            f"n_evals={self.n_evals}, seconds={self.seconds:.3f})"
        )

    @property
    def target_names(self) -> list[str] | None:
        """Label names of each row's target, where the model has class names."""
        if self.label_names is None or self.target is None or self.target.ndim != 1:
            return None
        return [self.label_names[int(index)] if 0 <= index < len(self.label_names) else str(index) for index in self.target]

    def save(self, path) -> Path:
        """Write to ``path`` as ``.npz`` (no pickle). Returns the path written."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        array_extras = {key: value for key, value in self.extras.items() if isinstance(value, np.ndarray)}
        meta = {
            "format": _FORMAT,
            **{f.name: getattr(self, f.name) for f in fields(self) if f.name not in _ARRAYS + ("extras",)},
            "extras": {key: value for key, value in self.extras.items() if key not in array_extras},
            "has_target": self.target is not None,
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS if getattr(self, name) is not None}
        arrays.update({_EXTRA + key: value for key, value in array_extras.items()})
        np.savez_compressed(path, meta=np.array(json.dumps(json_ready(meta))), **arrays)
        return path

    @classmethod
    def load(cls, path) -> "Explanation":
        """Read an explanation written by :meth:`save`.

        Every key, dtype and shape is checked against what :meth:`save` writes, before the
        arrays are read (no pickle is ever loaded).

        Raises
        ------
        ParameterError
            The file is missing, truncated, not an ``.npz``, or was written or altered by
            something other than :meth:`save`; the message says what is wrong.
        """
        return cls(**_read_saved(path))


#: what a damaged archive raises across zipfile, zlib, numpy's header parser and json
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, TypeError, MemoryError, OverflowError, SyntaxError,
                RuntimeError, NotImplementedError, zipfile.BadZipFile, zlib.error, struct.error)
#: dtype kinds each saved array may hold: numbers (no object, bytes, void or dates)
_KINDS = {"values": "fiu", "base_values": "fiu", "data": "biufU", "target": "iu"}
_EXTRA_KINDS = "biufU"
#: the JSON fields of ``meta``, and the types each may take (None where the field is optional)
_META = {
    "method": (str,), "params": (dict,), "n_evals": (int,), "seconds": (int, float), "input_name": (str, type(None)),
    "output_name": (str, type(None)), "feature_names": (list, type(None)), "label_names": (list, type(None)),
    "providers": (list,), "preprocessing": (dict, type(None)), "extras": (dict,), "has_target": (bool,),
}


class _Tampered(Exception):
    """Why a file is not what :meth:`Explanation.save` wrote."""


def _read_saved(path) -> dict:
    """The constructor arguments of a saved explanation, every one checked; raises ParameterError."""
    if not isinstance(path, (str, os.PathLike)) and not (hasattr(path, "read") and hasattr(path, "seek")):
        raise ParameterError(f"path must be a str, an os.PathLike or a binary file, got {type(path).__name__}")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = _headers(archive)
            arrays = {name: _read_member(archive, name) for name in headers}
        meta = _meta(arrays.pop("meta"))
        missing = [name for name in ("values", "base_values", "data") if name not in arrays]
        if missing:
            raise _Tampered(f"the arrays {missing} are missing")
        return _arguments(meta, arrays)
    except _Tampered as error:
        reason = str(error)
    except _READ_ERRORS as error:
        if isinstance(error, FileNotFoundError):
            reason = "no such file"
        else:
            reason = f"{type(error).__name__}: {' '.join(str(error).split())[:200] or 'no details'}"
    raise ParameterError(
        f"path: {str(path)!r} is not an explanation saved by Explanation.save ({reason}); "
        "expected an .npz file written by Explanation.save, whole and unaltered"
    ) from None


def _headers(archive: zipfile.ZipFile) -> dict:
    """Each member's shape and dtype, read from its header and checked against its size before any data."""
    headers = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise _Tampered(f"unexpected member {info.filename!r}")
        name = info.filename[: -len(".npy")]
        if name not in ("meta",) + _ARRAYS and not name.startswith(_EXTRA):
            raise _Tampered(f"unexpected array {name!r}")
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise _Tampered(f"array {name!r} has an unsupported .npy version {version}")
            offset = member.tell()
        if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
            raise _Tampered(f"array {name!r} has dtype {dtype}; only plain numeric or text arrays are saved")
        expected = offset + math.prod(shape) * dtype.itemsize
        if info.file_size != expected:
            raise _Tampered(f"array {name!r} declares shape {shape} of {dtype} ({expected} bytes with its header), "
                            f"but holds {info.file_size} bytes")
        headers[name] = (shape, dtype)
    if "meta" not in headers:
        raise _Tampered("the arrays ['meta'] are missing")
    for name, (shape, dtype) in headers.items():
        kinds = "U" if name == "meta" else _KINDS.get(name, _EXTRA_KINDS)
        if dtype.kind not in kinds:
            raise _Tampered(f"array {name!r} has dtype {dtype}; expected kind {' or '.join(kinds)}")
    if headers["meta"][0] != ():
        raise _Tampered(f"'meta' has shape {headers['meta'][0]}; expected one string")
    return headers


def _read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def _meta(array: np.ndarray) -> dict:
    meta = json.loads(str(array))
    if not isinstance(meta, dict):
        raise _Tampered(f"'meta' holds {type(meta).__name__}; expected a JSON object")
    found = meta.pop("format", None)
    if found != _FORMAT:
        raise _Tampered(f"not an agnostic-explain explanation: 'meta' names the format {found!r}, not {_FORMAT!r}")
    unknown = sorted(set(meta) - set(_META))
    if unknown:
        raise _Tampered(f"'meta' has unknown fields {unknown}")
    if "method" not in meta:
        raise _Tampered("'meta' has no 'method'")
    for name, value in meta.items():
        types = _META[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _Tampered(f"'meta' field {name!r} is {value!r}; expected {' or '.join(t.__name__ for t in types)}")
    for name in ("feature_names", "label_names", "providers"):
        if meta.get(name) is not None:
            if not all(isinstance(item, str) for item in meta[name]):
                raise _Tampered(f"'meta' field {name!r} holds items that are not strings")
            meta[name] = tuple(meta[name])
    if meta.get("n_evals", 0) < 0 or not math.isfinite(meta.get("seconds", 0.0)):
        raise _Tampered(f"'meta' has n_evals={meta.get('n_evals')!r}, seconds={meta.get('seconds')!r}")
    return meta


def _arguments(meta: dict, arrays: dict) -> dict:
    has_target = meta.pop("has_target", "target" in arrays)
    if has_target != ("target" in arrays):
        raise _Tampered(f"'meta' says has_target={has_target}, but the 'target' array is "
                        f"{'present' if 'target' in arrays else 'missing'}")
    values, base_values, data = arrays["values"], arrays["base_values"], arrays["data"]
    if values.ndim < 1:
        raise _Tampered(f"'values' has shape {values.shape}; expected a batch axis first")
    n = values.shape[0]
    if base_values.shape != (n,):
        raise _Tampered(f"'base_values' has shape {base_values.shape}; expected ({n},) for {n} rows of values")
    if data.ndim < 1 or data.shape[0] != n:
        raise _Tampered(f"'data' has shape {data.shape}; expected {n} rows like 'values' {values.shape}")
    target = arrays.get("target")
    if target is not None and (target.ndim not in (1, 2) or target.shape[0] != n):
        raise _Tampered(f"'target' has shape {target.shape}; expected ({n},) or ({n}, k)")
    extras = dict(meta.get("extras", {}))
    for name, array in arrays.items():
        if name.startswith(_EXTRA):
            extras[name[len(_EXTRA) :]] = array
    meta["extras"] = extras
    return {"values": values, "base_values": base_values, "data": data, "target": target, **meta}


def json_ready(value):
    """Convert numpy scalars, arrays and tuples to plain JSON values."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)
