"""``weights``: summary statistics of every initializer, and the layers that use it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tables import NamedRows, format_shape, text_table
from .source import open_model
from .topology import consumers, node_names

__all__ = ["WeightStats", "WeightTable", "weights"]

# Statistics are accumulated over chunks of this many elements, so a 1 GB float32
# initializer never needs a 2 GB float64 copy.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class WeightStats:
    """One initializer of the main graph and its value statistics (computed in float64).

    Attributes
    ----------
    name : str
    shape : tuple of int
    dtype : numpy.dtype
    size : int
        Number of elements.
    mean, std, min, max : float
        ``std`` is the population standard deviation (``ddof=0``); all NaN when ``size`` is 0.
    mean_abs : float
        Mean absolute value.
    zero_fraction : float
        Fraction of elements exactly equal to zero.
    layers : tuple of str
        Display names (see :func:`layers`) of the nodes that read it, in graph order.
    op_types : tuple of str
        Op type of each of those nodes.
    """

    name: str
    shape: tuple
    dtype: np.dtype
    size: int
    mean: float
    std: float
    min: float
    max: float
    mean_abs: float
    zero_fraction: float
    layers: tuple[str, ...]
    op_types: tuple[str, ...]


@dataclass(frozen=True)
class WeightTable(NamedRows):
    """The result of :func:`weights`: one :class:`WeightStats` per numeric initializer.

    Iterating yields the rows in initializer order; ``table["conv1.weight"]`` or ``table[0]``
    picks one; ``str(table)`` is an aligned text table with a total line.

    Attributes
    ----------
    weights : tuple of WeightStats
    skipped : tuple of str
        Initializers without numeric values (strings, complex numbers), not summarised.
    """

    weights: tuple[WeightStats, ...]
    skipped: tuple[str, ...] = ()
    _rows = "weights"

    @property
    def n_params(self) -> int:
        """Total number of elements over all summarised initializers."""
        return sum(row.size for row in self.weights)

    @property
    def nbytes(self) -> int:
        return sum(row.size * row.dtype.itemsize for row in self.weights)

    def __str__(self) -> str:
        header = ("name", "shape", "dtype", "mean", "std", "min", "max", "mean|w|", "zeros", "used by")
        rows = [header]
        for row in self.weights:
            used = ", ".join(f"{layer} ({op})" for layer, op in zip(row.layers, row.op_types))
            rows.append((
                row.name,
                format_shape(row.shape),
                str(row.dtype),
                *(f"{value:.4g}" for value in (row.mean, row.std, row.min, row.max, row.mean_abs)),
                f"{row.zero_fraction:.1%}",
                used or "-",
            ))
        lines = text_table(rows, right=range(3, 9))  # numbers right-aligned, so digits line up
        total = f"{len(self.weights)} initializers, {self.n_params:,} values, {_format_bytes(self.nbytes)}"
        if self.skipped:
            total += f"; {len(self.skipped)} non-numeric skipped ({', '.join(self.skipped)})"
        lines.append(total)
        return "\n".join(lines)


def weights(model) -> WeightTable:
    """Statistics of every initializer of the main graph, and which layers consume it.

    Values are read one initializer at a time (external data included, only from inside the
    model's folder) and summarised in float64. Integer and boolean initializers (such as the
    shape operand of a Reshape) are summarised too; string and complex ones are listed in
    ``skipped``. Sparse initializers and ``Constant`` nodes are not included.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel

    Returns
    -------
    WeightTable

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> table = weights(DEFAULT_MODEL_PATH)
    >>> row = table["conv1.weight"]
    >>> row.shape, row.layers, row.op_types
    ((16, 1, 3, 3), ('/conv1/Conv',), ('Conv',))
    >>> table.n_params
    19178
    """
    source = open_model(model)
    graph = source.proto.graph
    names = node_names(graph)
    read_by = consumers(graph)
    rows, skipped = [], []
    for tensor in graph.initializer:
        values = source.array(tensor)
        stats = _statistics(values)
        if stats is None:
            skipped.append(tensor.name)
            continue
        indices = read_by.get(tensor.name, [])
        rows.append(WeightStats(
            name=tensor.name,
            shape=tuple(int(dim) for dim in values.shape),
            dtype=values.dtype,
            size=int(values.size),
            **stats,
            layers=tuple(names[index] for index in indices),
            op_types=tuple(graph.node[index].op_type for index in indices),
        ))
    return WeightTable(weights=tuple(rows), skipped=tuple(skipped))


def as_float64(values: np.ndarray) -> np.ndarray | None:
    """``values`` as float64, or None when they are not real numbers (strings, complex)."""
    if values.dtype.kind in "biuf":
        return values.astype(np.float64, copy=False)
    if values.dtype.kind == "V":  # ml_dtypes (bfloat16, float8, int4) convert; other records do not
        try:
            return values.astype(np.float64)
        except (TypeError, ValueError):
            return None
    return None


def _statistics(values: np.ndarray) -> dict | None:
    flat = values.reshape(-1)
    if as_float64(flat[:1]) is None:
        return None
    if flat.size == 0:
        nan = float("nan")
        return dict(mean=nan, std=nan, min=nan, max=nan, mean_abs=nan, zero_fraction=nan)
    count, mean, m2 = 0, 0.0, 0.0
    low, high, total_abs, zeros = np.inf, -np.inf, 0.0, 0
    for start in range(0, flat.size, _CHUNK):
        chunk = as_float64(flat[start:start + _CHUNK])
        n = chunk.size
        chunk_mean = float(chunk.mean())
        chunk_m2 = float(np.square(chunk - chunk_mean).sum())
        # Chan et al.'s pairwise update: exact merging of per-chunk means and squared deviations
        delta = chunk_mean - mean
        mean += delta * n / (count + n)
        m2 += chunk_m2 + delta * delta * count * n / (count + n)
        count += n
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        total_abs += float(np.abs(chunk).sum())
        zeros += int(np.count_nonzero(chunk == 0))
    return dict(mean=mean, std=float(np.sqrt(m2 / count)), min=low, max=high,
                mean_abs=total_abs / count, zero_fraction=zeros / count)


def _format_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            return f"{size:.1f} {unit}"
