"""Deletion and insertion curves (Petsiuk et al., 2018, "RISE"): how fast the target score
falls when the most important features go first, or rises when they come back first.

Features of each row are ranked by attribution, largest first. Image rows with a channel axis
(1, 3 or 4 channels, from the explanation's preprocessing layout or else guessed from the
shape) are ranked by pixel, attributions summed over channels, and a pixel's channels are
removed together. Every step of every row is scored in one batched run of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..layout import channel_axis
from ..perturbation.baselines import baseline_rows
from ..seeds import as_generator
from .scoring import Scorer

__all__ = ["CurveResult", "deletion", "insertion", "random_attribution", "random_curve"]

_KINDS = ("deletion", "insertion")


@dataclass(frozen=True, eq=False)
class CurveResult:
    """A deletion or insertion curve for each explained row.

    Attributes
    ----------
    fractions : ndarray of shape (steps + 1,)
        Fraction of features removed (deletion) or inserted (insertion) at each step, 0 to 1.
    scores : ndarray of shape (n_rows, steps + 1)
        The target score (after the explanation's output transform) at each step.
    auc : ndarray of shape (n_rows,)
        Area under each curve over ``fractions`` (trapezoid rule). Lower is better for
        deletion, higher for insertion.
    kind : str
        ``"deletion"`` or ``"insertion"``.
    method : str
        The explanation's method, e.g. ``"occlusion"``, or ``"random"``.
    baseline : str
        What removed features were replaced with, e.g. ``"0.0"``, ``"blur"``, ``"array"``.
    n_evals : int
        Model rows evaluated.
    """

    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    kind: str
    method: str
    baseline: str
    n_evals: int

    def __repr__(self) -> str:
        return (
            f"CurveResult(kind={self.kind!r}, method={self.method!r}, rows={len(self.auc)}, "
            f"steps={len(self.fractions) - 1}, mean auc={float(np.mean(self.auc)):.4f})"
        )


def deletion(model, explanation, *, steps=20, baseline=0.0, fixed_inputs=None, progress=None) -> CurveResult:
    """Deletion curve: replace features by the baseline, most important first.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        The explained model.
    explanation : Explanation
        Attributions (``values`` shaped like ``data``, or with one channel over image rows).
    steps : int, default=20
        Number of equal steps from no feature removed to all removed; ``steps + 1`` points.
    baseline : float, array, "mean" or "blur", default=0.0
        The removed features' replacement: a number, an array broadcasting to one row or to
        all rows, each row's mean, or a Gaussian blur of each row.
    fixed_inputs : dict, optional
        The model's other inputs, as given to ``explain``.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    CurveResult

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
    >>> curve = deletion(DEFAULT_MODEL_PATH, explanation, steps=8)
    >>> curve.scores.shape, curve.n_evals
    ((2, 9), 18)
    >>> bool(np.allclose(curve.scores[:, 0], explanation.base_values, atol=1e-5))
    True
    """
    return _curve("deletion", model, explanation, steps, baseline, fixed_inputs, progress)


def insertion(model, explanation, *, steps=20, baseline="blur", fixed_inputs=None, progress=None) -> CurveResult:
    """Insertion curve: start from the baseline and put the features back, most important first.

    Parameters are those of :func:`deletion`; the default baseline is a blur, as in RISE.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
    >>> curve = insertion(DEFAULT_MODEL_PATH, explanation, steps=8)
    >>> bool(np.allclose(curve.scores[:, -1], explanation.base_values, atol=1e-5))
    True
    """
    return _curve("insertion", model, explanation, steps, baseline, fixed_inputs, progress)


def random_attribution(explanation, *, random_state=None):
    """A copy of ``explanation`` with uniform random values in [0, 1) and method ``"random"``.

    The reference a deletion or insertion curve should beat. ``values`` keep their shape.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 4, 4)).explain(images[:1])
    >>> random_attribution(explanation, random_state=0).method
    'random'
    """
    rng = as_generator(random_state)
    values = rng.random(np.shape(explanation.values)).astype(np.float32)
    return replace(explanation, values=values, method="random")


def random_curve(model, explanation, kind="deletion", *, seeds=3, random_state=0, steps=20, baseline=None,
                 fixed_inputs=None, progress=None) -> CurveResult:
    """The curve of random attributions, averaged over ``seeds`` random orders per row.

    All seeds' steps run in one batched call. ``scores`` and ``auc`` are the means over seeds
    for each row; ``n_evals`` counts every seed.

    Parameters
    ----------
    model, explanation, steps, fixed_inputs, progress
        As in :func:`deletion`.
    kind : {"deletion", "insertion"}
    seeds : int, default=3
        Random orders drawn per row.
    random_state : int, numpy.random.Generator or None, default=0
    baseline : optional
        As in :func:`deletion`; by default 0.0 for deletion and "blur" for insertion.

    Returns
    -------
    CurveResult
        With ``method="random"``.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
    >>> reference = random_curve(DEFAULT_MODEL_PATH, explanation, "deletion", seeds=3, steps=8)
    >>> reference.scores.shape, reference.n_evals
    ((2, 9), 54)
    """
    kind = _check_kind(kind)
    if not isinstance(seeds, Integral) or isinstance(seeds, bool) or seeds < 1:
        raise ParameterError(f"seeds must be an integer >= 1, got {seeds!r}")
    if baseline is None:
        baseline = 0.0 if kind == "deletion" else "blur"
    rng = as_generator(random_state)
    randoms = [random_attribution(explanation, random_state=rng) for _ in range(int(seeds))]
    result = _curve(kind, model, randoms, steps, baseline, fixed_inputs, progress)
    n_rows = len(explanation)
    scores = result.scores.reshape(int(seeds), n_rows, -1).mean(axis=0)
    return replace(result, scores=scores, auc=_auc(scores, result.fractions))


def _curve(kind, model, explanations, steps, baseline, fixed_inputs, progress) -> CurveResult:
    """Curves of one explanation, or of several sharing data and targets (stacked row-wise)."""
    if not isinstance(steps, Integral) or isinstance(steps, bool) or steps < 1:
        raise ParameterError(f"steps must be an integer >= 1, got {steps!r}")
    steps = int(steps)
    if not isinstance(explanations, list):
        explanations = [explanations]
    first = explanations[0]
    scorer = Scorer(model, first, fixed_inputs=fixed_inputs)
    rows = scorer.rows
    base = baseline_rows(baseline, rows)
    layout = _layout(first, rows.shape[1:])
    # ranks[r, f] is feature f's place in row r's order (0 = most important)
    ranks = np.concatenate([_ranks(_importance(e.values, rows.shape, layout)) for e in explanations])
    owners_of = np.tile(np.arange(len(rows)), len(explanations))
    n_features = ranks.shape[1]
    counts = np.arange(steps + 1) * n_features // steps
    points = steps + 1
    grid = _grid_shape(rows.shape[1:], layout)

    def make_rows(start, stop):
        index = np.arange(start, stop)
        curve, step = index // points, index % points
        owners = owners_of[curve]
        chosen = (ranks[curve] < counts[step][:, None]).reshape((len(index),) + grid)
        if layout is not None:
            chosen = np.expand_dims(chosen, 1 if layout == "nchw" else 3)
        if kind == "deletion":
            return np.where(chosen, base[owners], rows[owners])
        return np.where(chosen, rows[owners], base[owners])

    n = len(ranks) * points
    owners = owners_of[np.arange(n) // points]
    scores = scorer.score(n, make_rows, owners, desc=kind, progress=progress).reshape(len(ranks), points)
    fractions = counts / n_features
    return CurveResult(
        fractions=fractions, scores=scores, auc=_auc(scores, fractions), kind=kind, method=first.method,
        baseline=_describe(baseline), n_evals=scorer.n_evals,
    )


def _auc(scores: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    return np.trapezoid(scores, fractions, axis=1)


def _check_kind(kind) -> str:
    if kind not in _KINDS:
        raise ParameterError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    return kind


def _layout(explanation, row_shape) -> str | None:
    """The image layout of the rows, None when they are not images with a channel axis."""
    if len(row_shape) != 3:
        return None
    return {0: "nchw", 2: "nhwc"}.get(channel_axis(row_shape, (explanation.preprocessing or {}).get("layout")))


def _grid_shape(row_shape, layout) -> tuple:
    if layout == "nchw":
        return tuple(row_shape[1:])
    if layout == "nhwc":
        return tuple(row_shape[:2])
    return tuple(row_shape)


def _importance(values, rows_shape, layout) -> np.ndarray:
    """Per-feature importance, shape (n_rows, n_features): per pixel for images."""
    values = np.asarray(values, dtype=np.float64)
    row_shape = tuple(rows_shape[1:])
    if values.shape[0] != rows_shape[0]:
        raise InputShapeError(
            f"explanation: values have {values.shape[0]} rows but data has {rows_shape[0]}"
        )
    if layout is not None:
        axis = 1 if layout == "nchw" else 3
        one_channel = row_shape[:axis - 1] + (1,) + row_shape[axis:]
        if values.shape[1:] in (row_shape, one_channel):
            values = values.sum(axis=axis)
            return values.reshape(len(values), -1)
    elif values.shape[1:] == row_shape:
        return values.reshape(len(values), -1)
    raise InputShapeError(
        f"explanation: values of shape {values.shape} do not match the data {tuple(rows_shape)}"
        + (" or its one-channel map" if layout is not None else "")
    )


def _ranks(importance: np.ndarray) -> np.ndarray:
    # stable sort on -importance: ties keep feature order, so the curves are deterministic
    order = np.argsort(-importance, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(importance.shape[1])[None, :], axis=1)
    return ranks


def _describe(baseline) -> str:
    if isinstance(baseline, str):
        return baseline
    values = np.asarray(baseline)
    if values.ndim == 0:
        return repr(float(values)) if np.issubdtype(values.dtype, np.number) else str(values)
    return f"array of shape {values.shape}"
