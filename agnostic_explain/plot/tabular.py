"""Tabular attributions: one row's strongest features (bar, waterfall), or many rows (beeswarm).

Rows have shape (n_features,). Features are named by ``explanation.feature_names`` (the
model's metadata) and otherwise "feature i". When a KernelSHAP, Shapley sampling or
ablation explanation grouped features with a shared ``feature_mask``, :func:`bar` and
:func:`waterfall` draw one bar per group (every feature of a group carries the group's value
in ``values``, so summing features would count a group several times).
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .image import new_figure, target_text
from .targets import one_target

__all__ = ["bar", "beeswarm", "waterfall"]

POSITIVE, NEGATIVE = "#e8384f", "#1f77d0"  # raise / lower the target
_PROBABILITIES = ("softmax", "sigmoid")


def bar(explanation, index=0, *, ax=None, max_features=10):
    """Horizontal bars of one row's strongest attributions, the largest at the top.

    Features are ranked by ``|attribution|``; the ``max_features`` strongest get one bar each
    (red raises the target, blue lowers it), labelled "name = value" with the row's input
    value, and the rest are summed into one lighter "N other features" bar at the bottom.

    Parameters
    ----------
    explanation : Explanation
        Rows of shape (n_features,).
    index : int
        The row to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure (save it with ``ax.figure.savefig``).
    max_features : int
        Features drawn one by one.

    Returns
    -------
    matplotlib.axes.Axes
        Bars are ``ax.patches``, top to bottom; the title names the target and its score.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> model = ae.CallableModel(lambda x: x @ np.array([[1.0], [-2.0], [3.0]]), feature_names=["a", "b", "c"])
    >>> explanation = ae.KernelShap(model, background=np.zeros((1, 3))).explain(np.ones((1, 3)), target=0)
    >>> ax = bar(explanation)
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['c = 1', 'b = 1', 'a = 1']
    """
    contributions, labels = _contributions(explanation, index)
    shown, other, n_other = _top(contributions, _count(max_features, "max_features"))
    widths = list(contributions[shown]) + ([other] if n_other else [])
    names = [labels[j] for j in shown] + ([f"{n_other} other features"] if n_other else [])
    if ax is None:
        ax = new_figure((7.0, 0.9 + 0.36 * len(widths))).add_subplot()
    rows = np.arange(len(widths))[::-1]
    for position, width, is_other in zip(rows, widths, [False] * len(shown) + [True] * bool(n_other)):
        ax.barh(position, width, height=0.7, color=_sign_colour(width), alpha=0.45 if is_other else 1.0)
    _annotate(ax, rows, np.zeros(len(widths)), np.array(widths))
    ax.axvline(0.0, color="#555555", linewidth=0.8)
    ax.set_yticks(rows, names)
    ax.set_ylim(-0.6, len(widths) - 0.4)
    ax.set_xlabel(f"attribution ({explanation.method})")
    ax.set_title(target_title(explanation, index), fontsize="medium")
    _tidy(ax)
    return ax


def waterfall(explanation, index=0, *, ax=None, max_features=10):
    """SHAP's waterfall: how one row's attributions move the output from a start value to f(x).

    The bottom bar starts at the start value; each bar adds one feature's attribution
    (red up, blue down), the ``max_features`` strongest at the top and the rest summed in one
    "N other features" bar at the bottom, so the top bar ends at the explained output.

    - Additive methods (KernelSHAP, Shapley sampling: ``extras["expected_value"]`` is set):
      the start is that expected value ``E[f(X)]`` over the background (or ``f(baseline)``),
      and the bars end exactly at ``f(x) = base_values[index]``, since the values sum to
      ``f(x) - E[f(X)]``. With KernelSHAP's ``link="logit"`` everything is on the logit scale.
    - Other methods (occlusion, ablation, LIME, RISE ...) do not promise that the
      attributions add up to anything, so there is no expected value to start from. The bars
      are drawn backwards from ``f(x)``: the start is ``f(x) - sum(attributions)``, labelled
      "f(x) - sum" rather than ``E[f(X)]``, and the title says "not additive". For occlusion
      or ablation of a linear model this start is ``f(baseline)``; otherwise read the bars as
      ranked, signed effects and not as a decomposition.

    Parameters
    ----------
    explanation : Explanation
        Rows of shape (n_features,).
    index : int
        The row to draw.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure.
    max_features : int
        Features drawn one by one.

    Returns
    -------
    matplotlib.axes.Axes
        Bars are ``ax.patches``, bottom to top; the last one ends at f(x).

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> model = ae.CallableModel(lambda x: x @ np.array([[1.0], [-2.0], [3.0]]) + 0.5)
    >>> explanation = ae.KernelShap(model, background=np.zeros((1, 3))).explain(np.ones((1, 3)), target=0)
    >>> ax = waterfall(explanation)
    >>> top = ax.patches[-1]
    >>> round(float(top.get_x() + top.get_width()), 6), float(explanation.base_values[0])
    (2.5, 2.5)
    """
    contributions, labels = _contributions(explanation, index)
    start, end, start_label, end_label, additive = _endpoints(explanation, index, contributions)
    shown, other, n_other = _top(contributions, _count(max_features, "max_features"))
    # bottom to top: the rest first, then the shown features from the weakest to the strongest
    steps = ([other] if n_other else []) + list(contributions[shown][::-1])
    names = ([f"{n_other} other features"] if n_other else []) + [labels[j] for j in shown[::-1]]
    if ax is None:
        ax = new_figure((7.2, 1.4 + 0.38 * len(steps))).add_subplot()
    lefts = start + np.concatenate([[0.0], np.cumsum(steps)[:-1]])
    rows = np.arange(len(steps))
    for position, left, width in zip(rows, lefts, steps):
        ax.barh(position, width, left=left, height=0.65, color=_sign_colour(width))
        if position:  # a connector from the previous bar's end
            ax.plot([left, left], [position - 1 - 0.325, position + 0.325], color="#999999", linewidth=0.7, zorder=0)
    _annotate(ax, rows, lefts, np.array(steps))
    ax.axvline(start, color="#888888", linewidth=0.8, linestyle=":")
    ax.axvline(end, color="#888888", linewidth=0.8, linestyle=":")
    _tidy(ax, include=(start, end))
    middle = sum(ax.get_xlim()) / 2  # labels extend away from the nearer edge, so they stay inside
    ax.text(start, -0.75, f" {start_label} = {start:.4g} ", ha="left" if start < middle else "right", va="top",
            fontsize="small")
    ax.text(end, len(steps) - 0.45, f" {end_label} = {end:.4g} ", ha="left" if end < middle else "right",
            va="bottom", fontsize="small")
    ax.set_yticks(rows, names)
    ax.set_ylim(-1.45, len(steps) + 0.35)
    if explanation.params.get("link") == "logit":
        ax.set_xlabel("logit of the target probability")
    elif explanation.params.get("output_transform") in _PROBABILITIES:
        ax.set_xlabel("probability of the target")
    else:
        ax.set_xlabel("model output for the target")
    title = target_title(explanation, index)
    ax.set_title(title if additive else f"{title}\n{explanation.method}: not additive, start = f(x) - sum", fontsize="medium")
    return ax


def beeswarm(explanation, *, ax=None, max_features=20, target=None):
    """SHAP's summary plot: every row's attribution of each feature, coloured by its value.

    One line per feature, ordered by mean ``|attribution|`` over the rows (the strongest at
    the top); a point per row at its attribution (x), spread vertically where points crowd
    (a deterministic, seeded layout), coloured from blue (the feature's lowest value over the
    rows) to red (its highest). Features beyond ``max_features`` are summed per row into one
    gray "N other features" line at the bottom.

    A beeswarm explains one target: attributions towards different classes do not share a
    scale or a meaning. The title names it. Rows explained for different targets (as
    ``target="predicted"`` gives over rows of mixed classes) are refused unless ``target``
    picks the rows of one of them.

    Parameters
    ----------
    explanation : Explanation
        Rows of shape (n_features,); best with tens of rows or more.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure.
    max_features : int
        Features drawn one by one.
    target : int, str or tuple, optional
        Draw only the rows explained for this target: a class index, a class name, or a
        tuple for a multi-index target. Needed when the rows' targets differ.

    Returns
    -------
    matplotlib.axes.Axes
        One scatter collection per line, top to bottom, in ``ax.collections``.

    Raises
    ------
    ParameterError
        The rows explain several targets and ``target`` is None, or no row explains ``target``.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> model = ae.CallableModel(lambda x: x @ np.array([[1.0], [-2.0], [3.0]]))
    >>> rows = np.random.default_rng(0).normal(size=(30, 3))
    >>> explanation = ae.KernelShap(model, background=np.zeros((1, 3))).explain(rows, target=0)
    >>> ax = beeswarm(explanation)
    >>> [label.get_text() for label in ax.get_yticklabels()]
    ['feature 2', 'feature 1', 'feature 0']
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    explanation, described = one_target(explanation, target)
    values, data = _matrix(explanation.values, "values"), _matrix(explanation.data, "data")
    names = _names(explanation, values.shape[1])
    shown, _, n_other = _top(np.abs(values).mean(axis=0), _count(max_features, "max_features"))
    lines = [(values[:, j], _normalise(data[:, j]), names[j]) for j in shown]
    if n_other:
        rest = np.setdiff1d(np.arange(values.shape[1]), shown)
        lines.append((values[:, rest].sum(axis=1), None, f"{n_other} other features"))
    if ax is None:
        ax = new_figure((7.0, 1.2 + 0.4 * len(lines))).add_subplot()
    cmap = colormaps["coolwarm"]
    rng = np.random.default_rng(0)
    rows = np.arange(len(lines))[::-1]
    for position, (x, level, _) in zip(rows, lines):
        y = position + _swarm(x, rng)
        if level is None:
            ax.scatter(x, y, s=14, color="#9a9a9a", linewidths=0, alpha=0.85)
        else:
            # NaN levels (a constant or missing value) are drawn in the colormap's "bad" gray
            ax.scatter(x, y, s=14, c=level, cmap=cmap, vmin=0.0, vmax=1.0, linewidths=0, alpha=0.85,
                       plotnonfinite=True)
    ax.axvline(0.0, color="#555555", linewidth=0.8)
    ax.set_yticks(rows, [name for _, _, name in lines])
    ax.set_ylim(-0.6, len(lines) - 0.4)
    ax.set_xlabel(f"attribution ({explanation.method})")
    ax.set_title(f"{explanation.method} over {described}", fontsize="medium")
    colorbar = ax.figure.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, aspect=30, pad=0.02)
    colorbar.set_ticks([0.0, 1.0], labels=["low", "high"])
    colorbar.set_label("feature value (low..high)")
    colorbar.outline.set_visible(False)
    _tidy(ax)
    return ax


def target_title(explanation, index: int) -> str:
    """The row's target label and score, as the image plots write it: "malignant (p = 0.78)"."""
    return target_text(explanation[row_index(explanation, index)])


# -- helpers ----------------------------------------------------------------------------------
def row_index(explanation, index) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
        raise ParameterError(f"index must be an int row number, got {index!r}")
    if not -len(explanation) <= index < len(explanation):
        raise IndexError(f"row {index} is out of range for an explanation of {len(explanation)} rows")
    return int(index) % len(explanation)


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _matrix(array, name: str) -> np.ndarray:
    """All rows as (n_rows, n_features) float64; tabular plots refuse images and sequences."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise ParameterError(
            f"tabular plots take rows of shape (n_features,), got {name} of shape {array.shape}; "
            "use plot.image_overlay for images or plot.text_html for token sequences"
        )
    return array.astype(np.float64)


def _names(explanation, n_features: int) -> list[str]:
    names = explanation.feature_names
    if names is not None and len(names) == n_features:
        return [str(name) for name in names]
    return [f"feature {j}" for j in range(n_features)]


def _format(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.4g}"


def _contributions(explanation, index) -> tuple[np.ndarray, list[str]]:
    """One row's attributions and "name = value" labels: per group under a shared feature_mask."""
    index = row_index(explanation, index)
    values, data = _matrix(explanation.values, "values")[index], _matrix(explanation.data, "data")[index]
    names = _names(explanation, len(values))
    labels = [f"{name} = {_format(value)}" for name, value in zip(names, data)]
    mask, groups = explanation.extras.get("feature_mask"), explanation.extras.get("group_values")
    if mask is None or groups is None:
        return values, labels
    mask, groups = np.asarray(mask), np.asarray(groups, dtype=np.float64)
    if mask.shape != values.shape or groups.ndim != 2 or groups.shape[1] != mask.max() + 1:
        return values, labels
    if groups.shape[1] == len(values):  # one feature per group: the group values, unrounded
        return groups[index][mask], labels
    members = [np.flatnonzero(mask == group) for group in range(groups.shape[1])]
    grouped = [labels[m[0]] if len(m) == 1 else _group_label([names[j] for j in m]) for m in members]
    return groups[index], grouped


def _group_label(names: list[str]) -> str:
    return " + ".join(names) if len(names) <= 3 else f"{' + '.join(names[:2])} + {len(names) - 2} more"


def _top(scores: np.ndarray, count: int) -> tuple[np.ndarray, float, int]:
    """Indices of the ``count`` largest ``|scores|`` (strongest first), the rest's sum, its size."""
    order = np.argsort(-np.abs(scores), kind="stable")
    shown, rest = order[:count], order[count:]
    return shown, float(np.sum(scores[rest])), len(rest)


def _endpoints(explanation, index, contributions):
    """Start and end values of the waterfall, their labels, and whether the method is additive."""
    index = row_index(explanation, index)
    total = float(np.sum(contributions))
    expected = explanation.extras.get("expected_value")
    output = float(explanation.base_values[index])
    logit = explanation.params.get("link") == "logit"
    if expected is not None and np.ndim(expected) == 1 and len(expected) == len(explanation):
        start = float(expected[index])
        return start, start + total, ("E[logit f(X)]" if logit else "E[f(X)]"), ("logit f(x)" if logit else "f(x)"), True
    return output - total, output, "f(x) - sum", "f(x)", False


def _sign_colour(value: float) -> str:
    return POSITIVE if value >= 0 else NEGATIVE


def _annotate(ax, rows, lefts, widths) -> None:
    """Write each bar's signed value just past its end, outside the bar."""
    span = float(np.ptp(np.concatenate([lefts, lefts + widths]))) or 1.0
    # data units per inch of text: the axes gets at most ~60% of the figure once labels are laid out
    per_inch = 1.3 * span / (min(ax.get_position().width, 0.6) * ax.figure.get_figwidth())
    for position, left, width in zip(rows, lefts, widths):
        text = f"{width:+.3g}"
        if abs(width) > (len(text) * 0.075 + 0.1) * per_inch:  # room for the label inside, as shap
            ax.text(left + width / 2, position, text, va="center", ha="center", fontsize="small", color="white")
            continue
        offset = 0.01 * span if width >= 0 else -0.01 * span
        ax.text(left + width + offset, position, text, va="center", ha="left" if width >= 0 else "right",
                fontsize="small", color=_sign_colour(width))


def _tidy(ax, include=()) -> None:
    """Room for the value annotations on both sides; no top/right frame."""
    from matplotlib.ticker import MaxNLocator

    ax.relim()
    ax.autoscale_view(scalex=True, scaley=False)
    low, high = ax.get_xlim()
    low, high = min([low, *include]), max([high, *include])
    margin = 0.12 * ((high - low) or 1.0)
    ax.set_xlim(low - margin, high + margin)
    ax.xaxis.set_major_locator(MaxNLocator(6))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _normalise(column: np.ndarray) -> np.ndarray:
    """Values scaled to [0, 1] over the rows; NaN where the column is constant or missing."""
    finite = np.isfinite(column)
    if not finite.any():
        return np.full(len(column), np.nan)
    low, high = column[finite].min(), column[finite].max()
    if high <= low:
        return np.where(finite, 0.5, np.nan)
    return np.where(finite, (column - low) / (high - low), np.nan)


def _swarm(x: np.ndarray, rng: np.random.Generator, width: float = 0.4, n_bins: int = 100) -> np.ndarray:
    """Vertical offsets that stack points sharing an x bin: 0, +1, -1, +2, ... scaled to ``width``.

    The order within a bin is shuffled by ``rng`` so that colours mix instead of sorting by row.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0)
    span = float(np.ptp(x))
    bins = np.round((x - x.min()) / span * n_bins) if span > 0 else np.zeros(n)
    shuffled = rng.permutation(n)
    order = shuffled[np.argsort(bins[shuffled], kind="stable")]
    sorted_bins = bins[order]
    starts = np.flatnonzero(np.r_[True, sorted_bins[1:] != sorted_bins[:-1]])
    layer = np.empty(n)
    layer[order] = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    offset = np.ceil(layer / 2) * np.where(layer % 2 == 1, 1.0, -1.0)
    return offset * (width / max(1.0, float(np.abs(offset).max())))
