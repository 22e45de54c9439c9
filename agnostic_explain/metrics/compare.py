"""``compare``: several explainers on the same rows, scored by the same metrics, in one table."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..tables import text_table
from .localisation import pointing_game, relevance_mass
from .sanity import fixed_target

__all__ = ["ComparisonResult", "compare"]

#: whether a higher score is better, per metric
HIGHER_IS_BETTER = {"deletion": False, "insertion": True, "pointing_game": True, "relevance_mass": True}
_LOCALISATION = ("pointing_game", "relevance_mass")


@dataclass(frozen=True, eq=False)
class ComparisonResult:
    """Per-method scores of a :func:`compare` run.

    Attributes
    ----------
    methods : tuple of str
        The names given, in order.
    metrics : tuple of str
    scores : dict of str to ndarray of shape (n_methods, n_rows)
        Each metric's per-row score: the area under the curve for deletion and insertion,
        1.0 or 0.0 for a pointing-game hit, the share of positive relevance in the mask.
    seconds : ndarray of shape (n_methods,)
        Wall time of each explanation (metrics not included).
    n_evals : ndarray of shape (n_methods,)
        Model rows each explanation evaluated.
    explanations : dict of str to Explanation
        For plotting them side by side (:func:`agnostic_explain.plot.compare`).
    """

    methods: tuple
    metrics: tuple
    scores: dict
    seconds: np.ndarray
    n_evals: np.ndarray
    explanations: dict

    def means(self) -> np.ndarray:
        """Mean over rows of each metric, shape (n_methods, n_metrics); NaN rows are skipped."""
        columns = [np.nanmean(self.scores[metric], axis=1) if self.scores[metric].size else
                   np.full(len(self.methods), np.nan) for metric in self.metrics]
        return np.stack(columns, axis=1) if columns else np.zeros((len(self.methods), 0))

    def to_dict(self) -> dict:
        """``{method: {metric: mean, ..., "seconds": s, "n_evals": n}}``, JSON-serialisable."""
        means = self.means()
        return {
            name: {**{metric: float(means[row, column]) for column, metric in enumerate(self.metrics)},
                   "seconds": float(self.seconds[row]), "n_evals": int(self.n_evals[row])}
            for row, name in enumerate(self.methods)
        }

    def __str__(self) -> str:
        means = self.means()
        header = ("method", *self.metrics, "seconds", "n_evals")
        rows = [header] + [
            (name, *(f"{value:.4f}" for value in means[row]), f"{self.seconds[row]:.3f}", str(int(self.n_evals[row])))
            for row, name in enumerate(self.methods)
        ]
        lines = text_table(rows, right=set(range(1, len(header))))
        higher = [metric for metric in self.metrics if HIGHER_IS_BETTER[metric]]
        lower = [metric for metric in self.metrics if not HIGHER_IS_BETTER[metric]]
        notes = ([f"higher is better: {', '.join(higher)}"] if higher else []) + (
            [f"lower is better: {', '.join(lower)}"] if lower else [])
        return "\n".join(lines + (["; ".join(notes)] if notes else []))

    def __repr__(self) -> str:
        return f"ComparisonResult(methods={list(self.methods)}, metrics={list(self.metrics)})"


def compare(methods: dict, model, x, *, metrics=("deletion", "insertion"), target="predicted",
            boxes_or_masks=None, tolerance=0, steps=20, deletion_baseline=0.0, insertion_baseline="blur",
            random_state=0, explain_kwargs=None, progress=None) -> ComparisonResult:
    """Explain ``x`` with each method and score every explanation with the same metrics.

    Parameters
    ----------
    methods : dict of str to Explainer
        Explainers of ``model``, by the name to show.
    model : str, bytes, onnx.ModelProto, Model or callable
        The explained model (the metrics run it).
    x : array_like of shape (n_rows, ...)
    metrics : sequence of {"deletion", "insertion", "pointing_game", "relevance_mass"}
        Deletion and insertion report the area under the curve
        (:func:`~agnostic_explain.metrics.deletion`); the localisation metrics need
        ``boxes_or_masks``.
    target : as for ``explain``, default "predicted"
        Resolved by the first method; all methods explain the same classes.
    boxes_or_masks : array_like, optional
        Object boxes or masks, see :func:`~agnostic_explain.metrics.pointing_game`.
    tolerance : float, default 0
        Pixels of slack for the pointing game.
    steps : int, default 20
        Steps of the deletion and insertion curves.
    deletion_baseline, insertion_baseline
        The replacement values of the two curves (see ``deletion`` and ``insertion``).
    random_state : int, optional
        Seed given to every explainer.
    explain_kwargs : dict, optional
        Further arguments of ``explain`` (``output``, ``input``, ``fixed_inputs``, ``output_transform``).
    progress : bool, optional

    Returns
    -------
    ComparisonResult
        ``str(result)`` is an aligned table of metric means, seconds and model evaluations.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> result = compare({"occlusion 2x2": ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)),
    ...                   "occlusion 4x4": ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 4, 4))},
    ...                  DEFAULT_MODEL_PATH, images[:2], steps=8)
    >>> sorted(result.to_dict()["occlusion 2x2"])
    ['deletion', 'insertion', 'n_evals', 'seconds']
    """
    if not isinstance(methods, dict) or not methods:
        raise ParameterError(f"methods must be a non-empty dict of name -> explainer, got {type(methods).__name__}")
    for name, explainer in methods.items():
        if not callable(getattr(explainer, "explain", None)):
            raise ParameterError(f"methods[{name!r}]: expected an explainer with an explain method, got "
                                 f"{type(explainer).__name__}")
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [metric for metric in metrics if metric not in HIGHER_IS_BETTER]
    if unknown:
        raise ParameterError(f"metrics: {unknown} unknown; choose from {sorted(HIGHER_IS_BETTER)}")
    if boxes_or_masks is None and any(metric in _LOCALISATION for metric in metrics):
        raise ParameterError("boxes_or_masks is required for the metrics pointing_game and relevance_mass")
    kwargs = dict(explain_kwargs or {})
    if "target" in kwargs or "random_state" in kwargs:
        raise ParameterError("explain_kwargs: pass target and random_state as arguments of compare")
    fixed_inputs = kwargs.get("fixed_inputs")
    explanations, seconds, n_evals = {}, [], []
    for name, explainer in methods.items():
        started = time.perf_counter()
        explanation = explainer.explain(x, target=target, random_state=random_state, **kwargs)
        seconds.append(time.perf_counter() - started)
        n_evals.append(explanation.n_evals)
        explanations[name] = explanation
        if len(explanations) == 1:
            target = fixed_target(explanation, target)
    scores = {metric: np.stack([
        _score(metric, model, explanation, steps=steps, deletion_baseline=deletion_baseline,
               insertion_baseline=insertion_baseline, boxes_or_masks=boxes_or_masks, tolerance=tolerance,
               fixed_inputs=fixed_inputs, progress=progress)
        for explanation in explanations.values()
    ]) for metric in metrics}
    return ComparisonResult(
        methods=tuple(methods), metrics=metrics, scores=scores, seconds=np.asarray(seconds),
        n_evals=np.asarray(n_evals, dtype=np.int64), explanations=explanations,
    )


def _score(metric, model, explanation, *, steps, deletion_baseline, insertion_baseline, boxes_or_masks,
           tolerance, fixed_inputs, progress) -> np.ndarray:
    """Per-row scores of one metric, shape (n_rows,)."""
    if metric == "pointing_game":
        return pointing_game(explanation, boxes_or_masks, tolerance=tolerance).hits.astype(np.float64)
    if metric == "relevance_mass":
        return relevance_mass(explanation, boxes_or_masks)
    from .deletion import deletion, insertion

    run = deletion if metric == "deletion" else insertion
    baseline = deletion_baseline if metric == "deletion" else insertion_baseline
    result = run(model, explanation, steps=steps, baseline=baseline, fixed_inputs=fixed_inputs, progress=progress)
    return np.asarray(result.auc, dtype=np.float64)
