"""Write a tree model's training cover into its ONNX export's ``nodes_hitrates``.

skl2onnx and onnxmltools write ``nodes_hitrates`` as a constant 1.0 (or not at all), so the
exported file does not say how much training data went through each node, which
path-dependent TreeSHAP needs. :func:`with_cover` copies it from the native model: scikit-learn's
``weighted_n_node_samples`` (the count of HistGradientBoosting nodes), XGBoost's ``cover``
(sum of hessians) and LightGBM's ``internal_count``/``leaf_count``, the numbers
``shap.TreeExplainer`` and the frameworks' own ``pred_contribs`` use.

ONNX trees are matched to the native ones in the framework's order and node by node from the
root (true branch = left/yes child); every split feature must agree, or nothing is written.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper

from agnostic_explain.errors import ConversionError, ParameterError
from agnostic_explain.graph.trees import TREE_OPS, read_trees

__all__ = ["add_cover", "with_cover"]


def with_cover(proto: onnx.ModelProto, model) -> onnx.ModelProto:
    """A copy of ``proto`` whose tree node carries ``model``'s cover as ``nodes_hitrates``.

    Parameters
    ----------
    proto : onnx.ModelProto
        The export of ``model`` (by :mod:`converters.sklearn`, :mod:`converters.xgboost` or
        :mod:`converters.lightgbm`), with one ``TreeEnsembleClassifier``/``Regressor`` node.
    model : fitted scikit-learn tree ensemble or Pipeline ending in one, XGBoost or LightGBM model

    Raises
    ------
    ConversionError
        An unknown model type, or trees that do not match the export.
    """
    native = _native_trees(model)
    trees = read_trees(proto)
    if len(native) != len(trees.roots):
        raise ConversionError(f"model: {len(native)} native trees, but the ONNX export has {len(trees.roots)}")
    cover = np.zeros(len(trees.mode))
    for tree_index, (root, tree) in enumerate(zip(trees.roots, native)):
        stack = [(int(root), tree["root"])]
        while stack:
            node, native_node = stack.pop()
            cover[node] = tree["cover"][native_node]
            left, right = tree["left"][native_node], tree["right"][native_node]
            if trees.mode[node] < 0 or left < 0:
                if (trees.mode[node] < 0) != (left < 0):
                    raise ConversionError(f"model: tree {tree_index} of the export differs from the native tree")
                continue
            if trees.feature[node] != tree["feature"][native_node]:
                raise ConversionError(
                    f"model: tree {tree_index} splits on feature {trees.feature[node]} in the export but on "
                    f"{tree['feature'][native_node]} in the native model"
                )
            stack += [(int(trees.true_child[node]), left), (int(trees.false_child[node]), right)]
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    node = next(node for node in edited.graph.node if node.op_type in TREE_OPS)
    kept = [attribute for attribute in node.attribute if attribute.name not in ("nodes_hitrates",
                                                                                  "nodes_hitrates_as_tensor")]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute("nodes_hitrates", cover.astype(np.float32).tolist())])
    return edited


def _native_trees(model) -> list[dict]:
    """Each native tree as arrays ``left``, ``right`` (-1 at leaves), ``feature``, ``cover`` and ``root``."""
    module = type(model).__module__
    if hasattr(model, "steps"):
        return _native_trees(model.steps[-1][1])
    if module.startswith("xgboost"):
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        names = list(booster.feature_names or [])
        return [_xgboost_tree(json.loads(text), names)
                for text in booster.get_dump(dump_format="json", with_stats=True)]
    if module.startswith("lightgbm"):
        booster = model.booster_ if hasattr(model, "booster_") else model
        return [_lightgbm_tree(info["tree_structure"]) for info in booster.dump_model()["tree_info"]]
    if hasattr(model, "_predictors"):  # HistGradientBoosting*
        return [_hist_tree(predictor.nodes) for stage in model._predictors for predictor in stage]
    estimators = getattr(model, "estimators_", None)
    if estimators is not None:
        flat = np.asarray(estimators, dtype=object).reshape(-1)
        return [_sklearn_tree(estimator.tree_) for estimator in flat]
    if hasattr(model, "tree_"):
        return [_sklearn_tree(model.tree_)]
    raise ConversionError(f"model: cannot read the tree cover of {type(model).__name__}")


def _sklearn_tree(tree) -> dict:
    return {"left": tree.children_left, "right": tree.children_right, "feature": tree.feature,
                "cover": tree.weighted_n_node_samples.astype(np.float64), "root": 0}


def _hist_tree(nodes) -> dict:
    leaf = nodes["is_leaf"].astype(bool)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    return {"left": np.where(leaf, -1, left), "right": np.where(leaf, -1, right),
                "feature": nodes["feature_idx"], "cover": nodes["count"].astype(np.float64), "root": 0}


def _flatten(root, children, cover, feature) -> dict:
    nodes = []
    stack = [root]
    while stack:
        node = stack.pop()
        nodes.append(node)
        stack.extend(children(node))
    position = {id(node): index for index, node in enumerate(nodes)}
    left, right = [], []
    for node in nodes:
        kids = children(node)
        left.append(position[id(kids[0])] if kids else -1)
        right.append(position[id(kids[1])] if kids else -1)
    return {"left": np.array(left), "right": np.array(right), "feature": np.array([feature(node) for node in nodes]),
                "cover": np.array([cover(node) for node in nodes], dtype=np.float64), "root": 0}


def _xgboost_tree(root, names) -> dict:
    def children(node):
        if "children" not in node:
            return []
        by_id = {child["nodeid"]: child for child in node["children"]}
        return [by_id[node["yes"]], by_id[node["no"]]]

    def feature(node):
        if "split" not in node:
            return -1
        split = str(node["split"])
        return names.index(split) if split in names else int(split.lstrip("f"))

    return _flatten(root, children, lambda node: node["cover"], feature)


def _lightgbm_tree(root) -> dict:
    def children(node):
        return [node["left_child"], node["right_child"]] if "split_index" in node else []

    return _flatten(root, children, lambda node: node.get("internal_count", node.get("leaf_count", 0)),
                    lambda node: node.get("split_feature", -1))


def add_cover(proto: onnx.ModelProto, model) -> onnx.ModelProto:
    """:func:`with_cover` for the converters: models without trees pass unchanged, and a
    tree model whose cover cannot be matched passes with a warning (TreeShap then needs
    ``feature_perturbation="interventional"`` and a background)."""
    import warnings

    if not any(node.op_type in TREE_OPS for node in proto.graph.node):
        return proto
    try:
        return with_cover(proto, model)
    except ParameterError:  # steps before the trees that TreeShap cannot fold: it refuses the model anyway
        return proto
    except ConversionError as error:  # trees that do not match the native model's node by node
        warnings.warn(f"the export carries no training cover ({error}); path-dependent TreeShap will refuse it",
                      RuntimeWarning, stacklevel=3)
        return proto

