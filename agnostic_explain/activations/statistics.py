"""What is computed from recorded activations: per-layer statistics and a PCA embedding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..tables import NamedRows, format_shape, text_table

__all__ = ["ActivationStatistics", "Embedding", "LayerStatistics", "channel_means", "layer_statistics", "pca_embedding"]


@dataclass(frozen=True)
class LayerStatistics:
    """Summary of one layer's activations over the recorded rows.

    Attributes
    ----------
    name : str
    op_type : str
    shape : tuple of int
        The shape of one row's values (batch axis dropped).
    mean, std : float
        Over every value of every row.
    fraction_zero : float
        Share of values exactly zero (dead units after a ReLU, say).
    top_channels : dict
        Per class (None when rows are not grouped), ndarray of shape (k,): the channels
        with the highest mean activation over that class's rows, strongest first.
    top_values : dict
        The matching mean activations, ndarray of shape (k,).
    """

    name: str
    op_type: str
    shape: tuple
    mean: float
    std: float
    fraction_zero: float
    top_channels: dict
    top_values: dict


@dataclass(frozen=True)
class ActivationStatistics(NamedRows):
    """The result of :meth:`LayerActivations.statistics`: one :class:`LayerStatistics` per layer.

    ``str()`` is a text table; iterate it, or index it by layer name or position.

    Attributes
    ----------
    layers : tuple of LayerStatistics
    classes : tuple
        The classes rows were grouped by, or ``(None,)``.
    label_names : tuple of str or None
    n_rows : int
    """

    layers: tuple
    classes: tuple
    label_names: tuple | None
    n_rows: int
    _rows = "layers"

    def class_name(self, key) -> str:
        """How class ``key`` is printed: its label name where the model has them."""
        if key is None:
            return "all rows"
        if isinstance(key, int) and self.label_names and 0 <= key < len(self.label_names):
            name = self.label_names[key]
            return f"class {key}" if name == str(key) else f"class {key} ({name})"
        return f"class {key}"

    def __str__(self) -> str:
        single = len(self.classes) == 1
        header = ["layer", "op", "shape", "mean", "std", "zeros"]
        if single:
            header.append(f"top channels ({self.class_name(self.classes[0])})")
        rows = [tuple(header)]
        for layer in self.layers:
            row = [layer.name, layer.op_type, format_shape(layer.shape), f"{layer.mean:.4g}", f"{layer.std:.4g}",
                   f"{100 * layer.fraction_zero:.1f}%"]
            if single:
                row.append(_channels(layer, self.classes[0]))
            rows.append(tuple(row))
        lines = text_table(rows)
        if not single:
            lines.append("")
            lines.append("top channels per class (mean activation over the class's rows):")
            per_class = [("layer", "class", "channels")]
            for layer in self.layers:
                for index, key in enumerate(self.classes):
                    per_class.append((layer.name if index == 0 else "", self.class_name(key), _channels(layer, key)))
            lines.extend(text_table(per_class))
        lines.append(f"{len(self.layers)} layers, {self.n_rows} rows")
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Embedding:
    """A PCA projection of one layer's activations, one point per row.

    Attributes
    ----------
    coordinates : ndarray of shape (n_rows, n_components)
    explained_variance_ratio : ndarray of shape (n_components,)
    labels : ndarray of shape (n_rows,) or None
        The labels given.
    predictions : ndarray of shape (n_rows,) or None
        The argmax of the model's output per row.
    layer : str
    pooled : bool
        Whether channels were averaged over the spatial axes before PCA.
    n_features : int
        Columns of the matrix PCA saw.
    label_names : tuple of str or None
    """

    coordinates: np.ndarray
    explained_variance_ratio: np.ndarray
    labels: np.ndarray | None
    predictions: np.ndarray | None
    layer: str
    pooled: bool
    n_features: int
    label_names: tuple | None = None

    @property
    def n_rows(self) -> int:
        return int(self.coordinates.shape[0])


def channel_means(values: np.ndarray) -> np.ndarray | None:
    """Per row and channel, the mean activation: shape (n_rows, C); None for (n_rows,) values.

    The channel axis is axis 1 (NCHW and (n_rows, units) alike).
    """
    if values.ndim < 2:
        return None
    if values.ndim == 2:
        return values.astype(np.float64)
    return values.reshape(values.shape[0], values.shape[1], -1).mean(axis=2, dtype=np.float64)


def layer_statistics(recorded, groups: dict, top_k: int) -> ActivationStatistics:
    """Statistics of every layer of ``recorded`` (an Activations), ranking channels per group.

    ``groups`` maps each class (or None) to the row indices of that class.
    """
    result = []
    for name, values in recorded.values.items():
        numeric = values if np.issubdtype(values.dtype, np.number) else values.astype(np.float64)
        means = channel_means(numeric)
        top_channels, top_values = {}, {}
        for key, rows in groups.items():
            if means is None:
                top_channels[key], top_values[key] = np.zeros(0, np.int64), np.zeros(0)
                continue
            score = means[rows].mean(axis=0)
            order = np.argsort(-score, kind="stable")[:top_k]
            top_channels[key], top_values[key] = order, score[order]
        result.append(LayerStatistics(
            name=name,
            op_type=(recorded.op_types or {}).get(name, "?"),
            shape=tuple(values.shape[1:]),
            mean=float(numeric.mean(dtype=np.float64)),
            std=float(numeric.std(dtype=np.float64)),
            fraction_zero=float(np.count_nonzero(numeric == 0) / max(numeric.size, 1)),
            top_channels=top_channels,
            top_values=top_values,
        ))
    return ActivationStatistics(tuple(result), tuple(groups), recorded.label_names, recorded.n_rows)


def pca_embedding(recorded, layer: str, *, labels, n_components, pool, random_state) -> Embedding:
    """PCA of ``recorded[layer]``: flattened, or channel means first when ``pool == "mean"``."""
    from sklearn.decomposition import PCA

    values = recorded[layer]
    n = recorded.n_rows
    if n < 2:
        raise InputShapeError(f"x: an embedding needs at least 2 rows, got {n}")
    if pool == "mean" and values.ndim >= 3:
        matrix = channel_means(values)
    else:
        matrix = values.reshape(n, -1).astype(np.float64)
    largest = min(n, matrix.shape[1])
    if not isinstance(n_components, (int, np.integer)) or isinstance(n_components, bool) or not 1 <= n_components <= largest:
        raise ParameterError(
            f"n_components must be an int from 1 to min(n_rows, n_features) = min({n}, {matrix.shape[1]}) "
            f"= {largest} for layer {layer!r}, got {n_components!r}"
        )
    pca = PCA(n_components=int(n_components), random_state=random_state)
    coordinates = pca.fit_transform(matrix)
    return Embedding(
        coordinates=coordinates,
        explained_variance_ratio=pca.explained_variance_ratio_,
        labels=labels,
        predictions=recorded.predictions,
        layer=layer,
        pooled=pool == "mean" and values.ndim >= 3,
        n_features=int(matrix.shape[1]),
        label_names=recorded.label_names,
    )


def _channels(layer: LayerStatistics, key) -> str:
    channels = layer.top_channels.get(key)
    if channels is None or not len(channels):
        return "-"
    return " ".join(str(int(channel)) for channel in channels)


