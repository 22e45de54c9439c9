"""Token attributions as highlighted text: an HTML fragment, or a matplotlib figure.

Rows are token ids of shape (seq_len,), as :class:`agnostic_explain.LimeText` explains them;
each token is shaded red where it raises the target and blue where it lowers it, more
strongly the larger ``|attribution|`` is (scaled to the row's largest). Tokens are shown as
``extras["tokens"]`` when the explainer was given a vocabulary, else as the ``tokens``
mapping given here, else as their ids. Tokens of one word group share their word's value.
"""

from __future__ import annotations

import html

import numpy as np

from ..errors import ParameterError
from .image import new_figure
from .tabular import row_index, target_title

__all__ = ["text_figure", "text_html"]

_RED, _BLUE = (214, 39, 40), (31, 119, 208)
_MAX_ALPHA = 0.85  # the strongest token keeps its text readable on its background
_CMAP = "RdBu_r"


def text_html(explanation, index=0, *, tokens=None) -> str:
    """One row's tokens as a self-contained HTML fragment, each shaded by its attribution.

    The fragment uses inline styles only (no scripts, no classes, no external resources) and
    escapes every token, so it can be pasted into any page or notebook. Each token is one
    ``<span>`` whose ``title`` (the hover text) gives its attribution.

    Parameters
    ----------
    explanation : Explanation
        Rows of token ids, shape (seq_len,).
    index : int
        The row to show.
    tokens : sequence, dict or callable, optional
        Maps ids to strings: a list or dict indexed by id, or ``f(ids) -> list of str`` (a
        tokenizer's ``convert_ids_to_tokens``). By default ``extras["tokens"]`` when the
        explainer had a vocabulary, else the ids themselves.

    Returns
    -------
    str
        ``<div>`` holding a title line, the tokens, and a one-line legend.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> scores = np.array([0.0, 1.0, -1.0], dtype=np.float32)
    >>> model = ae.CallableModel(lambda ids: scores[ids].sum(axis=1, keepdims=True), dtype=np.int64)
    >>> explanation = ae.LimeText(model, mask_token_id=0, num_samples=200, alpha=0.0).explain(np.array([[1, 2]]), target=0)
    >>> fragment = text_html(explanation, tokens=["<pad>", "good", "<b>bad</b>"])
    >>> fragment.count("<span"), "&lt;b&gt;bad&lt;/b&gt;" in fragment
    (2, True)
    """
    values, strings = _token_row(explanation, index, tokens)
    limit = float(np.max(np.abs(values), initial=0.0)) or 1.0
    spans = []
    for string, value in zip(strings, values):
        red, green, blue = _RED if value > 0 else _BLUE
        alpha = _MAX_ALPHA * min(1.0, abs(float(value)) / limit)
        spans.append(
            f'<span title="{html.escape(f"{string}: {value:+.4g}", quote=True)}" style="background-color: '
            f"rgba({red}, {green}, {blue}, {alpha:.3f}); padding: 1px 3px; margin: 1px 1px; border-radius: 3px; "
            f'white-space: pre-wrap;">{html.escape(string, quote=True)}</span>'
        )
    title = html.escape(f"{explanation.method}: {target_title(explanation, index)}", quote=True)
    legend = html.escape(f"red raises the target, blue lowers it; the strongest |attribution| is {limit:.4g}")
    return (
        '<div style="font-family: sans-serif; font-size: 14px; line-height: 1.9; max-width: 60em;">'
        f'<div style="font-weight: bold; margin-bottom: 4px;">{title}</div>'
        f'<div>{" ".join(spans)}</div>'
        f'<div style="font-size: 11px; color: #666666; margin-top: 4px;">{legend}</div>'
        "</div>"
    )


def text_figure(explanation, index=0, *, tokens=None, ax=None, fontsize=11.0):
    """One row's tokens on a matplotlib axes: wrapped lines of boxes coloured by attribution.

    Box colours come from a diverging colormap (red positive, blue negative) symmetric about
    zero, shown in a colorbar below the text.

    Parameters
    ----------
    explanation : Explanation
        Rows of token ids, shape (seq_len,).
    index : int
        The row to draw.
    tokens : sequence, dict or callable, optional
        As for :func:`text_html`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; by default on a new headless Figure sized to hold the wrapped text. A
        given axes wraps to its own width (lines past its bottom are cut off).
    fontsize : float
        Size of the tokens, in points.

    Returns
    -------
    matplotlib.axes.Axes
        One text artist per token in ``ax.texts``, in order.

    Examples
    --------
    >>> import numpy as np
    >>> import agnostic_explain as ae
    >>> scores = np.array([0.0, 1.0, -1.0], dtype=np.float32)
    >>> model = ae.CallableModel(lambda ids: scores[ids].sum(axis=1, keepdims=True), dtype=np.int64)
    >>> explanation = ae.LimeText(model, mask_token_id=0, num_samples=200, alpha=0.0).explain(np.array([[1, 2, 1]]), target=0)
    >>> ax = text_figure(explanation, tokens={0: "<pad>", 1: "good", 2: "bad"})
    >>> [text.get_text() for text in ax.texts]
    ['good', 'bad', 'good']
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values, strings = _token_row(explanation, index, tokens)
    shown = [string if string.strip() else "\u2423" for string in strings]  # a visible blank
    limit = float(np.max(np.abs(values), initial=0.0)) or 1.0
    norm, cmap = Normalize(-limit, limit), colormaps[_CMAP]
    if ax is None:
        width = 8.0
        widths, line_height = _measure(shown, fontsize, 72.0)  # in points
        n_lines = len(_wrap(widths, line_height * 0.45, width * 72.0 * 0.97))
        ax = new_figure((width, 0.95 + n_lines * line_height / 72.0)).add_subplot()
    figure = ax.figure
    ax.set_axis_off()
    ax.set_title(f"{explanation.method}: {target_title(explanation, index)}", fontsize="medium")
    colorbar = figure.colorbar(ScalarMappable(norm, cmap), ax=ax, location="bottom", shrink=0.5, aspect=40,
                               pad=0.02)
    colorbar.set_label("attribution (signed)")
    figure.draw_without_rendering()  # settle the layout: the text wraps to the axes' final width
    box = ax.get_window_extent()
    widths, line_height = _measure(shown, fontsize, figure.dpi)  # in pixels
    pad = line_height * 0.1  # the boxes' padding, 0.2 of the font size on each side
    lines = _wrap(widths, line_height * 0.45, 0.98 * box.width - 2.0 * pad)
    for number, line in enumerate(lines):
        y = 1.0 - (number + 0.5) * line_height / box.height
        for position, x in line:
            colour = cmap(norm(values[position]))
            dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.5
            ax.text(
                (x + pad) / box.width, y, shown[position], transform=ax.transAxes, fontsize=fontsize,
                va="center", ha="left", color="white" if dark else "black",
                bbox={"boxstyle": "round,pad=0.2", "facecolor": colour, "edgecolor": "none"},
            )
    return ax


def _token_row(explanation, index, tokens) -> tuple[np.ndarray, list[str]]:
    """One row's attributions, shape (seq_len,), and its tokens as strings."""
    index = row_index(explanation, index)
    ids, values = np.asarray(explanation.data[index]), np.asarray(explanation.values[index], dtype=np.float64)
    if ids.ndim != 1 or values.shape != ids.shape or not np.issubdtype(ids.dtype, np.integer):
        raise ParameterError(
            f"text plots take rows of integer token ids of shape (seq_len,), got data {ids.dtype} {ids.shape} "
            f"and values {values.shape}"
        )
    if tokens is None:
        given = explanation.extras.get("tokens")
        if given is not None and np.shape(given) == np.shape(explanation.data):
            return values, [str(token) for token in np.asarray(given)[index]]
        return values, [str(int(i)) for i in ids]
    if callable(tokens):
        strings = [str(token) for token in tokens(ids.tolist())]
        if len(strings) != len(ids):
            raise ParameterError(f"tokens callable returned {len(strings)} strings for {len(ids)} token ids")
        return values, strings
    if isinstance(tokens, (str, bytes)):
        raise ParameterError("tokens must map ids to strings (a list, dict or callable), got a string")
    try:
        return values, [str(tokens[int(i)]) for i in ids]
    except (KeyError, IndexError, TypeError) as error:
        raise ParameterError(f"tokens has no string for token id {error}; expected a list, dict or callable") from None


def _measure(strings: list[str], fontsize: float, dpi: float) -> tuple[np.ndarray, float]:
    """Widths of the strings and the line height, in pixels at ``dpi`` (points when 72)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer, font = RendererAgg(1, 1, dpi), FontProperties(size=fontsize)
    widths = np.array([renderer.get_text_width_height_descent(s, font, ismath=False)[0] for s in strings])
    return widths, fontsize * 2.0 * dpi / 72.0


def _wrap(widths: np.ndarray, gap: float, line_width: float) -> list[list[tuple[int, float]]]:
    """Greedy line breaking: lines of ``(token position, left x)``; a token wider than a line gets its own."""
    lines, line, x = [], [], 0.0
    for position, width in enumerate(widths):
        if line and x + width > line_width:
            lines.append(line)
            line, x = [], 0.0
        line.append((position, x))
        x += width + gap
    return lines + [line] if line else lines
