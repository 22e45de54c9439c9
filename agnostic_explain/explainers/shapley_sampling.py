"""Shapley value sampling: average marginal contributions along random orderings of the groups."""

from __future__ import annotations

import numpy as np

from ..perturbation import masks
from ..perturbation.background import coalition_values, validate_background
from ..errors import ParameterError
from ..perturbation.baselines import baseline_rows
from .base import Explainer, Problem, recorded
from .budget import check_budget
from .kernel_shap import group_mask


class ShapleySampling(Explainer):
    """Shapley value sampling (Castro et al. 2009; Captum's ``ShapleyValueSampling``).

    Each permutation of the groups is walked from the baseline to the explained row, adding
    one group at a time; a group's value is its mean marginal contribution over the walks.
    Along one walk the contributions telescope to ``f(x) - f(baseline)``, so efficiency
    holds exactly for any number of permutations. With a ``background`` the walk starts from
    each background row and the coalition values are background-weighted means, so the
    values sum to ``f(x) - E[f(background)]``.

    The permutations, drawn from ``random_state``, are shared by all explained rows; every
    distinct coalition of every walk, for every row and background row, runs in one batched
    model call.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    baseline : float, array_like, "mean" or "blur", default 0.0
        Replacement values, as for :class:`Occlusion`; not used when ``background`` is given.
    n_permutations : int, default 25
        Random permutations drawn.
    antithetic : bool, default True
        Also walk each permutation in reverse (``2 * n_permutations`` walks), which cancels
        much of the sampling error of pairwise interactions.
    feature_mask : array_like of int, optional
        Group ids broadcastable to one input row; by default every element is its own group.
    background : array_like of shape (n_background, ...), or Background, optional
        Background rows (or a weighted summary) to average over instead of one baseline.

    Notes
    -----
    ``values`` gives every element its group's value; ``extras["group_values"]``
    (n_rows, n_groups) sums to ``base_values - extras["expected_value"]`` on every row.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> model = ae.load(lambda x: x[:, :1] * x[:, 1:2])
    >>> explanation = ShapleySampling(model, n_permutations=2).explain(np.array([[2.0, 3.0]]), target=0)
    >>> explanation.values.tolist()  # the product is split evenly
    [[3.0, 3.0]]
    """

    method = "shapley_sampling"
    data_params = ("background",)

    def __init__(self, model, baseline=0.0, n_permutations=25, antithetic=True, feature_mask=None, background=None):
        super().__init__(model)
        self.baseline = baseline
        self.n_permutations = n_permutations
        self.antithetic = antithetic
        self.feature_mask = feature_mask
        self.background = background

    def _params(self) -> dict:
        baseline = recorded(self.baseline)
        background = None
        if self.background is not None:
            shape = np.shape(getattr(self.background, "rows", self.background))
            background = f"{shape[0] if shape else 1} rows"
        return {"baseline": baseline, "background": background, "n_permutations": self.n_permutations,
                "antithetic": bool(self.antithetic),
                "feature_mask": recorded(self.feature_mask)}

    def _check(self, rows: np.ndarray) -> tuple:
        """The group mask, the replacement rows and their weights."""
        count = self.n_permutations
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ParameterError(f"n_permutations must be a positive int, got {count!r}")
        mask = group_mask(self.feature_mask, rows)
        m = masks.n_groups(mask)
        # the walks' random keys, orders, ranks and coalitions, drawn before the model runs
        check_budget(int(count) * 2 * (m + 1) * (m + 40), f"n_permutations={count} over {m} groups",
                     "use fewer permutations or coarser groups")
        if self.background is not None:
            background = validate_background(self.background, rows)
            return mask, background.rows[None], background.weights
        return mask, np.asarray(baseline_rows(self.baseline, rows))[:, None], np.ones(1)

    def _attribute(self, problem: Problem) -> np.ndarray:
        mask, replacement, weights = problem.checked
        m = masks.n_groups(mask)
        orders = np.argsort(problem.rng.random((int(self.n_permutations), m)), axis=1)
        if self.antithetic:
            orders = np.concatenate([orders, orders[:, ::-1]])
        rank = np.argsort(orders, axis=1)  # rank[p, g]: the step at which walk p adds group g
        # keep[p, k, g]: after k steps of walk p, group g comes from the explained row
        keep = rank[:, None, :] < np.arange(m + 1)[None, :, None]
        coalitions, index = np.unique(keep.reshape(-1, m), axis=0, return_inverse=True)
        index = index.reshape(len(orders), m + 1)
        values = coalition_values(problem, mask, replacement, weights, coalitions, "shapley sampling")
        walked = values[:, index]  # (n_rows, n_walks, m + 1)
        steps = np.diff(walked, axis=2)  # step k adds group orders[p, k]
        contributions = np.take_along_axis(steps, np.broadcast_to(rank, steps.shape), axis=2)
        group_values = contributions.mean(axis=1)
        problem.extras.update(
            group_values=group_values, expected_value=values[:, index[0, 0]], feature_mask=mask,
            n_coalitions=len(coalitions),
        )
        return group_values[:, mask].astype(np.float32)
