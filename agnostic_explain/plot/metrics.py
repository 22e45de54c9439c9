"""Metric figures: deletion and insertion curves, and the bars of a method comparison."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

__all__ = ["metric_bars", "metric_curves"]

_XLABELS = {
    "deletion": "fraction of features removed",
    "insertion": "fraction of features inserted",
}


def metric_curves(results, *, ax=None):
    """Draw deletion or insertion curves: the mean over rows, with a band of ± one std.

    Parameters
    ----------
    results : CurveResult or sequence of CurveResult
        From :func:`agnostic_explain.metrics.deletion` / ``insertion`` / ``random_curve``.
        The band is drawn when a result has more than one row.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure (save it with ``ax.figure.savefig``).

    Returns
    -------
    matplotlib.axes.Axes
        The legend gives each curve's method and mean AUC over rows.

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> from agnostic_explain.metrics.deletion import deletion
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:3])
    >>> ax = metric_curves(deletion(DEFAULT_MODEL_PATH, explanation, steps=8))
    >>> ax.get_xlabel()
    'fraction of features removed'
    """
    if hasattr(results, "scores"):
        results = [results]
    results = list(results)
    if not results or not all(hasattr(result, "scores") and hasattr(result, "fractions") for result in results):
        raise ParameterError(f"results must be one or more CurveResult, got {results!r}")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5.5, 4), layout="constrained").add_subplot()
    for result in results:
        scores = np.asarray(result.scores, dtype=np.float64)
        mean = scores.mean(axis=0)
        label = f"{result.method} ({result.kind} AUC {float(np.mean(result.auc)):.3f})"
        (line,) = ax.plot(result.fractions, mean, label=label, linewidth=1.8)
        if len(scores) > 1:
            spread = scores.std(axis=0)
            ax.fill_between(result.fractions, mean - spread, mean + spread, color=line.get_color(), alpha=0.2,
                            linewidth=0)
    kinds = sorted({result.kind for result in results}, key=list(_XLABELS).index)
    ax.set_xlabel(" / ".join(_XLABELS[kind] for kind in kinds) if len(kinds) > 1 else _XLABELS[kinds[0]])
    ax.set_ylabel("target score")
    ax.set_xlim(0.0, 1.0)
    baselines = sorted({result.baseline for result in results})
    rows = sorted({len(result.scores) for result in results})
    title = f"{' and '.join(kinds)} curve" + ("s" if len(results) > 1 else "")
    detail = f"baseline {', '.join(baselines)}"
    if rows != [1]:
        detail += f"; mean ± std over {rows[0] if len(rows) == 1 else 'the'} rows"
    ax.set_title(f"{title.capitalize()}\n{detail}", fontsize="medium")
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    return ax


def metric_bars(comparison, *, ax=None):
    """Grouped bars of a :func:`agnostic_explain.metrics.compare` result: one group per metric,
    one bar per method (the mean over rows), each metric's better direction in its label.

    Parameters
    ----------
    comparison : ComparisonResult
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> methods = {"occlusion": ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)),
    ...            "ablation_cam": ae.AblationCam(DEFAULT_MODEL_PATH)}
    >>> result = ae.metrics.compare(methods, DEFAULT_MODEL_PATH, images[:2], steps=4)
    >>> len(metric_bars(result).patches)
    4
    """
    from ..metrics.compare import HIGHER_IS_BETTER
    from .image import new_figure

    means = comparison.means()
    if means.size == 0:
        raise ParameterError("comparison: it holds no metric scores to draw")
    if ax is None:
        ax = new_figure((1.6 + 1.4 * len(comparison.metrics) * max(1, len(comparison.methods)) / 2, 3.2)).add_subplot()
    width = 0.8 / len(comparison.methods)
    positions = np.arange(len(comparison.metrics))
    for row, method in enumerate(comparison.methods):
        ax.bar(positions + (row - (len(comparison.methods) - 1) / 2) * width, means[row], width, label=method)
    ax.set_xticks(positions)
    ax.set_xticklabels([f"{metric}\n({'higher' if HIGHER_IS_BETTER[metric] else 'lower'} is better)"
                        for metric in comparison.metrics])
    ax.set_ylabel("mean over rows")
    ax.legend(fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return ax
