"""Dependence plots: partial dependence (the PD line over thin ICE curves, or a pair's heatmap), and a
feature's attribution against its value coloured by its strongest interaction."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .image import new_figure

__all__ = ["attribution_dependence", "partial_dependence_plot"]


def partial_dependence_plot(result, *, ax=None, ice=True, max_ice=50):
    """Draw a :class:`~agnostic_explain.partial_dependence.PartialDependence`.

    One feature: the partial dependence as a thick line over up to ``max_ice`` thin,
    translucent ICE curves (an evenly spaced, hence deterministic, subset of the rows), with
    a rug of the feature's deciles in ``X`` along the bottom. A pair: a heatmap of the partial dependence
    over the two grids, with contour lines and a colorbar.

    Parameters
    ----------
    result : PartialDependence
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure (save it with ``ax.figure.savefig``).
    ice : bool
        Draw ICE curves (one feature, when the result kept them).
    max_ice : int
        The most ICE curves drawn.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(max_ice, bool) or not isinstance(max_ice, int) or max_ice < 0:
        raise ParameterError(f"max_ice must be an int >= 0, got {max_ice!r}")
    if ax is None:
        ax = new_figure((6.0, 4.5) if len(result.features) == 1 else (6.5, 5.0)).add_subplot()
    average = result.average if result.average is not None else result.individual.mean(axis=0)
    label = "target" if result.target is None else f"target {result.target}"
    if len(result.features) == 1:
        _draw_line(ax, result, average, label, ice, max_ice)
    else:
        _draw_pair(ax, result, average, label)
    ax.set_title(f"Partial dependence of {result.output!r} ({label})", fontsize=10)
    return ax


def _draw_line(ax, result, average, label, ice, max_ice):
    grid = result.grid_values[0]
    if ice and result.individual is not None and max_ice > 0:
        n_rows = len(result.individual)
        picked = np.unique(np.linspace(0, n_rows - 1, num=min(max_ice, n_rows)).round().astype(int))
        for curve in result.individual[picked]:
            ax.plot(grid, curve, color="tab:blue", alpha=0.2, linewidth=0.7)
        ax.plot([], [], color="tab:blue", alpha=0.4, linewidth=0.7, label=f"ICE ({len(picked)} of {n_rows} rows)")
    ax.plot(grid, average, color="tab:orange", linewidth=2.5, label="partial dependence")
    low, high = ax.get_ylim()
    ax.vlines(result.deciles[0], low, low + 0.04 * (high - low), color="black", linewidth=1.0)
    ax.set_ylim(low, high)
    ax.set_xlabel(result.feature_names[0])
    ax.set_ylabel(f"{result.output} ({label})")
    ax.legend(loc="best", fontsize=8, frameon=False)


def _draw_pair(ax, result, average, label):
    first, second = result.grid_values
    mesh = ax.pcolormesh(second, first, average, shading="nearest", cmap="viridis")
    if len(first) > 1 and len(second) > 1 and np.ptp(average) > 0:
        lines = ax.contour(second, first, average, levels=6, colors="white", linewidths=0.6)
        ax.clabel(lines, fontsize=7, fmt="%.3g")
    ax.figure.colorbar(mesh, ax=ax, label=f"{result.output} ({label})")
    ax.plot(result.deciles[1], np.full(9, first[0]), "|", color="black", markersize=8)
    ax.plot(np.full(9, second[0]), result.deciles[0], "_", color="black", markersize=8)
    ax.set_xlabel(result.feature_names[1])
    ax.set_ylabel(result.feature_names[0])


def attribution_dependence(explanation, feature, *, color="auto", ax=None):
    """A feature's attribution against its value, one dot per row, coloured by another feature.

    With SHAP interaction values (``TreeShap(...).explain(x, interactions=True)``), ``"auto"``
    colours by the feature whose interaction with ``feature`` is strongest (the largest mean
    absolute interaction value), as shap's ``dependence_plot`` does with exact interactions;
    without them, the dots are not coloured.

    Parameters
    ----------
    explanation : Explanation
        Tabular rows, values of shape (n_rows, n_features).
    feature : int or str
        Column index, or a feature name.
    color : "auto", int, str or None
        The feature whose value colours the dots; None for none.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, agnostic_explain as ae
    >>> data = np.random.default_rng(0).normal(size=(30, 3))
    >>> values = data * [1.0, 0.5, 0.0]
    >>> pairs = np.zeros((30, 3, 3)); pairs[:, 0, 1] = pairs[:, 1, 0] = data[:, 0] * data[:, 1]
    >>> explanation = ae.Explanation(values=values, base_values=np.zeros(30), data=data, target=None,
    ...                              method="tree_shap", extras={"interactions": pairs})
    >>> attribution_dependence(explanation, 0).get_ylabel()
    'attribution of x0'
    """
    values, data = np.asarray(explanation.values, dtype=np.float64), np.asarray(explanation.data, dtype=np.float64)
    if values.ndim != 2 or data.shape != values.shape:
        raise ParameterError(f"attribution_dependence takes tabular rows (n_rows, n_features), got values {values.shape}")
    names = list(explanation.feature_names or [f"x{i}" for i in range(values.shape[1])])
    column = _column(feature, names, "feature")
    interactions = explanation.extras.get("interactions")
    if isinstance(color, str) and color == "auto":
        colour = None
        if interactions is not None and np.shape(interactions) == values.shape + (values.shape[1],):
            strength = np.abs(np.asarray(interactions, dtype=np.float64)[:, column, :]).mean(axis=0)
            strength[column] = -1.0
            colour = int(np.argmax(strength)) if values.shape[1] > 1 else None
    else:
        colour = None if color is None else _column(color, names, "color")
    ax = ax if ax is not None else new_figure((5.5, 4.0)).add_subplot()
    if colour is None:
        ax.scatter(data[:, column], values[:, column], s=12, color="#1f77b4")
    else:
        points = ax.scatter(data[:, column], values[:, column], s=12, c=data[:, colour], cmap="coolwarm")
        ax.figure.colorbar(points, ax=ax, label=f"value of {names[colour]}")
    ax.axhline(0.0, color="0.6", linewidth=0.8)
    ax.set_xlabel(f"value of {names[column]}")
    ax.set_ylabel(f"attribution of {names[column]}")
    strongest = " (its strongest interaction)" if colour is not None and color == "auto" else ""
    ax.set_title(f"{explanation.method}: {names[column]}" + (f", coloured by {names[colour]}{strongest}" if colour is not None else ""),
                 fontsize="medium")
    return ax


def _column(feature, names: list[str], parameter: str) -> int:
    if isinstance(feature, str):
        if feature not in names:
            raise ParameterError(f"{parameter}: no feature {feature!r}; features are {names[:12]}")
        return names.index(feature)
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= feature < len(names):
        raise ParameterError(f"{parameter} must be a feature name or an index in 0..{len(names) - 1}, got {feature!r}")
    return int(feature)
