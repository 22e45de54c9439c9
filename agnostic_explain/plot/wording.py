"""One wording for plots, reports and summaries: how a score and a value are written."""

from __future__ import annotations

import numpy as np

__all__ = ["format_value", "score_text", "target_text"]

_PROBABILITY = ("softmax", "sigmoid")


def score_text(row) -> str:
    """The target's score at the unperturbed input: ``p = 0.78``, ``logit 9.23`` or ``score 3.1``.

    "p" after a softmax or sigmoid, "probability" from an output named so (converted
    classifiers), "logit" from a raw output with class names or named so, else "score": a
    regression or an unnamed output is not called a logit.
    """
    score = float(row.base_values[0])
    if row.params.get("output_transform") in _PROBABILITY:
        if score > 0.9995:
            return "p > 0.999"
        return f"p = {score:.3f}" if score >= 0.995 else (f"p = {score:.2f}" if score >= 0.01 else f"p = {score:.2g}")
    output = str(row.output_name).lower()
    if "prob" in output:
        return f"probability {format_value(score)}"
    logit = "logit" in output or (row.label_names is not None and row.target is not None and row.target.ndim == 1)
    return f"{'logit' if logit else 'score'} {format_value(score)}"


def format_value(x) -> str:
    """A number as the plots and summaries write it: integers whole, others to 4 significant digits."""
    if isinstance(x, (str, np.str_)):
        return str(x)
    if isinstance(x, (bool, np.bool_)) or (isinstance(x, (int, np.integer))):
        return str(int(x))
    text = f"{float(x):.4g}"
    return "0" if text == "-0" else text



def target_text(row) -> str:
    """The target's label name and its score at the input, e.g. "tiger cat (p = 0.38)"."""
    names = row.target_names
    if names:
        label = names[0]
    elif row.target is not None:
        label = str(np.asarray(row.target[0]).tolist())
    else:
        label = "custom target"
    return f"{label} ({score_text(row)})"
