"""Infidelity: how well attributions times a perturbation predict the model's change (Captum's definition)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..seeds import as_generator
from .scoring import Scorer

__all__ = ["InfidelityResult", "infidelity"]


@dataclass(frozen=True)
class InfidelityResult:
    """Infidelity of each explained row.

    Attributes
    ----------
    values : ndarray of shape (n_rows,)
        ``mean_j (I_j . attr - (f(x) - f(x - I_j)))**2`` over the row's perturbations
        (with Captum's optimal scaling ``beta`` of the attributions when ``normalize``).
    n_evals : int
        Model rows evaluated: ``n_rows * (n_perturb_samples + 1)``.
    n_perturb_samples : int
        Perturbations per row.
    normalize : bool
        Whether the attributions were rescaled by ``beta`` first.
    """

    values: np.ndarray
    n_evals: int
    n_perturb_samples: int
    normalize: bool


def infidelity(
    model,
    explanation,
    perturb_func: Callable,
    *,
    n_perturb_samples: int = 10,
    normalize: bool = False,
    fixed_inputs=None,
    random_state=None,
) -> InfidelityResult:
    """Explanation infidelity (Yeh et al. 2019), numerically as ``captum.metrics.infidelity``.

    Each row ``x`` is repeated ``n_perturb_samples`` times and ``perturb_func`` draws a
    perturbation ``I`` and a perturbed input (usually ``x - I``) for every copy. The metric is
    ``E[(sum(I * attr) - (f(x) - f(perturbed)))**2]`` where ``f`` is the explained target.
    The unperturbed and all perturbed rows of all inputs go to the model in one batched run.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        The explained model (see :func:`agnostic_explain.load`).
    explanation : Explanation
        Attributions ``values`` of shape (n_rows, ...) for the rows ``data`` and per-row targets.
    perturb_func : callable
        ``perturb_func(rows, rng) -> (perturbations, perturbed_rows)``, Captum's contract in
        numpy: ``rows`` is ndarray of shape (n_rows * n_perturb_samples, ...), each explained
        row repeated consecutively (``np.repeat(data, n_perturb_samples, axis=0)``, Captum's
        ``repeat_interleave``), and ``rng`` a ``numpy.random.Generator``. Both returned arrays
        have the shape of ``rows``. For attributions that already multiply by the input
        (ablation, occlusion, SHAP), ``perturbations`` is ``(rows - perturbed) / (rows -
        baseline)``, e.g. a binary mask of the removed features, as Captum's
        ``infidelity_perturb_func_decorator(True)`` computes it.
    n_perturb_samples : int, default 10
        Perturbations per row.
    normalize : bool, default False
        Rescale the attributions by ``beta = E[a d] / E[a**2]`` (``a = sum(I * attr)``,
        ``d = f(x) - f(perturbed)``) before the error, as Captum does, so that infidelity does
        not depend on the attributions' scale. A ``beta`` denominator of 0 is replaced by 1.
    fixed_inputs : dict, optional
        The model's other inputs, as given to ``explain``.
    random_state : int or numpy.random.Generator, optional
        Seeds the generator handed to ``perturb_func``.

    Returns
    -------
    InfidelityResult

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.FeatureAblation(DEFAULT_MODEL_PATH).explain(images[:2])
    >>> def drop_pixels(rows, rng):  # remove ~10% of the pixels; attributions are global
    ...     mask = (rng.random(rows.shape) < 0.1).astype(rows.dtype)
    ...     return mask, rows * (1 - mask)
    >>> result = infidelity(DEFAULT_MODEL_PATH, explanation, drop_pixels, random_state=0)
    >>> result.values.shape, result.n_evals
    ((2,), 22)
    """
    n = check_count(n_perturb_samples)
    if not callable(perturb_func):
        raise ParameterError(f"perturb_func must be callable(rows, rng), got {type(perturb_func).__name__}")
    scorer = Scorer(model, explanation, fixed_inputs=fixed_inputs)
    rows = scorer.rows
    n_rows = len(rows)
    attributions = np.asarray(explanation.values, dtype=np.float64)
    if attributions.shape != rows.shape:
        raise ParameterError(
            f"explanation.values has shape {attributions.shape}; infidelity needs attributions shaped "
            f"like the explained input {rows.shape}"
        )
    expanded = np.repeat(rows, n, axis=0)
    perturbations, perturbed = _perturb(perturb_func, expanded, as_generator(random_state))

    def make_rows(start: int, stop: int) -> np.ndarray:
        # Rows 0..n_rows-1 are the unperturbed inputs, the rest the perturbed ones.
        head = rows[min(start, n_rows):min(stop, n_rows)]
        tail = perturbed[max(start - n_rows, 0):max(stop - n_rows, 0)]
        return np.concatenate([head, tail]) if len(head) and len(tail) else (head if len(head) else tail)

    owners = np.concatenate([np.arange(n_rows), np.repeat(np.arange(n_rows), n)])
    scores = scorer.score(len(owners), make_rows, owners, desc="infidelity")
    differences = scores[:n_rows, None] - scores[n_rows:].reshape(n_rows, n)
    predicted = (np.repeat(attributions, n, axis=0) * perturbations).reshape(n_rows, n, -1).sum(axis=2)
    if normalize:
        a_a = (predicted**2).sum(axis=1)
        a_d = (predicted * differences).sum(axis=1)
        d_d = (differences**2).sum(axis=1)
        beta = a_d / np.where(a_a == 0, 1.0, a_a)
        values = beta * beta * a_a - 2 * beta * a_d + d_d
    else:
        values = ((predicted - differences) ** 2).sum(axis=1)
    return InfidelityResult(values=values / n, n_evals=scorer.n_evals, n_perturb_samples=n, normalize=bool(normalize))


def check_count(n_perturb_samples) -> int:
    if isinstance(n_perturb_samples, bool) or not isinstance(n_perturb_samples, (int, np.integer)) \
            or n_perturb_samples < 1:
        raise ParameterError(f"n_perturb_samples must be an int >= 1, got {n_perturb_samples!r}")
    return int(n_perturb_samples)


def _perturb(perturb_func, expanded: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    result = perturb_func(expanded.copy(), rng)
    if not isinstance(result, tuple) or len(result) != 2:
        raise ParameterError(
            "perturb_func must return a tuple (perturbations, perturbed_rows), "
            f"got {type(result).__name__}"
        )
    perturbations, perturbed = (np.asarray(part) for part in result)
    for name, array in (("perturbations", perturbations), ("perturbed_rows", perturbed)):
        if array.shape != expanded.shape:
            raise ParameterError(
                f"perturb_func returned {name} of shape {array.shape}; expected {expanded.shape} "
                "(the rows it was given: each explained row repeated n_perturb_samples times)"
            )
    return perturbations.astype(np.float64), perturbed.astype(expanded.dtype, copy=False)
