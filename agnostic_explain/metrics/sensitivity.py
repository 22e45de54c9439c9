"""Max-sensitivity: how much an explanation moves under small input noise (Captum's definition)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..seeds import as_generator
from .infidelity import check_count

__all__ = ["SensitivityResult", "sensitivity_max"]


@dataclass(frozen=True)
class SensitivityResult:
    """Max-sensitivity of each explained row.

    Attributes
    ----------
    values : ndarray of shape (n_rows,)
        ``max_j ||attr(x + e_j) - attr(x)|| / ||attr(x)||`` over the row's perturbations.
    sensitivities : ndarray of shape (n_rows, n_perturb_samples)
        The ratio for every perturbation, before the max.
    n_evals : int
        Model rows evaluated by both explanations (unperturbed and perturbed).
    """

    values: np.ndarray
    sensitivities: np.ndarray
    n_evals: int


def sensitivity_max(
    explainer,
    x,
    *,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    target="predicted",
    norm="fro",
    random_state=None,
    **explain_kwargs,
) -> SensitivityResult:
    """Max-sensitivity (Yeh et al. 2019), numerically as ``captum.metrics.sensitivity_max``.

    Each row is explained, then copied ``n_perturb_samples`` times with uniform noise in
    ``[-perturb_radius, perturb_radius]`` added to every element (Captum's
    ``default_perturb_func``), and all copies of all rows are re-explained in one
    ``explainer.explain`` call, each for its row's resolved target. The score of a copy is
    ``||attr(x + e) - attr(x)|| / ||attr(x)||`` (a zero denominator counts as 1); a row's
    value is the max over its copies.

    Parameters
    ----------
    explainer : Explainer
        Any explainer, e.g. ``FeatureAblation(model)``. A baseline or feature mask given per
        row (shaped like ``x``) does not fit the perturbed batch; give them per single row.
    x : array_like of shape (n_rows, ...)
        Rows of the explained input.
    perturb_radius : float, default 0.02
        Half-width of the uniform noise (the radius of the L-infinity ball).
    n_perturb_samples : int, default 10
        Noisy copies per row.
    target : int, tuple, list, "predicted" or callable, default "predicted"
        As for ``explain``; the perturbed copies keep their row's resolved class, as Captum
        expands ``target`` per row.
    norm : "fro" or float, default "fro"
        Vector norm of the flattened attributions: "fro" is the 2-norm; a number ``p`` is
        ``sum(|v|**p)**(1/p)`` (``np.inf`` the max), as ``torch.norm(p=...)``.
    random_state : int or numpy.random.Generator, optional
        ``rng = np.random.default_rng(random_state)`` is handed to the first ``explain``
        call, then draws the noise ``rng.uniform(-r, r, size=(n_rows * n_perturb_samples,
        *row_shape))`` (copies of a row consecutive, cast to the input dtype), then goes to the
        second call. For an explainer that does not sample, the noise is the first draw.
    **explain_kwargs
        Passed to both ``explain`` calls (``output``, ``input``, ``output_transform`` ...).
        ``fixed_inputs`` arrays with one row per explained row (first axis ``n_rows`` > 1)
        are repeated for the copies.

    Returns
    -------
    SensitivityResult

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explainer = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 4, 4), stride=(1, 4, 4))
    >>> result = sensitivity_max(explainer, images[:2], n_perturb_samples=3, random_state=0)
    >>> result.values.shape, result.sensitivities.shape
    ((2,), (2, 3))
    """
    n = check_count(n_perturb_samples)
    radius = float(perturb_radius) if isinstance(perturb_radius, (int, float, np.number)) else None
    if radius is None or not np.isfinite(radius) or radius < 0:
        raise ParameterError(f"perturb_radius must be a finite number >= 0, got {perturb_radius!r}")
    order = _norm_order(norm)
    for name in ("x", "target", "random_state"):
        if name in explain_kwargs:
            raise ParameterError(f"explain_kwargs: {name!r} is an argument of sensitivity_max itself")
    rng = as_generator(random_state)
    original = explainer.explain(x, target=target, random_state=rng, **explain_kwargs)
    rows = original.data
    n_rows = len(rows)
    noise = rng.uniform(-radius, radius, size=(n_rows * n,) + rows.shape[1:]).astype(rows.dtype)
    perturbed_rows = np.repeat(rows, n, axis=0) + noise
    perturbed = explainer.explain(
        perturbed_rows, target=_repeat_target(original.target, target, n), random_state=rng,
        **_repeat_fixed_inputs(explain_kwargs, n_rows, n),
    )
    reference = np.asarray(original.values, dtype=np.float64).reshape(n_rows, -1)
    changes = np.repeat(reference, n, axis=0) - np.asarray(perturbed.values, dtype=np.float64).reshape(n_rows * n, -1)
    scale = np.linalg.norm(reference, ord=order, axis=1)
    scale = np.where(scale == 0, 1.0, scale)
    ratios = (np.linalg.norm(changes, ord=order, axis=1).reshape(n_rows, n) / scale[:, None])
    return SensitivityResult(values=ratios.max(axis=1), sensitivities=ratios,
                             n_evals=int(original.n_evals + perturbed.n_evals))


def _norm_order(norm):
    if isinstance(norm, str):
        if norm == "fro":
            return 2
        raise ParameterError(f"norm must be 'fro' or a number p, got {norm!r}")
    if isinstance(norm, bool) or not isinstance(norm, (int, float, np.number)):
        raise ParameterError(f"norm must be 'fro' or a number p, got {norm!r}")
    return float(norm)


def _repeat_target(resolved, target, n: int):
    # A callable target is not kept in the Explanation; it applies to every row as it is.
    if resolved is None:
        return target
    repeated = np.repeat(np.asarray(resolved), n, axis=0)
    if repeated.ndim == 1:
        return [int(t) for t in repeated]
    return [tuple(int(i) for i in t) for t in repeated]


def _repeat_fixed_inputs(explain_kwargs: dict, n_rows: int, n: int) -> dict:
    fixed = explain_kwargs.get("fixed_inputs")
    if not fixed or n_rows < 2:
        return explain_kwargs
    repeated = {}
    for name, value in fixed.items():
        array = np.asarray(value)
        repeated[name] = np.repeat(array, n, axis=0) if array.ndim and array.shape[0] == n_rows else value
    return {**explain_kwargs, "fixed_inputs": repeated}
