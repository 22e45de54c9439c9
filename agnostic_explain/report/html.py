"""One self-contained HTML report of one or several explanations.

The page needs nothing but itself: CSS is inline, figures are ``data:image/png;base64`` URIs,
there is no JavaScript, and no address outside the file is referenced, so it opens the same
offline, attached to an e-mail, or archived next to a model. Every string that comes from a
model or a user (names, labels, metadata, parameters) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from ..runtime import Model, load
from .summary import explanation_kind, summarize_explanation

__all__ = ["write_report"]

_PLOTTED_TABULAR_ROWS = 4  # bar and waterfall per row up to here; a beeswarm beyond
_BEESWARMS = 3  # at most this many targets get a beeswarm each
_SHOWN_NAMES = 6
_METADATA_CHARS = 160
# The browser itself refuses scripts and any load but inline styles and data: images, so a
# label that slipped through escaping still could not run or call out.
_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #1d2430; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d6dbe3; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #d6dbe3; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f1f3f7; font-weight: 600; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 0.95em; }
.cards { display: flex; flex-wrap: wrap; gap: 1.5em; }
.row { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; margin: 1em 0;
       padding-top: 0.8em; border-top: 1px solid #e6e9ef; }
.plots { display: flex; flex-wrap: wrap; gap: 0.8em; }
.plots img, .wide img { max-width: 100%; height: auto; }
.summary { flex: 1 1 320px; min-width: 280px; }
.stack { display: block; }
.stack .plots img { width: calc(50% - 0.4em); }
.summary p { margin: 0 0 0.6em; }
.method { font-weight: 600; }
.more, footer { color: #5b6472; font-size: 0.9em; }
footer { margin-top: 3em; border-top: 1px solid #d6dbe3; padding-top: 0.5em; }
"""


def write_report(explanations, path, *, title=None, model=None, max_rows=8, comparison=None) -> Path:
    """Write an HTML report of explanations: model cards, plots and plain-language summaries.

    Each explanation gets a card (input and output names and shapes, providers, method and
    parameters, model evaluations, time, names, preprocessing) and, row by row, its figures and
    a summary (:func:`~agnostic_explain.summary.summarize_explanation`). Image explanations of
    the same input rows are compared side by side; tabular rows get a bar chart and a
    waterfall (the first 4 rows) and a beeswarm when there are more; token rows are
    highlighted inline.

    Parameters
    ----------
    explanations : Explanation or sequence of Explanation
        Several methods and/or several inputs go in one report.
    path : str or Path
        The ``.html`` file to write (its folder must exist).
    title : str, optional
        By default names the methods.
    model : OnnxModel, str or Path, optional
        The explained model: its input and output specs and metadata (source framework,
        parity) are added. A path is loaded on the CPU.
    max_rows : int
        Rows shown per explanation; the rest are counted ("and N more rows").
    comparison : ComparisonResult, optional
        A :func:`agnostic_explain.metrics.compare` result, shown as a table and bar chart.

    Returns
    -------
    Path
        The file written (UTF-8).

    Examples
    --------
    >>> import tempfile, agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = write_report(explanation, Path(folder.name) / "report.html")
    >>> path.read_text(encoding="utf-8").count('src="data:image/png;base64,')
    2
    >>> folder.cleanup()
    """
    from ..explanation import Explanation

    items = [explanations] if isinstance(explanations, Explanation) else list(explanations)
    if not items or not all(isinstance(item, Explanation) for item in items):
        raise ParameterError(
            f"explanations: expected an Explanation or a non-empty list of them, got {type(explanations).__name__}"
        )
    if title is not None and not isinstance(title, str):
        raise ParameterError(f"title must be a str or None, got {title!r}")
    if not isinstance(max_rows, int) or isinstance(max_rows, bool) or max_rows < 1:
        raise ParameterError(f"max_rows must be a positive int, got {max_rows!r}")
    if model is not None and not isinstance(model, Model):
        model = load(model, providers="cpu")
    methods = list(dict.fromkeys(item.method for item in items))
    title = title or f"Explanation report: {', '.join(methods)}"
    parts = [f"<h1>{_e(title)}</h1>", f"<p class=\"more\">{len(items)} explanation(s) of "
             f"{sum(len(item) for item in items)} row(s) in all.</p>"]
    if model is not None:
        parts.append(_model_section(model))
    if comparison is not None:
        parts.append(_comparison_section(comparison))
    for number, group in enumerate(_groups(items), start=1):
        parts.append(_group_section(number, group, max_rows))
    from .._version import __version__

    parts.append(f"<footer>Generated by agnostic-explain {_e(__version__)}. Self-contained: no scripts, "
                 "no external resources.</footer>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_POLICY}\">\n"
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(parts) + "\n</body>\n</html>\n"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path


# -- grouping and sections -----------------------------------------------------------------
def _groups(items: list) -> list[list]:
    """Image explanations of the same rows share a section (and comparison figures)."""
    groups: list[list] = []
    for item in items:
        for group in groups:
            first = group[0]
            if (explanation_kind(item) == explanation_kind(first) == "image" and item.data.shape == first.data.shape
                    and item.values.shape == first.values.shape and np.array_equal(item.data, first.data)):
                group.append(item)
                break
        else:
            groups.append([item])
    return groups


def _group_section(number: int, group: list, max_rows: int) -> str:
    kind = explanation_kind(group[0])
    rows = len(group[0])
    names = _names(group)
    nouns = {"image": "image", "tabular": "tabular row", "text": "token sequence"}
    noun = nouns.get(kind, "row")
    heading = f"{number}. {' and '.join(names)} on {rows} {noun}{'s' if rows != 1 else ''}"
    parts = [f"<section>\n<h2>{_e(heading)}</h2>", "<div class=\"cards\">"]
    parts += [f"<div><h3>{_e(name)}</h3>{_card(item)}</div>" for name, item in zip(names, group)]
    parts.append("</div>")
    if kind == "tabular" and rows > _PLOTTED_TABULAR_ROWS:
        parts.append(_beeswarms(group[0], names[0]))
    for index in range(min(rows, max_rows)):
        plots = _row_plots(kind, group, names, index)
        summaries = "".join(
            f"<p><span class=\"method\">{_e(name)}:</span> {_e(summarize_explanation(item, index))}</p>"
            for name, item in zip(names, group)
        )
        summary = f"<div class=\"summary\"><h3>Row {index}</h3>{summaries}</div>"
        if kind == "image":  # square figures: the text beside them
            parts.append(f"<div class=\"row\"><div class=\"plots\">{plots}</div>{summary}</div>")
        else:  # wide figures and text: the summary above, the figures side by side below
            parts.append(f"<div class=\"row stack\">{summary}<div class=\"plots\">{plots}</div></div>")
    if rows > max_rows:
        parts.append(f"<p class=\"more\">... and {rows - max_rows} more row(s), not shown.</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _beeswarms(item, name: str) -> str:
    """A beeswarm per explained target (one explains one target), the most frequent first."""
    from ..plot.tabular import beeswarm
    from ..plot.targets import target_groups, target_label

    groups = sorted(target_groups(item).items(), key=lambda pair: -len(pair[1]))
    drawn = [(key, rows) for key, rows in groups if len(rows) > _PLOTTED_TABULAR_ROWS][:_BEESWARMS]
    parts = []
    for key, rows in drawn:
        what = f"all {len(rows)} rows" if key is None else f"{len(rows)} rows, {target_label(item, key)}"
        figure = beeswarm(item) if key is None else beeswarm(item, target=key)
        parts.append(f"<div class=\"wide\">{_img(figure, f'{name}: attributions over {what}')}</div>")
    left = len(groups) - len(drawn)
    if left:
        parts.append(f"<p class=\"more\">{left} other target(s) explained for fewer rows or beyond the first "
                     f"{_BEESWARMS}: no beeswarm (one explains one target).</p>")
    return "\n".join(parts)


def _row_plots(kind: str, group: list, names: list[str], index: int) -> str:
    if kind == "image":
        from ..plot.image import TOP_K  # the outline the CLI's heatmap.png draws too

        if len(group) > 1:
            from ..plot.compare import compare

            return _img(compare(group, index, names=names, top_k=TOP_K), f"row {index}: {', '.join(names)}")
        from ..plot.image import image_overlay

        return _img(image_overlay(group[0], index, top_k=TOP_K), f"row {index}: {names[0]} attribution")
    if kind == "tabular":
        if index >= _PLOTTED_TABULAR_ROWS:
            return ""
        from ..plot.tabular import bar, waterfall

        return (_img(bar(group[0], index), f"row {index}: {names[0]} attributions by feature")
                + _img(waterfall(group[0], index), f"row {index}: {names[0]} waterfall"))
    if kind == "text":
        from ..plot.text import text_html

        return f"<div>{text_html(group[0], index)}</div>"
    return ""


def _names(group: list) -> list[str]:
    """Method names, numbered where the same method appears twice."""
    counts: dict[str, int] = {}
    names = []
    for item in group:
        counts[item.method] = counts.get(item.method, 0) + 1
        names.append(item.method if counts[item.method] == 1 else f"{item.method} ({counts[item.method]})")
    return names


# -- cards ----------------------------------------------------------------------------------
def _card(item) -> str:
    """The facts of one explanation, as a two-column table."""
    targets = item.target_names or ([] if item.target is None else [str(t) for t in np.asarray(item.target).tolist()])
    extras = ", ".join(
        f"{key} {tuple(value.shape)}" if isinstance(value, np.ndarray) else key for key, value in item.extras.items()
    )
    rows = [
        ("method", item.method),
        ("parameters", _pre(item.params)),
        ("input", f"{item.input_name or '(unnamed)'}: data {_shape(item.data)} {np.asarray(item.data).dtype}"),
        ("output", item.output_name or "(unnamed)"),
        ("attributions", f"{_shape(item.values)} {np.asarray(item.values).dtype}"),
        ("targets", _listing(targets) if item.target is not None else "custom function of the outputs"),
        ("base values", _listing([f"{float(v):.4g}" for v in np.asarray(item.base_values).ravel()])),
        ("model evaluations", str(item.n_evals)),
        ("seconds", f"{item.seconds:.3f}"),
        ("providers", ", ".join(item.providers) or "(not recorded)"),
        ("class names", _names_cell(item.label_names)),
        ("feature names", _names_cell(item.feature_names)),
        ("preprocessing", _pre(item.preprocessing) if item.preprocessing else "(none)"),
        ("extras", extras or "(none)"),
    ]
    return _table(rows)


def _model_section(model) -> str:
    specs = "".join(
        f"<tr><td>{_e(role)}</td><td>{_e(spec.name)}</td><td>{_e(spec.dtype)}</td><td>{_e(spec.describe())}</td></tr>"
        for role, specs in (("input", model.inputs), ("output", model.outputs)) for spec in specs
    )
    metadata = dict(model.metadata or {})
    facts = []
    proto = model.proto
    if model.path is not None:
        facts.append(("file", str(model.path)))
    if proto is not None:
        producer = f"{proto.producer_name} {proto.producer_version}".strip() or "(not recorded)"
        opsets = ", ".join(f"{entry.domain or 'ai.onnx'} {entry.version}" for entry in proto.opset_import)
        facts += [("producer", producer), ("opset", f"{opsets} (IR version {proto.ir_version})"),
                  ("nodes", str(len(proto.graph.node)))]
    if "source_framework" in metadata:
        facts.append(("source framework",
                      f"{metadata['source_framework']} {metadata.get('source_framework_version', '')}".strip()))
    if "parity" in metadata:
        facts.append(("parity", _pre(_json_or_text(metadata["parity"]))))
    facts.append(("providers", ", ".join(model.providers) or "(not recorded)"))
    shown = {key: value for key, value in metadata.items()
             if key not in ("source_framework", "source_framework_version", "parity")}
    for key, value in sorted(shown.items()):
        names = _json_or_text(value)
        if key in ("class_names", "feature_names") and isinstance(names, list):
            facts.append((f"metadata: {key}", _names_cell(names)))
        else:
            text = value if len(value) <= _METADATA_CHARS else value[:_METADATA_CHARS] + " ..."
            facts.append((f"metadata: {key}", text))
    return ("<section>\n<h2>Model</h2>\n<table><tr><th></th><th>name</th><th>dtype</th><th>shape</th></tr>"
            f"{specs}</table>\n{_table(facts)}\n</section>")


# -- HTML pieces ------------------------------------------------------------------------------
class _Raw(str):
    """Markup built here from escaped pieces; _table does not escape it again."""


def _comparison_section(comparison) -> str:
    """The methods' mean metric scores as a table and a grouped bar chart."""
    from ..plot.metrics import metric_bars

    means = comparison.means()
    header = "".join(f"<th>{_e(name)}</th>" for name in ("method", *comparison.metrics, "seconds", "n_evals"))
    rows = "".join(
        "<tr>" + f"<th>{_e(method)}</th>" + "".join(f"<td>{value:.4f}</td>" for value in means[index])
        + f"<td>{comparison.seconds[index]:.3f}</td><td>{int(comparison.n_evals[index])}</td></tr>"
        for index, method in enumerate(comparison.methods)
    )
    return (f"<section>\n<h2>Comparison of methods</h2>\n<table><tr>{header}</tr>{rows}</table>\n"
            f"{_img(metric_bars(comparison), 'mean metric scores per method')}\n</section>")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th>{_e(label)}</th><td>{value if isinstance(value, _Raw) else _e(value)}</td></tr>" for label, value in rows
    )
    return f"<table>{cells}</table>"


def _pre(value) -> _Raw:
    return _Raw(f"<pre>{_e(json.dumps(value, sort_keys=True, default=str))}</pre>")


def _img(figure, alt: str) -> str:
    """A figure (or the figure of an Axes) as an inline PNG."""
    from matplotlib.figure import Figure

    while not isinstance(figure, Figure):  # an Axes, or a SubFigure: up to the root figure
        figure = figure.figure
    buffer = io.BytesIO()
    # No Software entry: matplotlib's default names its web address inside the PNG.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img src=\"data:image/png;base64,{encoded}\" alt=\"{_e(alt)}\">"


def _names_cell(names) -> str:
    if not names:
        return "(none)"
    return f"{len(names)}: {_listing([str(name) for name in names], _SHOWN_NAMES)}"


def _listing(items: list[str], shown: int = _SHOWN_NAMES) -> str:
    return ", ".join(items[:shown]) + (f", ... ({len(items)} in all)" if len(items) > shown else "")


def _shape(array) -> str:
    return str(tuple(np.shape(array)))


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text
