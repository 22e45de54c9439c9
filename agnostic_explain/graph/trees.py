"""Tree ensembles read from ONNX into numpy arrays: the structure TreeSHAP walks.

Reads ``ai.onnx.ml`` ``TreeEnsembleClassifier`` / ``TreeEnsembleRegressor`` (opsets 1 and 3)
and ``TreeEnsemble`` (opset 5), with every branch rule ONNX defines (``BRANCH_LEQ``, ``LT``,
``GTE``, ``GT``, ``EQ``, ``NEQ``, set membership), ``nodes_missing_value_tracks_true``,
per-class or per-target leaf weights, ``base_values``, ``SUM``/``AVERAGE`` aggregation and the
``post_transform``. The steps before the trees must act on one feature at a time (see
:mod:`agnostic_explain.graph.tree_prefix`); after them, ``Identity``/``Cast``/multiplication by
one, and a ``Sigmoid`` that acts as a logistic post-transform.

The raw score of output column ``k`` is ``scale[k] * (base[source[k]] + sum of the leaf weights
for target source[k]) + offset[k]``; ``transform`` maps raw scores to the output (ONNX
Runtime's binary-classifier convention included: one score ``s`` gives columns ``(-s, s)``,
or ``(1 - s, s)`` when every weight is positive). Never imports onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ParameterError
from .source import open_model
from .tree_prefix import read_prefix

__all__ = ["MODES", "TreeModel", "read_trees"]

#: branch rule codes, in opset 5's numbering; LEAF is -1
MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5,
         "BRANCH_MEMBER": 6, "LEAF": -1}
TRANSFORMS = ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT")
TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble")
KERNEL_HINT = "explain this model with agnostic_explain.KernelShap instead"


@dataclass(frozen=True)
class TreeModel:
    """One tree ensemble as flat arrays; nodes of all trees share one index.

    Attributes
    ----------
    n_features : int
        Width of the trees' input.
    roots : ndarray of shape (n_trees,)
    feature, mode : ndarray of shape (n_nodes,)
        Split feature and branch rule (:data:`MODES`; -1 for leaves).
    threshold : ndarray of shape (n_nodes,)
        float32 (or float64 for a double model), compared as ONNX Runtime compares.
    true_child, false_child : ndarray of shape (n_nodes,)
        Node indices; -1 for leaves.
    missing_true : ndarray of bool, shape (n_nodes,)
    members : dict of int to ndarray
        The set of each membership node.
    cover : ndarray of shape (n_nodes,) or None
        Training weight through each node (``nodes_hitrates``), None when the file has none.
    leaf_values : ndarray of shape (n_nodes, n_targets)
        Weights of leaves (zero at internal nodes), already divided by the tree count for AVERAGE.
    base : ndarray of shape (n_targets,)
    source, scale, offset : ndarray of shape (n_outputs,)
        Output column ``k`` is ``scale[k] * raw[source[k]] + offset[k]`` before ``transform``.
    transform : str
        "identity", "logistic", "softmax" or "softmax_zero".
    prefix : callable
        The steps before the trees: explained rows (n_rows, width) to the trees' input (n_rows, n_features).
    columns : ndarray of shape (n_features,) or None
        The explained input's column behind each tree feature; None when they are the same columns.
    """

    n_features: int
    roots: np.ndarray
    feature: np.ndarray
    mode: np.ndarray
    threshold: np.ndarray
    true_child: np.ndarray
    false_child: np.ndarray
    missing_true: np.ndarray
    members: dict
    cover: np.ndarray | None
    leaf_values: np.ndarray
    base: np.ndarray
    source: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    transform: str
    prefix: Callable[[np.ndarray], np.ndarray]
    columns: np.ndarray | None = None

    @property
    def internal(self) -> np.ndarray:
        """Indices of the split nodes."""
        return np.flatnonzero(self.mode >= 0)

    def decisions(self, rows: np.ndarray, nodes: np.ndarray) -> np.ndarray:
        """Whether each row takes the true branch at each node: bool array (len(nodes), n_rows)."""
        return _taken(self, nodes, np.ascontiguousarray(rows.T)[self.feature[nodes]])

    def leaves(self, rows: np.ndarray) -> np.ndarray:
        """The leaf each row reaches in each tree: int array (n_rows, n_trees)."""
        node = np.broadcast_to(self.roots, (len(rows), len(self.roots))).copy()
        while True:
            split = self.mode[node] >= 0
            if not split.any():
                return node
            rows_at, trees_at = np.nonzero(split)
            at = node[rows_at, trees_at]
            values = rows[rows_at, self.feature[at]]
            taken = _taken(self, at, values)
            node[rows_at, trees_at] = np.where(taken, self.true_child[at], self.false_child[at])

    def raw(self, rows: np.ndarray) -> np.ndarray:
        """Raw scores of every output column, before the transform: (n_rows, n_outputs) float64."""
        scores = self.base + self.leaf_values[self.leaves(self.prefix(rows))].sum(axis=1)
        return self.scale * scores[:, self.source] + self.offset

    def output(self, raw: np.ndarray) -> np.ndarray:
        """The model's output from raw scores (n_rows, n_outputs)."""
        return apply_transform(self.transform, raw)


COMPARISONS = {0: np.less_equal, 1: np.less, 2: np.greater_equal, 3: np.greater, 4: np.equal, 5: np.not_equal}


def _taken(model: TreeModel, nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Whether ``values[i]`` (a scalar or a row of values) takes the true branch of ``nodes[i]``."""
    mode = model.mode[nodes]
    trailing = (slice(None),) + (None,) * (values.ndim - 1)
    taken = np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for code in np.unique(mode):
            chosen = np.flatnonzero(mode == code)
            if code in COMPARISONS:
                taken[chosen] = COMPARISONS[code](values[chosen], model.threshold[nodes[chosen]][trailing])
            elif code == 6:
                for position in chosen:
                    taken[position] = np.isin(values[position], model.members[int(nodes[position])])
    missing = model.missing_true[nodes]
    if missing.any():
        taken |= missing[trailing] & np.isnan(values)
    return taken


def apply_transform(transform: str, raw: np.ndarray) -> np.ndarray:
    """ONNX Runtime's post-transforms on raw scores (n_rows, n_outputs)."""
    if transform == "logistic":
        return 1.0 / (1.0 + np.exp(-raw))
    if transform in ("softmax", "softmax_zero"):
        keep = np.ones_like(raw, dtype=bool) if transform == "softmax" else raw != 0
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True)) * keep
        return shifted / shifted.sum(axis=1, keepdims=True)
    return raw


def read_trees(model, output=None) -> TreeModel:
    """The tree ensemble behind ``output`` of ``model``, as numpy arrays.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or loaded model
    output : str, optional
        The explained graph output; by default the first floating-point one.

    Raises
    ------
    ParameterError
        No tree ensemble, more than one, a step before the trees that mixes features, a step
        after them that is not a per-column identity or sigmoid, MIN/MAX aggregation, or PROBIT.
    """
    proto = open_model(model).proto
    graph = proto.graph
    trees = [node for node in graph.node if node.op_type in TREE_OPS and node.domain == "ai.onnx.ml"]
    if len(trees) != 1:
        raise ParameterError(
            f"model: expected exactly one ai.onnx.ml tree ensemble node, found {len(trees)}; TreeShap reads "
            f"one TreeEnsembleClassifier, TreeEnsembleRegressor or TreeEnsemble; {KERNEL_HINT}"
        )
    node = trees[0]
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for constant in graph.node:
        if constant.op_type == "Constant":
            constants[constant.output[0]] = numpy_helper.to_array(helper.get_attribute_value(constant.attribute[0]))
    producers = {name: step for step in graph.node for name in step.output}
    inputs = [value for value in graph.input if value.name not in constants]
    prefix = read_prefix(node.input[0], producers, constants, inputs)
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    structure = (_read_v5 if node.op_type == "TreeEnsemble" else _read_v3)(node, attributes)
    n_features = max(len(prefix.columns) if prefix.columns is not None else 0,
                     int(structure["feature"].max(initial=-1)) + 1)
    output_name = _output_name(graph, output)
    score_name = node.output[1] if node.op_type == "TreeEnsembleClassifier" else node.output[0]
    transform = structure.pop("transform")
    extra_sigmoid = _suffix(score_name, output_name, graph, constants)
    if extra_sigmoid:
        if transform != "identity":
            raise ParameterError(f"model: a Sigmoid follows a {transform} post-transform; {KERNEL_HINT}")
        transform = "logistic"
    return TreeModel(n_features=n_features, transform=transform, prefix=prefix.apply, columns=prefix.columns,
                     **structure)


def _output_name(graph, output) -> str:
    if output is not None:
        names = [value.name for value in graph.output]
        if output not in names:
            raise ParameterError(f"output: {output!r} is not a model output; expected one of {names}")
        return output
    for value in graph.output:
        if value.type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            return value.name
    raise ParameterError("model: no floating-point output to explain")


# -- after the trees ----------------------------------------------------------------------
def _suffix(score, output, graph, constants) -> bool:
    """Walk from the trees' score to ``output``; True when a Sigmoid lies on the way."""
    consumers = {}
    for step in graph.node:
        for operand in step.input:
            consumers.setdefault(operand, []).append(step)
    sigmoid, name = False, score
    while name != output:
        following = [step for step in consumers.get(name, []) if step.op_type in SUFFIX_OPS]
        step = next((s for s in following if _is_identity(s, constants) or s.op_type == "Sigmoid"), None)
        if step is None:
            raise ParameterError(
                f"output: {output!r} is not the tree scores passed through Identity, Cast or Sigmoid; "
                f"{KERNEL_HINT}"
            )
        sigmoid |= step.op_type == "Sigmoid"
        name = step.output[0]
    return sigmoid


SUFFIX_OPS = ("Identity", "Cast", "Mul", "Sigmoid")


def _is_identity(step, constants) -> bool:
    if step.op_type in ("Identity", "Cast"):
        return True
    if step.op_type == "Mul":
        others = [constants.get(operand) for operand in step.input]
        return any(value is not None and np.all(value == 1) and value.size == 1 for value in others)
    return False


# -- the tree attributes ------------------------------------------------------------------
def _floats(attributes, name, default=None):
    if f"{name}_as_tensor" in attributes:
        return np.asarray(numpy_helper.to_array(attributes[f"{name}_as_tensor"]))
    if name in attributes:
        return np.asarray(attributes[name], dtype=np.float32)
    return default


def _read_v3(node, attributes) -> dict:
    tree_ids = np.asarray(attributes["nodes_treeids"], dtype=np.int64)
    node_ids = np.asarray(attributes["nodes_nodeids"], dtype=np.int64)
    n = len(node_ids)
    span = int(node_ids.max(initial=0)) + 1
    keys = tree_ids * span + node_ids
    order = np.argsort(keys, kind="stable")

    def lookup(trees_of, ids):
        wanted = np.asarray(trees_of, dtype=np.int64) * span + np.asarray(ids, dtype=np.int64)
        found = order[np.clip(np.searchsorted(keys[order], wanted), 0, len(keys) - 1)]
        if len(wanted) and not (keys[found] == wanted).all():
            raise ParameterError("model: a tree node refers to a node id its tree does not have")
        return found
    names, codes = np.unique(np.asarray(attributes["nodes_modes"], dtype=object), return_inverse=True)
    names = [name.decode() if isinstance(name, bytes) else name for name in names]
    unknown = sorted(set(names) - set(MODES))
    if unknown:
        raise ParameterError(f"model: nodes_modes {unknown} are not ONNX branch rules; expected {sorted(MODES)}")
    mode = np.array([MODES[name] for name in names], dtype=np.int8)[codes.reshape(-1)]

    def child(ids):
        ids = np.where(mode >= 0, np.asarray(ids, dtype=np.int64), node_ids)
        return np.where(mode >= 0, lookup(tree_ids, ids), -1)

    classifier = node.op_type == "TreeEnsembleClassifier"
    prefix = "class" if classifier else "target"
    leaf_trees = np.asarray(attributes.get(f"{prefix}_treeids", []), dtype=np.int64)
    leaf_nodes = np.asarray(attributes.get(f"{prefix}_nodeids", []), dtype=np.int64)
    targets = np.asarray(attributes.get(f"{prefix}_ids", []), dtype=np.int64)
    weights = _floats(attributes, f"{prefix}_weights", np.zeros(0, np.float32)).astype(np.float64)
    n_targets = (len(attributes.get("classlabels_int64s", attributes.get("classlabels_strings", [])))
                 if classifier else int(attributes.get("n_targets", 1)))
    transform = _transform_name(attributes.get("post_transform", b"NONE"))
    base = _floats(attributes, "base_values", np.zeros(0, np.float32)).astype(np.float64)
    n_outputs = n_targets
    binary = classifier and n_targets == 2 and len(np.unique(targets)) <= 1
    if binary:
        # ONNX Runtime's binary case: one score s, columns (-s, s) or (1 - s, s)
        targets = np.zeros_like(targets)
        n_targets = 1
        base = base[1:2] if len(base) == 2 else base[:1]
    leaf_values = np.zeros((n, n_targets))
    rows = lookup(leaf_trees, leaf_nodes)
    np.add.at(leaf_values, (rows, targets), weights)
    roots = _roots(tree_ids, node_ids, child(attributes["nodes_truenodeids"]),
                   child(attributes["nodes_falsenodeids"]), mode)
    aggregate = attributes.get("aggregate_function", b"SUM")
    aggregate = aggregate.decode() if isinstance(aggregate, bytes) else aggregate
    if aggregate not in ("SUM", "AVERAGE"):
        raise ParameterError(f"model: aggregate_function {aggregate!r} is not additive; {KERNEL_HINT}")
    if aggregate == "AVERAGE":
        leaf_values /= len(roots)
    base = np.zeros(n_targets) if len(base) == 0 else np.broadcast_to(base, (n_targets,)).astype(np.float64)
    if binary:
        positive = bool(np.all(weights >= 0))
        source = np.zeros(2, np.int64)
        scale = np.array([-1.0, 1.0])
        offset = np.array([1.0, 0.0]) if positive else np.zeros(2)
        if positive:
            transform = "identity"  # ONNX Runtime writes (1 - s, s) untransformed here
    else:
        source, scale, offset = np.arange(n_outputs), np.ones(n_outputs), np.zeros(n_outputs)
    thresholds = _floats(attributes, "nodes_values", np.zeros(n, np.float32))
    cover = _floats(attributes, "nodes_hitrates")
    return {
        "roots": roots, "feature": np.asarray(attributes["nodes_featureids"], dtype=np.int64), "mode": mode,
        "threshold": thresholds, "true_child": child(attributes["nodes_truenodeids"]),
        "false_child": child(attributes["nodes_falsenodeids"]),
        "missing_true": np.asarray(attributes.get("nodes_missing_value_tracks_true", [0] * n), dtype=bool),
        "members": {}, "cover": None if cover is None else cover.astype(np.float64), "leaf_values": leaf_values,
        "base": base, "source": source, "scale": scale, "offset": offset, "transform": transform,
    }


def _roots(tree_ids, node_ids, true_child, false_child, mode) -> np.ndarray:
    """Each tree's root: its node that no other node points to, in tree-id order."""
    pointed = np.zeros(len(tree_ids), dtype=bool)
    pointed[true_child[mode >= 0]] = True
    pointed[false_child[mode >= 0]] = True
    candidates = np.flatnonzero(~pointed)
    order = np.argsort(tree_ids[candidates], kind="stable")
    roots = candidates[order]
    if len(np.unique(tree_ids[roots])) != len(roots):
        raise ParameterError("model: a tree of the ensemble has more than one root node")
    return roots


def _transform_name(value) -> str:
    name = value.decode() if isinstance(value, bytes) else (TRANSFORMS[value] if isinstance(value, int) else value)
    if name == "PROBIT":
        raise ParameterError(f"model: post_transform PROBIT is not supported; {KERNEL_HINT}")
    return {"NONE": "identity", "LOGISTIC": "logistic", "SOFTMAX": "softmax", "SOFTMAX_ZERO": "softmax_zero"}[name]


def _read_v5(node, attributes) -> dict:
    features = np.asarray(attributes["nodes_featureids"], dtype=np.int64)
    n_nodes = len(features)
    leaf_targets = np.asarray(attributes["leaf_targetids"], dtype=np.int64)
    n_leaves = len(leaf_targets)
    n_targets = int(attributes.get("n_targets", 1))
    total = n_nodes + n_leaves

    def child(ids, leafs):
        ids, leafs = np.asarray(ids, dtype=np.int64), np.asarray(leafs, dtype=bool)
        return np.concatenate([np.where(leafs, ids + n_nodes, ids), -np.ones(n_leaves, np.int64)])

    mode = np.concatenate([numpy_helper.to_array(attributes["nodes_modes"]).astype(np.int8),
                           -np.ones(n_leaves, np.int8)])
    splits = numpy_helper.to_array(attributes["nodes_splits"])
    members = {}
    if (mode == 6).any():
        values = numpy_helper.to_array(attributes["membership_values"]).astype(splits.dtype)
        sets = np.split(values, np.flatnonzero(np.isnan(values)))
        sets = [chunk[~np.isnan(chunk)] for chunk in sets]
        members = {int(k): sets[position] for position, k in enumerate(np.flatnonzero(mode == 6))}
    leaf_values = np.zeros((total, n_targets))
    weights = numpy_helper.to_array(attributes["leaf_weights"]).astype(np.float64)
    leaf_values[n_nodes + np.arange(n_leaves), leaf_targets] = weights
    roots = np.asarray(attributes["tree_roots"], dtype=np.int64)
    aggregate = int(attributes.get("aggregate_function", 1))
    if aggregate not in (0, 1):
        raise ParameterError(f"model: aggregate_function {aggregate} (MIN/MAX) is not additive; {KERNEL_HINT}")
    if aggregate == 0:
        leaf_values /= len(roots)
    cover = attributes.get("nodes_hitrates")
    if cover is not None:
        cover = numpy_helper.to_array(cover).astype(np.float64)
        cover = cover if len(cover) == total else None
    return {
        "roots": roots, "feature": np.concatenate([features, np.zeros(n_leaves, np.int64)]), "mode": mode,
        "threshold": np.concatenate([splits, np.zeros(n_leaves, splits.dtype)]),
        "true_child": child(attributes["nodes_truenodeids"], attributes["nodes_trueleafs"]),
        "false_child": child(attributes["nodes_falsenodeids"], attributes["nodes_falseleafs"]),
        "missing_true": np.concatenate([np.asarray(attributes.get("nodes_missing_value_tracks_true", [0] * n_nodes),
                                                dtype=bool), np.zeros(n_leaves, bool)]),
        "members": members, "cover": cover, "leaf_values": leaf_values, "base": np.zeros(n_targets),
        "source": np.arange(n_targets), "scale": np.ones(n_targets), "offset": np.zeros(n_targets),
        "transform": _transform_name(int(attributes.get("post_transform", 0))),
    }
