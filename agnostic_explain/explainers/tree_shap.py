"""TreeSHAP on the tree ensemble inside an ONNX model: exact Shapley values without sampling."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from ..errors import ParameterError
from ..graph.trees import TreeModel, read_trees
from . import tree_paths
from .base import Explainer, Problem

PERTURBATIONS = ("tree_path_dependent", "interventional")
MODEL_OUTPUTS = ("raw", "probability")
#: worker threads for blocks of rows
THREADS = min(4, os.cpu_count() or 1)
#: relative disagreement tolerated between a node's cover and the sum of its children's
COVER_RTOL = 1e-3


class TreeShap(Explainer):
    """Exact SHAP values of a tree ensemble read from the ONNX graph (Lundberg et al. 2020).

    The trees are read from the model's ``ai.onnx.ml`` tree ensemble node (see
    :mod:`agnostic_explain.graph.trees`) and explained in numpy, all rows and all root-to-leaf
    paths at once (see :mod:`agnostic_explain.explainers.tree_paths`); ONNX Runtime runs only
    once, on the explained rows, to resolve the target. Per-feature steps before the trees
    (scalers, imputers, casts) fold through: a feature's value is its raw input's.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto or Model
        An ONNX model whose explained output comes from one tree ensemble.
    background : array_like of shape (n_background, n_features), optional
        Required by ``feature_perturbation="interventional"``; ignored otherwise.
    feature_perturbation : {"tree_path_dependent", "interventional"}
        "tree_path_dependent" follows the training cover stored in ``nodes_hitrates`` (see
        :func:`converters.tree_cover.with_cover`) where a feature is missing;
        "interventional" averages over the background rows instead.
    model_output : {"raw", "probability"}
        "raw" explains the score before the tree ensemble's post-transform (shap's default:
        log-odds for boosted classifiers); "probability" (interventional only) explains the
        output after a logistic post-transform, each background row's margin values rescaled
        so that they add up to the probability difference, as ``shap.TreeExplainer`` does.

    Notes
    -----
    ``base_values`` is the explained score at each row (the raw score, or the probability), as
    for every explainer here; ``extras["expected_value"]`` (n_rows,) is shap's ``base_values``,
    the expected score over the cover or the background, and ``values`` sum to the score minus
    it, per row (the waterfall plot draws that). ``extras`` also holds ``score`` (the same as
    ``base_values``) and ``interactions`` (n_rows, n_features, n_features) after
    ``explain(..., interactions=True)``: SHAP interaction values (half the Shapley interaction
    index off the diagonal, main effects on it, each row summing to ``values``), raw scores
    only, for both perturbations (shap 0.51 has none for interventional).

    Examples
    --------
    >>> import numpy as np
    >>> from onnx import helper, TensorProto
    >>> node = helper.make_node(
    ...     "TreeEnsembleRegressor", ["x"], ["y"], domain="ai.onnx.ml", n_targets=1,
    ...     nodes_treeids=[0, 0, 0], nodes_nodeids=[0, 1, 2], nodes_featureids=[0, 0, 0],
    ...     nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"], nodes_values=[0.5, 0.0, 0.0],
    ...     nodes_truenodeids=[1, 0, 0], nodes_falsenodeids=[2, 0, 0], nodes_hitrates=[4.0, 1.0, 3.0],
    ...     target_treeids=[0, 0], target_nodeids=[1, 2], target_ids=[0, 0], target_weights=[1.0, 5.0])
    >>> graph = helper.make_graph([node], "stump", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
    ...                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
    >>> proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)],
    ...                           ir_version=9)
    >>> explanation = TreeShap(proto).explain(np.array([[1.0]], np.float32), target=0)
    >>> float(explanation.extras["expected_value"][0]), float(explanation.values[0, 0]), float(explanation.base_values[0])
    (4.0, 1.0, 5.0)
    """

    method = "tree_shap"
    data_params = ("background",)
    row_kinds = ("tabular",)
    model_family = "trees"
    needs_graph = True
    accepts_missing_values = True  # trees send missing values down a branch of their own
    output_transforms = (None,)  # raw scores, or probabilities through model_output="probability"

    def __init__(self, model, background=None, feature_perturbation="tree_path_dependent", model_output="raw"):
        super().__init__(model)
        self.background = background
        self.feature_perturbation = feature_perturbation
        self.model_output = model_output
        self._interactions = False

    def _params(self) -> dict:
        background = None if self.background is None else f"{np.shape(self.background)[0]} rows"
        return {"feature_perturbation": self.feature_perturbation, "model_output": self.model_output,
                "background": background}

    def explain(self, x, target="predicted", *, interactions=False, **options):
        """As :meth:`Explainer.explain`; ``interactions=True`` adds ``extras["interactions"]``."""
        self._interactions = bool(interactions)
        return super().explain(x, target, **options)

    def _check(self, rows: np.ndarray) -> None:
        if self.feature_perturbation not in PERTURBATIONS:
            raise ParameterError(f"feature_perturbation must be one of {PERTURBATIONS}, "
                                 f"got {self.feature_perturbation!r}")
        if self.model_output not in MODEL_OUTPUTS:
            raise ParameterError(f"model_output must be one of {MODEL_OUTPUTS}, got {self.model_output!r}")
        interventional = self.feature_perturbation == "interventional"
        if self.model_output == "probability" and not interventional:
            raise ParameterError(
                "model_output='probability' needs feature_perturbation='interventional' (with a background): "
                "path-dependent values explain the raw score only"
            )
        if getattr(self, "_interactions", False) and self.model_output == "probability":
            raise ParameterError("interactions=True explains the raw score: pass model_output='raw'")
        if rows.ndim != 2:
            raise ParameterError(f"x: TreeShap explains rows of features, shape (n_rows, n_features); "
                                 f"got shape {rows.shape}")
        trees = self._trees(None)
        if interventional:
            self._background(rows)
        elif _cover(trees) is None:
            raise ParameterError(
                "feature_perturbation='tree_path_dependent' needs the training cover of every node, and this "
                "model's nodes_hitrates holds none (converters write 1.0; converters.tree_cover.with_cover "
                "copies it from the native model); or pass feature_perturbation='interventional' with a background"
            )
        if self.model_output == "probability" and trees.transform not in ("identity", "logistic"):
            raise ParameterError(
                f"model_output='probability' supports a logistic post-transform (or none), not {trees.transform}; "
                "explain model_output='raw', or use KernelShap with output_transform"
            )

    def _trees(self, output) -> TreeModel:
        """The ensemble read from the graph, once per model and output (kept in the model's cache)."""
        model = self._loaded()
        return model.cache.derived_model(("trees", output), lambda: read_trees(model, output))

    def _background(self, rows: np.ndarray):
        if self.background is None:
            raise ParameterError("background is required by feature_perturbation='interventional': pass rows of "
                                 f"shape (n_background, {rows.shape[1]})")
        values = np.asarray(getattr(self.background, "rows", self.background))
        weights = getattr(self.background, "weights", None)
        if values.ndim == 1:
            values = values[None]
        if values.ndim != 2 or values.shape[1] != rows.shape[1] or len(values) == 0:
            raise ParameterError(f"background of shape {values.shape} does not match the explained rows: expected "
                                 f"(n_background, {rows.shape[1]})")
        weights = np.full(len(values), 1.0 / len(values)) if weights is None else np.asarray(weights, float)
        return values.astype(rows.dtype), weights / weights.sum()

    def _attribute(self, problem: Problem) -> np.ndarray:
        if problem.target.function is not None:
            raise ParameterError("target: TreeShap explains one output column per row (an int, a list or "
                                 "'predicted'), not a callable")
        trees = self._trees(problem.output)
        rows = problem.rows
        columns = problem.target.positions(problem.output_shape)
        tree_rows = trees.prefix(rows)
        paths = tree_paths.decompose(trees, _cover(trees) if self.feature_perturbation != "interventional" else None)
        background = None
        if self.feature_perturbation == "interventional":
            values, weights = self._background(rows)
            background = (tree_paths.failures(trees, paths, trees.prefix(values)), weights, values)
        probability = self.model_output == "probability" and trees.transform == "logistic"
        raw = trees.raw(rows)[np.arange(len(rows)), columns] if probability else None
        attributions = np.zeros(tree_rows.shape, dtype=np.float64)
        expected = np.zeros(len(rows))
        interactions = np.zeros(tree_rows.shape + tree_rows.shape[1:]) if self._interactions else None
        for column in np.unique(columns):
            chosen = np.flatnonzero(columns == column)
            target, scale = trees.source[column], trees.scale[column]
            if probability:
                values, base = _probability(trees, paths, tree_rows[chosen], background, column, raw[chosen])
            else:
                values, base, pairs = _raw(trees, paths, tree_rows[chosen], background, target, self._interactions)
                values, base = scale * values, scale * base + trees.offset[column]
                if pairs is not None:
                    interactions[chosen] = scale * pairs
            attributions[chosen] = values
            expected[chosen] = base
        # efficiency holds exactly (tests check it against ONNX Runtime), so the score costs no tree walk
        score = expected + attributions.sum(axis=1) if not probability else 1.0 / (1.0 + np.exp(-raw))
        problem.base_values = score
        problem.extras.update(expected_value=expected, score=score)
        if trees.columns is not None:  # tree features back to the input columns they come from
            attributions = _to_columns(attributions, trees.columns, rows.shape[1], axes=(1,))
            if interactions is not None:
                interactions = _to_columns(interactions, trees.columns, rows.shape[1], axes=(1, 2))
        if interactions is not None:
            problem.extras["interactions"] = interactions.astype(np.float32)
        return attributions.astype(np.float32)


def _to_columns(values: np.ndarray, columns: np.ndarray, width: int, axes: tuple) -> np.ndarray:
    """Spread tree-feature axes ``axes`` of ``values`` onto ``width`` input columns (zero where unused)."""
    shape = list(values.shape)
    for axis in axes:
        shape[axis] = width
    spread = np.zeros(shape)
    index = tuple(columns if axis in axes else slice(None) for axis in range(values.ndim))
    if len(axes) == 2:
        index = (slice(None), columns[:, None], columns[None, :])
    spread[index] = values
    return spread


def _cover(trees: TreeModel) -> np.ndarray | None:
    """The nodes' cover, or None when ``nodes_hitrates`` is missing or is not a training cover."""
    cover = trees.cover
    if cover is None or not (cover[trees.roots] > 0).all():
        return None
    internal = trees.internal
    children = cover[trees.true_child[internal]] + cover[trees.false_child[internal]]
    if not np.allclose(children, cover[internal], rtol=COVER_RTOL, atol=0):
        return None
    return cover


def _raw(trees, paths, rows, background, target, interactions):
    """Values (n_rows, n_features), the expected value, and interactions (or None) for one raw target."""
    keep = paths.value[:, target] != 0
    chosen = paths.take(keep)
    leaf = chosen.value[:, target]
    n_features = rows.shape[1]
    if background is None:
        expected = trees.base[target] + leaf @ chosen.reach
        game = _path_dependent_game(chosen)
    else:
        patterns, weights = background[0][keep], background[1]
        expected = trees.base[target] + leaf @ ((patterns == 0) @ weights)
        game = _interventional_game(patterns, weights, chosen)
    values = _sum_games(trees, chosen, leaf, rows, game, n_features)
    if not interactions:
        return values, expected, None
    if background is None:
        pair_game = partial(_interaction_game, chosen.zero, chosen.count)
    else:
        pair_game = partial(_interventional_pairs, background[0][keep], background[1], chosen.count)
    pairs = _interactions(trees, chosen, leaf, rows, values, pair_game)
    return values, expected, pairs


def _probability(trees, paths, rows, background, column, score):
    """Probability values: margin values per background row, rescaled to the probability difference."""
    patterns, weights, values = background
    target, scale = trees.source[column], trees.scale[column]
    margins = trees.raw(values)[:, column]
    keep = paths.value[:, target] != 0
    chosen = paths.take(keep)
    leaf = scale * chosen.value[:, target]
    total = np.zeros(rows.shape)
    probability = 1.0 / (1.0 + np.exp(-margins))
    row_probability = 1.0 / (1.0 + np.exp(-score))
    for index, weight in enumerate(weights):
        game = _interventional_game(patterns[keep][:, index:index + 1], np.ones(1), chosen)
        margin_values = _sum_games(trees, chosen, leaf, rows, game, rows.shape[1])
        difference = score - margins[index]
        safe = np.where(difference == 0, 1.0, difference)
        factor = np.where(difference == 0, 1.0, (row_probability - probability[index]) / safe)
        total += weight * factor[:, None] * margin_values
    return total, float(weights @ probability)


def _path_dependent_game(paths):
    def game(group, patterns):
        return tree_paths.path_dependent_values(paths.zero[group][:, : paths.count[group][0]], patterns)

    return game


def _interventional_game(background_patterns, weights, paths):
    def game(group, patterns):
        d = int(paths.count[group][0])
        columns, share = tree_paths.distinct_patterns(background_patterns[group], weights)
        return tree_paths.interventional_values(columns, share, patterns, d)

    return game


def _sum_games(trees, paths, leaf, rows, game, n_features):
    """Sum each path's game values at the rows' failure patterns into (n_rows, n_features).

    A path group whose ``2**d`` patterns are fewer than the rows gets a table first; the rows
    are then cut into blocks, each run in a worker thread (numpy releases the GIL).
    """
    n_rows = len(rows)
    groups = []
    for d in np.unique(paths.count):
        if d == 0:
            continue
        group = np.flatnonzero(paths.count == d)
        present, reduce = _reducer(paths.feature[group, :d].reshape(-1))
        table = None
        if (1 << d) <= n_rows and len(group) * (1 << d) * d * 8 <= tree_paths.TABLE_BYTES:
            every = np.broadcast_to(np.arange(1 << d, dtype=np.uint32), (len(group), 1 << d))
            table = _over_paths(game, group, every, (1 << d) * d * d)
            table = (table * leaf[group, None, None]).reshape(len(group) * (1 << d), d)
        groups.append((d, group, present, reduce, table, np.arange(len(group)) * (1 << d)))

    def block(start):
        stop = min(start + step, n_rows)
        failed = tree_paths.failures(trees, paths, rows[start:stop])
        values = np.zeros((stop - start, n_features))
        for d, group, present, reduce, table, offsets in groups:
            patterns = failed[group]
            if table is not None:
                index = patterns.T + offsets
                values[:, present] += reduce(np.take(table, index, axis=0).reshape(len(index), -1))
                continue
            inner = max(1, tree_paths.CHUNK // (len(group) * d * d))
            for first in range(0, stop - start, inner):
                part = patterns[:, first:first + inner]
                found = _over_paths(game, group, part, part.shape[1] * d * d)
                found = (found * leaf[group, None, None]).transpose(1, 0, 2).reshape(part.shape[1], -1)
                values[first:first + inner, present] += reduce(found)
        return values

    step = max(8, tree_paths.CHUNK // max(1, len(paths.count) * paths.feature.shape[1]))
    starts = range(0, n_rows, step)
    if len(starts) == 1 or THREADS == 1:
        return np.concatenate([block(start) for start in starts]) if n_rows else np.zeros((0, n_features))
    with ThreadPoolExecutor(THREADS) as pool:
        return np.concatenate(list(pool.map(block, starts)))


def _over_paths(game, group, patterns, per_path):
    """``game(group, patterns)`` over chunks of the group's paths of about ``CHUNK`` elements."""
    step = max(1, tree_paths.CHUNK // max(per_path, 1))
    return np.concatenate([game(group[a:a + step], patterns[a:a + step]) for a in range(0, len(group), step)])


def _interaction_game(zero, count, group, patterns):
    return tree_paths.path_dependent_interactions(zero[group, : count[group][0]], patterns)


def _interventional_pairs(background_patterns, weights, count, group, patterns):
    columns, share = tree_paths.distinct_patterns(background_patterns[group], weights)
    return tree_paths.interventional_interactions(columns, share, patterns, int(count[group][0]))


def _interactions(trees, paths, leaf, rows, values, pair_game):
    """Interaction values (n_rows, n_features, n_features); the diagonal completes each row of ``values``."""
    n_rows, n_features = values.shape
    failed = tree_paths.failures(trees, paths, rows)
    pairs = np.zeros((n_rows, n_features * n_features))
    for d in np.unique(paths.count):
        if d < 2:
            continue
        group = np.flatnonzero(paths.count == d)
        features = paths.feature[group, :d]
        present, reduce = _reducer((features[:, :, None] * n_features + features[:, None, :]).reshape(-1))
        per_pattern = d ** 3 + 128  # the interventional game also holds (patterns x background) arrays
        step = max(1, tree_paths.CHUNK // (len(group) * per_pattern))
        for start in range(0, n_rows, step):
            block = _over_paths(pair_game, group, failed[group, start:start + step], min(step, n_rows) * per_pattern)
            block = (block * leaf[group, None, None, None]).transpose(1, 0, 2, 3).reshape(block.shape[1], -1)
            pairs[start:start + step, present] += reduce(block)
    pairs = pairs.reshape(n_rows, n_features, n_features)
    diagonal = np.arange(n_features)
    pairs[:, diagonal, diagonal] = values - pairs.sum(axis=2)
    return pairs


def _reducer(features: np.ndarray):
    """The distinct ``features`` and a function summing the columns of (n_rows, len(features)) per feature.

    One ``bincount`` over the block (a single pass, float64 sums); its index for a block height
    is built once.
    """
    present, inverse = np.unique(features, return_inverse=True)
    width = len(present)
    cache = {}

    def reduce(block):
        height = len(block)
        if height not in cache:
            cache.clear()
            cache[height] = (np.arange(height)[:, None] * width + inverse[None, :]).reshape(-1)
        return np.bincount(cache[height], weights=block.reshape(-1), minlength=height * width).reshape(height, width)

    return present, reduce
