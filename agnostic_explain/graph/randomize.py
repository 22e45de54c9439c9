"""``randomize``: re-draw a model's weights, for the sanity checks of Adebayo et al. (2018)."""

from __future__ import annotations

import difflib

import numpy as np
import onnx
from onnx import numpy_helper

from ..seeds import as_generator
from ..errors import ParameterError
from .source import open_model
from .topology import node_names

__all__ = ["randomize", "weight_layers"]

#: inputs that are running statistics, not learned weights: re-drawing a variance could make
#: it negative, and Adebayo et al. re-initialise learned weights only
_STATISTICS = {"BatchNormalization": {3, 4}}
_METHODS = ("normal", "permute")


def weight_layers(model) -> list[str]:
    """Display names of the nodes that hold learned weights, from the output back to the input.

    This is the order of the cascading randomization test: the first name is randomized first.
    """
    source = open_model(model)
    return [name for name, _ in reversed(_weights_by_layer(source.proto))]


def randomize(model, layers=None, *, cascade=True, method="normal", random_state=None) -> onnx.ModelProto:
    """Return a copy of ``model`` with the weights of chosen layers re-drawn at random.

    A weight is a floating-point initializer with more than one element that a node reads
    as a learned parameter (running statistics of a batch norm are kept). Re-drawn weights
    keep their tensor's shape, dtype, mean and standard deviation (``"normal"``), or are its
    own values shuffled (``"permute"``), so activations keep their scale.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        Left unchanged.
    layers : str or list of str, optional
        Node display names (see :func:`layers`) or weight initializer names; all weight layers
        by default.
    cascade : bool, default True
        Also randomize every weight layer after the first one chosen, as in the cascading
        test (top layers first); False randomizes only the chosen ones (independent test).
    method : {"normal", "permute"}
    random_state : int or numpy.random.Generator, optional

    Returns
    -------
    onnx.ModelProto
        Re-drawn weights are stored inside it; the others stay as they were (external data
        stays a reference to the model's folder).

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH
    >>> order = weight_layers(DEFAULT_MODEL_PATH)
    >>> order[0]
    '/classifier/Gemm'
    >>> edited = randomize(DEFAULT_MODEL_PATH, order[0], random_state=0)
    """
    if method not in _METHODS:
        raise ParameterError(f"method must be one of {_METHODS}, got {method!r}")
    source = open_model(model)
    by_layer = _weights_by_layer(source.proto)
    chosen = _chosen_positions(by_layer, layers)
    if cascade:
        chosen = set(range(min(chosen), len(by_layer)))
    names = {weight for position in chosen for weight in by_layer[position][1]}
    generator = as_generator(random_state)
    edited = onnx.ModelProto()
    edited.CopyFrom(source.proto)
    for tensor in edited.graph.initializer:
        if tensor.name in names:
            values = source.array(tensor)
            tensor.CopyFrom(numpy_helper.from_array(_redraw(values, method, generator), tensor.name))
    return edited


def _redraw(values: np.ndarray, method: str, generator: np.random.Generator) -> np.ndarray:
    if method == "permute":
        return generator.permutation(values.ravel()).reshape(values.shape).astype(values.dtype)
    mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
    return generator.normal(mean, std if std > 0 else 1e-2, size=values.shape).astype(values.dtype)


def _weights_by_layer(proto: onnx.ModelProto) -> list[tuple[str, list[str]]]:
    """(node display name, its weight initializers) for weight-bearing nodes, in graph order;
    a weight read by several nodes belongs to the first."""
    floating = {
        tensor.name for tensor in proto.graph.initializer
        if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16,
                                onnx.TensorProto.BFLOAT16)
        and int(np.prod(tensor.dims)) > 1
    }
    seen, result = set(), []
    for node, name in zip(proto.graph.node, node_names(proto.graph)):
        skip = _STATISTICS.get(node.op_type, set())
        owned = [value for position, value in enumerate(node.input)
                 if value in floating and value not in seen and position not in skip]
        if owned:
            seen.update(owned)
            result.append((name, owned))
    return result


def _chosen_positions(by_layer, layers) -> set[int]:
    if not by_layer:
        raise ParameterError("model: it has no weight layers (floating-point initializers) to randomize")
    if layers is None:
        return set(range(len(by_layer)))
    listed = [layers] if isinstance(layers, str) else list(layers)
    lookup = {}
    for position, (node, weights) in enumerate(by_layer):
        lookup[node] = position
        lookup.update({weight: position for weight in weights})
    positions = set()
    for name in listed:
        if name not in lookup:
            close = difflib.get_close_matches(str(name), list(lookup), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ParameterError(
                f"layers: {name!r} is not a weight layer or weight of the model{hint} "
                "(graph.weight_layers(model) lists them)"
            )
        positions.add(lookup[name])
    if not positions:
        raise ParameterError("layers: no layer names given")
    return positions
