"""Plain-language summaries of an explanation, written from its numbers only.

Every sentence states a quantity read off the :class:`~agnostic_explain.Explanation`
(attribution shares, signed values, the target's score, the cost of the method). Nothing is
random, and nothing says that a feature *causes* an outcome: an attribution describes how the
model's score responds under the method's perturbations, not how the world works.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..errors import ParameterError
from ..layout import heat_map
from ..plot.scale import SALIENCY_METHODS
from ..plot.wording import format_value, score_text

__all__ = ["explanation_kind", "summarize_explanation"]

_TOP_FEATURES = 5
_TOP_SHARE = 0.10  # concentration: the share of positive mass in the strongest 10% of pixels
_QUADRANTS = ("upper-left", "upper-right", "lower-left", "lower-right")
_PROBABILITY = ("softmax", "sigmoid")
_QUIET_PARAMS = {"output_transform", "layer", "layer_chosen_automatically"}  # said elsewhere


def summarize_explanation(explanation, index=0) -> str:
    """Describe one row of an explanation in a few plain sentences.

    Images: the explained class and its score, where the positive attribution lies
    (the quarter or the centre of the image holding most of it) and how concentrated it is
    (the share held by the strongest 10% of pixels). Tabular rows: the five features with the
    largest absolute attributions, their values and signs, and their share of the total.
    Token rows: the tokens with the largest absolute attributions. Layer methods name the
    layer. The last sentence gives the method, the model evaluations and the time.

    What a sum of attributions means depends on the method, and the summary says so.
    Completeness (the attributions add up to the score minus the expected score over the
    background) is stated only where the numbers show it: KernelSHAP, Shapley sampling and
    other methods that record ``extras["expected_value"]``. Saliency maps (RISE, the CAMs)
    rank pixels and get no sum at all; for other methods (occlusion, feature ablation,
    LIME) the sums are given with a note that they need not add up to the score.

    Parameters
    ----------
    explanation : Explanation
    index : int
        The row to describe.

    Returns
    -------
    str

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> values = np.zeros((1, 4, 4)); values[0, :2, :2] = 1.0
    >>> explanation = ae.Explanation(values=values, base_values=np.array([0.8]), data=np.zeros((1, 4, 4)),
    ...                              target=np.array([0]), method="occlusion", label_names=("cat",),
    ...                              params={"output_transform": "softmax"}, n_evals=17, seconds=0.01)
    >>> print(summarize_explanation(explanation))  # doctest: +NORMALIZE_WHITESPACE
    The model predicts 'cat' (p = 0.80). 100% of the positive attribution lies in the upper-left
    quarter of the image. The strongest 10% of pixels (2 of 16) hold 50% of the positive
    attribution; an even spread would give 12%. Positive attributions sum to 4 and negative ones to 0;
    occlusion does not split the score into attributions, so these sums need not add up to it.
    Computed with occlusion: 17 model evaluations for 1 row in 0.010 s.
    """
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise ParameterError(f"index must be an int, got {index!r}")
    row = explanation[index]
    values = np.asarray(row.values[0], dtype=np.float64)
    kind = explanation_kind(explanation)
    sentences = [_target_sentence(row)]
    if "layer" in explanation.params:
        how = " (chosen automatically)" if explanation.params.get("layer_chosen_automatically") else ""
        sentences.append(f"The method works on layer '{explanation.params['layer']}'{how}, mapped back to the input.")
    if not np.all(np.isfinite(values)):
        sentences.append("Some attributions are not finite, so no shares are given.")
    elif kind == "image":
        sentences += _image_sentences(row)
    elif kind == "tabular":
        names = explanation.feature_names or [f"feature {j}" for j in range(values.size)]
        labels = [f"{name} = {format_value(x)}" for name, x in zip(names, np.asarray(row.data[0]).ravel())]
        sentences += _ranking_sentences(values, labels, "features", row)
    elif kind == "text":
        sentences += _ranking_sentences(values, _token_labels(row), "tokens", row)
    else:
        sentences.append(_sum_sentence(row, values))
    sentences.append(_method_sentence(explanation))
    return " ".join(sentences)


def explanation_kind(explanation) -> str:
    """``"image"``, ``"tabular"``, ``"text"`` or ``"other"``, from the rows' rank and dtype.

    Rows of rank 2 or 3 are images. Rank-1 rows are text when the explainer stored
    ``extras["tokens"]`` or when they hold integer ids without feature names, else tabular.
    """
    rank = explanation.values.ndim - 1
    if rank == 1:
        integer_ids = np.issubdtype(np.asarray(explanation.data).dtype, np.integer) and not explanation.feature_names
        return "text" if "tokens" in explanation.extras or integer_ids else "tabular"
    return "image" if rank in (2, 3) else "other"


def _target_sentence(row) -> str:
    score = score_text(row)
    if row.target is None:
        return f"The explained target is a custom function of the outputs ({score})."
    names = row.target_names
    label = names[0] if names else str(np.asarray(row.target[0]).tolist())
    # Only a softmax probability above one half proves the class is the predicted one.
    if row.params.get("output_transform") == "softmax" and float(row.base_values[0]) > 0.5:
        return f"The model predicts '{label}' ({score})."
    if names:
        return f"The explained class is '{label}' ({score})."
    return f"The explained output is column {label} ({score})."


# -- images -------------------------------------------------------------------------------
def _image_sentences(row) -> list[str]:
    heat = heat_map(row)  # the (H, W) map the overlay draws
    positive = np.clip(heat, 0.0, None)
    mass = float(positive.sum())
    if row.method in SALIENCY_METHODS:  # no meaningful zero: rank the pixels, say nothing of signs or sums
        return _saliency_sentences(row, heat)
    if mass <= 0.0:
        return ["No pixel has a positive attribution.", _sum_sentence(row, heat)]
    shares = quadrant_shares(positive)
    centre = centre_share(positive)
    best = max(range(4), key=lambda q: shares[q])  # first of equals: deterministic
    if max(shares[best], centre) >= 0.5:
        where = (f"{_percent(centre)} of the positive attribution lies in the central quarter of the image "
                 "(the middle half of its height and width)." if centre > shares[best] else
                 f"{_percent(shares[best])} of the positive attribution lies in the {_QUADRANTS[best]} quarter of the image.")
    else:
        order = sorted(range(4), key=lambda q: -shares[q])
        where = "The positive attribution is spread over the image: " + ", ".join(
            f"{_QUADRANTS[q]} {_percent(shares[q])}" for q in order) + "."
    n = positive.size
    k = max(1, math.ceil(_TOP_SHARE * n))
    top = float(np.sort(positive.ravel())[::-1][:k].sum()) / mass
    concentration = (f"The strongest 10% of pixels ({k} of {n}) hold {_percent(top)} of the positive attribution; "
                     f"an even spread would give {_percent(k / n)}.")
    return [where, concentration, _sum_sentence(row, heat)]


def _saliency_sentences(row, heat: np.ndarray) -> list[str]:
    """Where the highest tenth of a saliency map lies; saliency ranks pixels, so no signs or sums."""
    n = heat.size
    k = max(1, math.ceil(_TOP_SHARE * n))
    top = np.zeros(n)
    top[np.argsort(-heat.ravel(), kind="stable")[:k]] = 1.0
    top = top.reshape(heat.shape)
    shares, centre = quadrant_shares(top), centre_share(top)
    best = max(range(4), key=lambda q: shares[q])
    place = ("the central quarter of the image" if centre >= shares[best] else f"the {_QUADRANTS[best]} quarter")
    share = max(centre, shares[best])
    where = (f"The saliency ranges from {format_value(float(heat.min()))} to {format_value(float(heat.max()))}; "
             f"{_percent(share)} of its highest 10% of pixels ({k} of {n}) lie in {place}.")
    return [where, f"{row.method} saliency ranks the pixels: its values are not a split of the score and are not summed here."]


def quadrant_shares(positive: np.ndarray) -> list[float]:
    """Shares of a non-negative (H, W) map in the upper-left, upper-right, lower-left, lower-right quarters.

    The middle row or column of an odd size counts half to each side, so the shares sum to 1.
    """
    up, left = _half_weights(positive.shape[0]), _half_weights(positive.shape[1])
    total = float(positive.sum())
    return [float(np.einsum("i,ij,j->", rows, positive, cols)) / total
            for rows in (up, 1 - up) for cols in (left, 1 - left)]


def centre_share(positive: np.ndarray) -> float:
    """Share of a non-negative (H, W) map in the central box spanning the middle half of each side."""
    rows, cols = _middle_weights(positive.shape[0]), _middle_weights(positive.shape[1])
    return float(np.einsum("i,ij,j->", rows, positive, cols)) / float(positive.sum())


def _half_weights(size: int) -> np.ndarray:
    """How much of each pixel [i, i+1) lies in the first half [0, size/2)."""
    return np.clip(size / 2 - np.arange(size), 0.0, 1.0)


def _middle_weights(size: int) -> np.ndarray:
    start = np.arange(size, dtype=np.float64)
    return np.clip(np.minimum(start + 1, 0.75 * size) - np.maximum(start, 0.25 * size), 0.0, 1.0)


# -- features and tokens ---------------------------------------------------------------------
def _ranking_sentences(values: np.ndarray, labels: list[str], noun: str, row) -> list[str]:
    values = values.ravel()
    magnitude = np.abs(values)
    total = float(magnitude.sum())
    if total == 0.0:
        return [f"All {values.size} {noun} have zero attribution."]
    order = [j for j in np.argsort(-magnitude, kind="stable")[:_TOP_FEATURES] if magnitude[j] > 0]
    listing = ", ".join(f"{labels[j]} ({_signed(values[j])})" for j in order)
    if len(order) == values.size:
        sentences = [f"All {values.size} {noun}, by absolute attribution: {listing}."]
    else:
        share = float(magnitude[order].sum()) / total
        sentences = [f"The {len(order)} {noun} with the largest absolute attributions are {listing}; together they "
                     f"hold {_percent(share)} of the total absolute attribution over {values.size} {noun}."]
    sentences.append("Positive values go with a higher score for the explained output, negative ones with a lower score.")
    complete = _completeness_sentence(row, values)
    if complete:
        sentences.append(complete)
    return sentences


def _completeness_sentence(row, values: np.ndarray) -> str | None:
    """Completeness, where the numbers show it: the attributions add up to the score minus the expected value.

    Checked on the recorded ``expected_value``; with a grouping mask on the group values (each
    pixel of a group carries the group's value, so a sum over pixels would count it many times).
    """
    expected = row.extras.get("expected_value")
    if expected is None or np.size(expected) != 1:  # a scalar, or this row's entry of a per-row array
        return None
    groups = row.extras.get("group_values")
    grouped = groups is not None and np.ndim(groups) == 2 and len(groups) == 1 and np.size(groups) != values.size
    summed = float(np.sum(groups)) if grouped else float(values.sum())
    expected, score = float(np.ravel(expected)[0]), float(row.base_values[0])
    if not math.isclose(expected + summed, score, rel_tol=1e-3, abs_tol=1e-3 * max(1.0, abs(score))):
        return None
    what = f"the attributions of the {np.size(groups)} feature groups" if grouped else "the attributions"
    return (f"From the expected value {format_value(expected)} over the background, {what} "
            f"(sum {_signed(summed)}) add up to the score {format_value(score)}.")


def _sum_sentence(row, values: np.ndarray) -> str:
    """The signed sums, and what they mean for this method: completeness where it holds, else a caution."""
    complete = _completeness_sentence(row, values)
    if complete:
        return complete
    sums = _sign_sentence(values)[:-1]
    if row.extras.get("expected_value") is not None:  # a method with completeness whose numbers do not show it here
        return sums + "."
    if row.method == "lime_image":
        return (f"{sums}; lime_image gives every pixel its superpixel's surrogate weight, so these sums count each "
                "superpixel once per pixel and do not add up to the score.")
    return f"{sums}; {row.method} does not split the score into attributions, so these sums need not add up to it."


def _token_labels(row) -> list[str]:
    tokens = row.extras.get("tokens")
    ids = np.asarray(row.data[0]).ravel()
    if isinstance(tokens, np.ndarray) and tokens.shape[-1] == ids.size:
        strings = [str(token) for token in tokens.reshape(-1, ids.size)[0]]
    else:
        strings = [f"id {int(i)}" if np.issubdtype(ids.dtype, np.integer) else format_value(i) for i in ids]
    return [f"'{token}' at position {j}" for j, token in enumerate(strings)]


def _sign_sentence(values: np.ndarray) -> str:
    positive, negative = float(values[values > 0].sum()), float(values[values < 0].sum())
    if negative and -negative < 1e-3 * positive:  # float noise of a perturbation that changes nothing
        return f"Positive attributions sum to {format_value(positive)}; negative ones are negligible ({negative:.2g})."
    return f"Positive attributions sum to {format_value(positive)} and negative ones to {format_value(negative)}."


# -- method ---------------------------------------------------------------------------------
def _method_sentence(explanation) -> str:
    shown = {key: value for key, value in explanation.params.items()
             if key not in _QUIET_PARAMS and value is not None and len(json.dumps(value, default=str)) <= 40}
    settings = ", ".join(f"{key} {value if isinstance(value, str) else json.dumps(value)}" for key, value in shown.items())
    rows = len(explanation)
    seconds = explanation.seconds
    took = f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    return (f"Computed with {explanation.method}{f' ({settings})' if settings else ''}: "
            f"{explanation.n_evals} model evaluations for {rows} row{'s' if rows != 1 else ''} in {took}.")


def _signed(x: float) -> str:
    text = f"{float(x):+.3g}"
    return "0" if text in ("+0", "-0") else text


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"
