"""Exact TreeSHAP in numpy: every root-to-leaf path at once, every row at once.

A tree's prediction is the sum of its leaves' values times "the row reaches this leaf", and
each leaf's indicator is a product over the distinct features split on along its path
(GPUTreeShap's decomposition): feature ``j`` of path ``p`` is either satisfied by the row
(``o = 1``: every split on ``j`` along the path sends it the path's way) or not (``o = 0``).
Shapley values are linear in the leaves, so a row's values are the sum over paths of the
values of one small game per path; that game depends on the row only through the pattern of
failed features, a ``d``-bit integer. So, per group of paths with ``d`` distinct features:

- path-dependent (Lundberg et al. 2020, Algorithm 2): a missing feature ``j`` is replaced by
  the share ``z_j`` of training cover that follows the path; the game
  ``v(S) = prod_{j in S} o_j prod_{j not in S} z_j`` has Shapley values read off the
  polynomial ``Q(t) = prod_j (z_j + o_j t)`` (EXTEND) divided by one factor (UNWIND);
- interventional: a missing feature takes a background row's value; the path then counts iff
  every feature is satisfied by whichever row it is taken from, a game whose Shapley values
  depend only on how many features only the explained row satisfies and how many only the
  background row does, averaged over the background's failure patterns.

Both give, per path, a table over the ``2**d`` patterns (built once when it is smaller than
the rows explained), or are evaluated at the rows' own patterns; the rows' values are
gathered from it and summed per feature. Interaction values (path-dependent) remove two
factors from ``Q``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from ..errors import ParameterError

#: float64 elements of one intermediate array, the size chunks are cut to
CHUNK = 1 << 22
#: bytes a path group's pattern table may take; larger groups are evaluated at the rows' patterns
TABLE_BYTES = 256 << 20
MAX_FEATURES_PER_PATH = 30


@dataclass
class Paths:
    """Root-to-leaf paths of a tree ensemble, with their distinct features merged.

    Attributes
    ----------
    value : ndarray of shape (n_paths, n_targets)
    count : ndarray of shape (n_paths,)
        Distinct features on each path, ``d``.
    feature : ndarray of shape (n_paths, width)
        The distinct features (-1 past ``count``).
    zero : ndarray of shape (n_paths, width) or None
        Cover share following the path per distinct feature (1 past ``count``); None without cover.
    reach : ndarray of shape (n_paths,) or None
        Cover share reaching the leaf.
    edge : ndarray of shape (n_paths, depth)
        Index into :func:`failures`'s rows for each split of the path (the padding row past its end).
    element : ndarray of shape (n_paths, depth)
        Which distinct feature each split tests.
    """

    value: np.ndarray
    count: np.ndarray
    feature: np.ndarray
    zero: np.ndarray | None
    reach: np.ndarray | None
    edge: np.ndarray
    element: np.ndarray
    internal: np.ndarray

    def take(self, keep: np.ndarray) -> Paths:
        pick = (lambda array: None if array is None else array[keep])
        return Paths(self.value[keep], self.count[keep], self.feature[keep], pick(self.zero), pick(self.reach),
                     self.edge[keep], self.element[keep], self.internal)


def decompose(trees, cover: np.ndarray | None) -> Paths:
    """Every leaf's path in ``trees`` (a :class:`~agnostic_explain.graph.trees.TreeModel`)."""
    n_nodes = len(trees.mode)
    internal = trees.internal
    position = -np.ones(n_nodes, np.int64)
    position[internal] = np.arange(len(internal))
    parent = -np.ones(n_nodes, np.int64)
    went_true = np.zeros(n_nodes, bool)
    parent[trees.true_child[internal]] = internal
    parent[trees.false_child[internal]] = internal
    went_true[trees.true_child[internal]] = True
    leaves = np.flatnonzero(trees.mode < 0)
    leaves = leaves[(parent[leaves] >= 0) | np.isin(leaves, trees.roots)]
    padding = 2 * len(internal)
    edges, ratios, current = [], [], leaves.copy()
    while (parent[current] >= 0).any():
        up = parent[current]
        alive = up >= 0
        safe = np.where(alive, up, 0)
        edges.append(np.where(alive, position[safe] + len(internal) * (~went_true[current]), padding))
        if cover is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(cover[safe] > 0, cover[current] / cover[safe], 0.0)
            ratios.append(np.where(alive, share, 1.0))
        current = np.where(alive, up, current)
    n_paths, depth = len(leaves), len(edges)
    edge = np.stack(edges, axis=1) if edges else np.zeros((n_paths, 0), np.int64)
    valid = edge != padding
    node_of = np.where(valid, internal[np.where(valid, edge % max(len(internal), 1), 0)], -1)
    split_feature = np.where(valid, trees.feature[np.maximum(node_of, 0)], -1)
    same = (split_feature[:, :, None] == split_feature[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    first = np.argmax(same, axis=1)  # the first split on the same feature
    is_first = (first == np.arange(depth)) & valid
    rank = np.cumsum(is_first, axis=1) - 1
    element = np.where(valid, np.take_along_axis(rank, first, axis=1), 0)
    count = is_first.sum(axis=1)
    width = int(count.max(initial=0))
    if width > MAX_FEATURES_PER_PATH:
        raise ParameterError(f"model: a path tests {width} distinct features; TreeShap handles up to "
                             f"{MAX_FEATURES_PER_PATH}")
    feature = -np.ones((n_paths, max(width, 1)), np.int64)
    rows_first, cols_first = np.nonzero(is_first)
    feature[rows_first, element[rows_first, cols_first]] = split_feature[rows_first, cols_first]
    zero = reach = None
    if cover is not None:
        ratio = np.stack(ratios, axis=1) if ratios else np.ones((n_paths, 0))
        zero = np.ones((n_paths, max(width, 1)))
        rows = np.arange(n_paths)
        for k in range(depth):
            zero[rows, element[:, k]] *= ratio[:, k]
        reach = ratio.prod(axis=1)
    return Paths(trees.leaf_values[leaves], count, feature, zero, reach, edge, element, internal)


def failures(trees, paths: Paths, rows: np.ndarray) -> np.ndarray:
    """Each path's failed-feature bits for each row: (n_paths, n_rows) integers."""
    taken = trees.decisions(rows, paths.internal)
    width = paths.feature.shape[1]
    dtype = np.uint8 if width <= 8 else (np.uint16 if width <= 16 else np.uint32)
    stacked = np.concatenate([~taken, taken, np.zeros((1, len(rows)), bool)]).astype(dtype)
    pattern = np.zeros((len(paths.count), len(rows)), dtype)
    for k in range(paths.edge.shape[1]):
        bits = stacked[paths.edge[:, k]]
        np.left_shift(bits, paths.element[:, k, None].astype(dtype), out=bits)
        np.bitwise_or(pattern, bits, out=pattern)
    return pattern


def _bits(patterns: np.ndarray, d: int) -> np.ndarray:
    """Bit j of each pattern, as a trailing axis of length d (bool)."""
    return ((patterns[..., None] >> np.arange(d, dtype=patterns.dtype)) & 1).astype(bool)


def _weights(d: int) -> np.ndarray:
    """Shapley weights ``k! (d - 1 - k)! / d!`` for coalitions of size k among d players."""
    return np.array([factorial(k) * factorial(d - 1 - k) / factorial(d) for k in range(d)])


def _polynomial(zero: np.ndarray, satisfied: np.ndarray) -> np.ndarray:
    """Coefficients of ``prod_j (z_j + o_j t)``: (..., d + 1), lowest degree first (EXTEND)."""
    d = zero.shape[-1]
    shape = np.broadcast_shapes(zero.shape, satisfied.shape)[:-1]
    q = np.zeros(shape + (d + 1,))
    q[..., 0] = 1.0
    for j in range(d):
        shifted = q[..., :-1] * satisfied[..., j, None]
        q *= zero[..., j, None]
        q[..., 1:] += shifted
    return q


def _remove(q: np.ndarray, zero: np.ndarray, satisfied: np.ndarray) -> np.ndarray:
    """``(o_i - z_i) Q / (z_i + o_i t)`` for every factor i: (..., d, len(q)) (UNWIND).

    ``zero`` and ``satisfied`` have the factors on their last axis, broadcast against ``q``'s
    leading axes; a satisfied factor is divided out exactly (synthetic division), an
    unsatisfied one leaves ``-Q``.
    """
    degree = q.shape[-1] - 1
    z = zero[..., :, None]
    quotient = np.zeros(np.broadcast_shapes(q[..., None, :].shape, z.shape))
    quotient[..., degree - 1] = q[..., None, degree]
    for k in range(degree - 1, 0, -1):
        quotient[..., k - 1] = q[..., None, k] - z[..., 0] * quotient[..., k]
    return np.where(satisfied[..., :, None], (1.0 - z) * quotient, -q[..., None, :])


def path_dependent_values(zero: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Shapley values of each path's game at each failure pattern, unit leaf value.

    Parameters
    ----------
    zero : ndarray of shape (n_paths, d)
    patterns : ndarray of shape (n_paths, n_patterns)

    Returns
    -------
    ndarray of shape (n_paths, n_patterns, d)
    """
    d = zero.shape[1]
    satisfied = ~_bits(patterns, d)
    z = zero[:, None, :]
    removed = _remove(_polynomial(z, satisfied), z, satisfied)
    return removed[..., :d] @ _weights(d)


def path_dependent_interactions(zero: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Off-diagonal interaction values of each path's game: (n_paths, n_patterns, d, d)."""
    d = zero.shape[1]
    satisfied = ~_bits(patterns, d)
    z = zero[:, None, :]
    once = _remove(_polynomial(z, satisfied), z, satisfied)  # (P, Q, d, d + 1)
    twice = _remove(once, z[:, :, None, :], satisfied[:, :, None, :])  # (P, Q, d, d, d + 1)
    values = 0.5 * (twice[..., : d - 1] @ _weights(d - 1)) if d > 1 else np.zeros(twice.shape[:-1])
    return values * (1 - np.eye(d))


_BIT_COUNTS = np.array([value.bit_count() for value in range(1 << 16)], dtype=np.int64)


def _popcount(patterns: np.ndarray) -> np.ndarray:
    return _BIT_COUNTS[patterns & 0xFFFF] + _BIT_COUNTS[(patterns >> 16) & 0xFFFF]


def interventional_values(background: np.ndarray, weights: np.ndarray, patterns: np.ndarray, d: int) -> np.ndarray:
    """Background-averaged Shapley values of each path's game, unit leaf value.

    Parameters
    ----------
    background : ndarray of shape (n_paths, n_columns)
        Failure patterns of the background (rows, or every pattern with ``weights`` its share).
    weights : ndarray of shape (n_paths, n_columns) or (n_columns,)
    patterns : ndarray of shape (n_paths, n_patterns)
        Failure patterns of the explained rows.

    Returns
    -------
    ndarray of shape (n_paths, n_patterns, d)
    """
    x = patterns.astype(np.int64)[:, :, None]
    r = background.astype(np.int64)[:, None, :]
    only_x = _popcount(r & ~x)  # satisfied by the explained row only: must join the coalition
    only_r = _popcount(x & ~r)  # satisfied by the background row only: must stay out
    alive = ((x & r) == 0) & ((only_x + only_r) > 0)
    total = np.array([factorial(n) for n in range(d + 1)], dtype=np.float64)
    joined = np.maximum(only_x - 1, 0)
    left = np.maximum(only_r - 1, 0)
    size = only_x + only_r
    gain = np.where(alive & (only_x > 0), total[joined] * total[only_r] / total[size], 0.0)
    loss = np.where(alive & (only_r > 0), total[only_x] * total[left] / total[size], 0.0)
    weights = np.broadcast_to(weights, background.shape)[:, None, :]
    fails = _bits(background, d).astype(np.float64)  # (P, C, d)
    x_fails = _bits(patterns, d)
    plus = (gain * weights) @ fails
    minus = (loss * weights) @ (1.0 - fails)
    return np.where(x_fails, -minus, plus)


def interventional_interactions(background: np.ndarray, weights: np.ndarray, patterns: np.ndarray,
                                d: int) -> np.ndarray:
    """Background-averaged off-diagonal interaction values of each path's game: (n_paths, n_patterns, d, d).

    With ``U`` the features only the explained row satisfies and ``V`` those only the
    background row does, fixing ``j`` present keeps the path alive iff ``j`` is in ``U``, and
    absent iff it is in ``V``; half the difference of ``i``'s Shapley values in the two
    remaining games gives, over ``u + v - 1`` players: ``+(u-2)! v!`` for i, j in U,
    ``+u! (v-2)!`` for i, j in V and ``-(u-1)! (v-1)!`` across, all over ``2 (u+v-1)!``.
    """
    x = patterns.astype(np.int64)[:, :, None]
    r = background.astype(np.int64)[:, None, :]
    only_x, only_r = _popcount(r & ~x), _popcount(x & ~r)
    size = only_x + only_r
    alive = ((x & r) == 0) & (size >= 2)
    total = np.array([factorial(n) for n in range(d + 1)], dtype=np.float64)
    denominator = 2.0 * total[np.maximum(size - 1, 0)]
    weights = np.broadcast_to(weights, background.shape)[:, None, :] * alive / denominator
    both_x = np.where(only_x >= 2, total[np.maximum(only_x - 2, 0)] * total[only_r], 0.0) * weights
    both_r = np.where(only_r >= 2, total[only_x] * total[np.maximum(only_r - 2, 0)], 0.0) * weights
    across = np.where((only_x >= 1) & (only_r >= 1),
                      total[np.maximum(only_x - 1, 0)] * total[np.maximum(only_r - 1, 0)], 0.0) * weights
    fails = _bits(background, d).astype(np.float64)  # (P, C, d): the background row fails feature i
    passes = 1.0 - fails
    x_passes = (~_bits(patterns, d)).astype(np.float64)  # (P, Q, d)
    x_fails = 1.0 - x_passes
    n_paths, n_columns = fails.shape[:2]

    def summed(coefficient, left, right):
        outer = np.einsum("pci,pcj->pcij", left, right).reshape(n_paths, n_columns, d * d)
        return (coefficient @ outer).reshape(*coefficient.shape[:2], d, d)

    only_x_pairs = summed(both_x, fails, fails) * x_passes[..., :, None] * x_passes[..., None, :]
    only_r_pairs = summed(both_r, passes, passes) * x_fails[..., :, None] * x_fails[..., None, :]
    mixed = summed(across, fails, passes) * x_passes[..., :, None] * x_fails[..., None, :]
    values = only_x_pairs + only_r_pairs - mixed - mixed.transpose(0, 1, 3, 2)
    return values * (1 - np.eye(d))


def distinct_patterns(patterns: np.ndarray, weights: np.ndarray):
    """Each path's distinct background patterns with their summed weights, padded with weight 0.

    Background rows mostly fail a deep path the same few ways, so this shrinks the
    (paths x patterns x background) work many times over.
    """
    order = np.argsort(patterns, axis=1, kind="stable")
    ordered = np.take_along_axis(patterns, order, axis=1)
    new = np.ones(ordered.shape, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    rank = np.cumsum(new, axis=1) - 1
    width = int(rank.max(initial=0)) + 1
    rows = np.broadcast_to(np.arange(len(patterns))[:, None], rank.shape)
    distinct = np.zeros((len(patterns), width), dtype=patterns.dtype)
    distinct[rows, rank] = ordered
    share = np.bincount((rows * width + rank).reshape(-1), weights=weights[order].reshape(-1),
                        minlength=len(patterns) * width).reshape(len(patterns), width)
    return distinct, share
