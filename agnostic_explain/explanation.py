"""Explanation: the one result type every explainer returns and every plot or metric takes."""

from __future__ import annotations

import json
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
        """Read an explanation written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                meta = json.loads(str(archive["meta"]))
                arrays = {name: archive[name] for name in _ARRAYS if name in archive.files}
                array_extras = {
                    name[len(_EXTRA) :]: archive[name] for name in archive.files if name.startswith(_EXTRA)
                }
        except (OSError, KeyError, ValueError) as error:
            raise ParameterError(f"path: {str(path)!r} is not an explanation saved by Explanation.save ({error})") from error
        if meta.pop("format", None) != _FORMAT:
            raise ParameterError(f"path: {str(path)!r} is not an agnostic-explain explanation file")
        meta.pop("has_target")
        for name in ("feature_names", "label_names", "providers"):
            if meta.get(name) is not None:
                meta[name] = tuple(meta[name])
        arrays.setdefault("target", None)
        meta["extras"] = {**meta.get("extras", {}), **array_extras}
        return cls(**arrays, **meta)


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
