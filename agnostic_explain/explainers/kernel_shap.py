"""KernelSHAP: Shapley values as the solution of a weighted linear regression over coalitions."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np

from ..perturbation import masks
from ..perturbation.background import coalition_values, validate_background
from ..errors import ParameterError
from .base import Explainer, Problem, recorded

LINKS = ("identity", "logit")
#: with nsamples="auto", models with at most this many groups get every coalition (exact values)
EXACT_GROUPS = 12


class KernelShap(Explainer):
    """KernelSHAP (Lundberg & Lee 2017) with shap's coalition design, batched over all rows.

    The value of a coalition ``S`` of groups is the background-weighted mean of the target
    with the groups in ``S`` taken from the explained row and the others from each
    background row. Shapley values solve a linear regression of these values on the
    coalitions, weighted by the Shapley kernel, under the efficiency constraint
    ``sum(values) = link(f(x)) - link(E[f(background)])``, which therefore holds exactly.

    When every coalition fits in ``nsamples`` (``2**M - 2 <= nsamples``) they are all
    enumerated and the result is exactly the Shapley values. Otherwise, as in
    ``shap.KernelExplainer``, coalition sizes are enumerated completely from the outside in
    (sizes 1 and M-1, then 2 and M-2, ...) while the budget allows, and the rest is filled by
    paired sampling (each sampled coalition with its complement; repeats add weight). One
    coalition design, drawn from ``random_state``, serves every explained row, so all rows
    are solved at once.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    background : array_like of shape (n_background, ...), or Background
        Rows shaped like one explained row, or a weighted summary from
        :func:`agnostic_explain.background.summarize` (k-means or random rows).
    nsamples : int or "auto", default "auto"
        Coalitions evaluated per explained row (each costs ``n_background`` model rows).
        "auto" is shap's ``2 * M + 2048``, raised to all ``2**M - 2`` coalitions when
        ``M <= 12``. A budget of ``2**M - 2`` or more enumerates every coalition.
    link : {"identity", "logit"}, default "identity"
        "logit" explains ``log(p / (1 - p))`` of the coalition values (as shap's
        ``link="logit"``): the target must be a probability, e.g. from
        ``explain(..., output_transform="softmax")`` or ``"sigmoid"``.
    feature_mask : array_like of int, optional
        Group ids broadcastable to one input row; by default every element is its own group.

    Notes
    -----
    ``values`` gives every element its group's value (Captum's convention);
    ``extras["group_values"]`` (n_rows, n_groups) holds one value per group and sums to
    ``link(base_values) - extras["expected_value"]`` on every row.
    Unlike shap, features equal to every background row are not dropped before sampling, and
    no L1 feature selection is made (shap 0.51's ``shap_values`` keeps 10 features by default).

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> model = ae.load(lambda x: x @ np.array([[1.0], [2.0], [3.0]]))
    >>> explanation = KernelShap(model, background=np.zeros((1, 3))).explain(np.ones((1, 3)), target=0)
    >>> explanation.values.round(4).tolist()
    [[1.0, 2.0, 3.0]]
    """

    method = "kernel_shap"
    data_params = ("background",)

    def __init__(self, model, background, nsamples="auto", link="identity", feature_mask=None):
        super().__init__(model)
        self.background = background
        self.nsamples = nsamples
        self.link = link
        self.feature_mask = feature_mask

    def _params(self) -> dict:
        background = np.shape(getattr(self.background, "rows", self.background))
        mask = recorded(self.feature_mask)
        rows = f"{background[0] if background else 1} rows"
        return {"nsamples": self.nsamples, "link": self.link, "background": rows, "feature_mask": mask}

    def _check(self, rows: np.ndarray) -> tuple:
        """The group mask, the background and the coalition budget."""
        if self.link not in LINKS:
            raise ParameterError(f"link must be one of {LINKS}, got {self.link!r}")
        background = validate_background(self.background, rows)
        mask = group_mask(self.feature_mask, rows)
        return mask, background, budget(self.nsamples, masks.n_groups(mask))

    def _attribute(self, problem: Problem) -> np.ndarray:
        mask, background, n_samples = problem.checked
        n_groups = masks.n_groups(mask)
        keep, kernel = coalitions(n_groups, n_samples, problem.rng)
        keep = np.vstack([np.zeros((1, n_groups), dtype=bool), keep])  # the empty coalition: E[f(background)]
        values = coalition_values(problem, mask, background.rows[None], background.weights, keep, "kernel shap")
        link = _link(self.link)
        expected = link(values[:, 0])
        change = link(problem.base_values) - expected
        group_values = solve(keep[1:], kernel, link(values[:, 1:]) - expected[:, None], change)
        problem.extras.update(
            group_values=group_values, expected_value=expected, feature_mask=mask,
            n_coalitions=len(kernel), exact=len(kernel) == 2**n_groups - 2,
        )
        return group_values[:, mask].astype(np.float32)


def group_mask(feature_mask, rows: np.ndarray) -> np.ndarray:
    """The validated mask, by default one group per element of a row."""
    if feature_mask is None:
        return masks.one_per_element(rows.shape[1:])
    return masks.validate(feature_mask, rows.shape[1:])


def budget(nsamples, n_groups: int) -> int:
    """Coalitions to evaluate: ``nsamples`` resolved and capped at all ``2**M - 2`` of them."""
    every = 2**n_groups - 2 if n_groups < 63 else np.iinfo(np.int64).max
    if isinstance(nsamples, str) and nsamples == "auto":
        return every if n_groups <= EXACT_GROUPS else min(every, 2 * n_groups + 2048)
    if isinstance(nsamples, bool) or not isinstance(nsamples, (int, np.integer)):
        raise ParameterError(f"nsamples must be a positive int or 'auto', got {nsamples!r}")
    needed = min(every, n_groups + 1)
    if nsamples < needed:
        raise ParameterError(
            f"nsamples={nsamples} is too small for {n_groups} groups: the constrained regression has "
            f"{n_groups - 1} unknowns, so it needs at least {needed} coalitions"
        )
    return int(min(nsamples, every))


def coalitions(n_groups: int, nsamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """shap's coalition design: complete sizes from the outside in, then paired sampling.

    Returns
    -------
    keep : ndarray of shape (n_coalitions, n_groups), bool
    kernel : ndarray of shape (n_coalitions,)
        Regression weights: the Shapley kernel mass of each enumerated size spread over its
        coalitions, and sampled coalitions weighted by their draw counts scaled to the mass left.
    """
    m = n_groups
    if m < 2:
        return np.zeros((0, m), dtype=bool), np.zeros(0)
    n_sizes, n_paired = (m - 1 + 1) // 2, (m - 1) // 2
    size_weight = np.array([(m - 1.0) / (s * (m - s)) for s in range(1, n_sizes + 1)])
    size_weight[:n_paired] *= 2
    size_weight /= size_weight.sum()
    blocks, kernels = [], []
    left, remaining, n_full = nsamples, size_weight.copy(), 0
    for size in range(1, n_sizes + 1):
        paired = size <= n_paired
        count = comb(m, size) * (2 if paired else 1)
        if left * remaining[size - 1] / count < 1.0 - 1e-8:
            break
        n_full, left = n_full + 1, left - count
        if remaining[size - 1] < 1.0:
            remaining /= 1.0 - remaining[size - 1]
        chosen = np.array(list(itertools.combinations(range(m), size)))
        block = np.zeros((len(chosen), m), dtype=bool)
        block[np.arange(len(chosen))[:, None], chosen] = True
        if paired:
            block = np.stack([block, ~block], axis=1).reshape(-1, m)
        blocks.append(block)
        kernels.append(np.full(len(block), size_weight[size - 1] / count))
    if n_full < n_sizes and left > 0:
        block, counts = _paired_draws(m, n_full, n_paired, size_weight, left, rng)
        blocks.append(block)
        kernels.append(counts * size_weight[n_full:].sum() / counts.sum())
    return np.vstack(blocks), np.concatenate(kernels)


def _paired_draws(m, n_full, n_paired, size_weight, budget_left, rng):
    """Random coalitions of the sizes not enumerated, each followed by its complement.

    As in shap, a pool of ``4 * budget_left`` draws is consumed until the budget is filled,
    and a coalition drawn again only adds weight (to its complement too). Draws are
    generated in chunks, so memory stays small for many groups.
    """
    probabilities = size_weight.copy()
    probabilities[:n_paired] /= 2  # a paired draw yields two coalitions
    probabilities = probabilities[n_full:] / probabilities[n_full:].sum()
    keep, weight, seen = [], [], {}
    pool, used = 4 * budget_left, 0
    chunk = max(1, min(pool, (1 << 22) // m))
    while len(keep) < budget_left and used < pool:
        count = min(chunk, pool - used)
        used += count
        sizes = n_full + 1 + rng.choice(len(probabilities), size=count, p=probabilities)
        drawn = np.argsort(rng.random((count, m)), axis=1).argsort(axis=1) < sizes[:, None]
        packed = np.packbits(drawn, axis=1)
        for draw in range(count):
            key = packed[draw].tobytes()
            if key in seen:
                for slot in seen[key]:
                    weight[slot] += 1.0
                continue
            slots = [len(keep)]
            keep.append(drawn[draw])
            if sizes[draw] <= n_paired and len(keep) < budget_left:
                slots.append(len(keep))
                keep.append(~drawn[draw])
            weight.extend([1.0] * len(slots))
            seen[key] = slots
            if len(keep) >= budget_left:
                break
    return np.array(keep, dtype=bool).reshape(-1, m), np.array(weight)


def solve(keep: np.ndarray, kernel: np.ndarray, targets: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Kernel-weighted least squares under ``sum(phi) = change``, for all rows at once.

    The last group's value is eliminated with the constraint (as shap does), so one
    ``(M - 1) x (M - 1)`` system serves every row's right-hand side.

    Parameters
    ----------
    keep : ndarray of shape (n_coalitions, n_groups), bool
    kernel : ndarray of shape (n_coalitions,)
    targets : ndarray of shape (n_rows, n_coalitions)
        ``link(v(S)) - link(v(empty))``.
    change : ndarray of shape (n_rows,)
        ``link(f(x)) - link(v(empty))``.

    Returns
    -------
    ndarray of shape (n_rows, n_groups), float64
    """
    n_rows, m = len(targets), keep.shape[1]
    phi = np.empty((n_rows, m))
    if m == 1:
        phi[:, 0] = change
        return phi
    design = keep.astype(np.float64)
    reduced = design[:, :-1] - design[:, -1:]
    adjusted = targets - design[:, -1][None, :] * change[:, None]
    weighted = kernel[:, None] * reduced
    try:
        solution = np.linalg.solve(reduced.T @ weighted, weighted.T @ adjusted.T)
    except np.linalg.LinAlgError:  # too few distinct coalitions: the minimum-norm solution
        root = np.sqrt(kernel)[:, None]
        solution = np.linalg.lstsq(root * reduced, root * adjusted.T, rcond=None)[0]
    phi[:, :-1] = solution.T
    phi[:, -1] = change - solution.sum(axis=0)
    return phi


def _link(name: str):
    if name == "identity":
        return lambda values: np.asarray(values, dtype=np.float64)

    def logit(values):
        values = np.asarray(values, dtype=np.float64)
        if np.any((values <= 0) | (values >= 1)):
            raise ParameterError(
                "link='logit' needs target values strictly between 0 and 1 (probabilities); "
                "explain with output_transform='softmax' or 'sigmoid', or use link='identity'"
            )
        return np.log(values / (1.0 - values))

    return logit
