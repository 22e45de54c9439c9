"""Text plots: LimeText of a bag-of-embeddings model, whose token values are known exactly
(E[id, c] - E[mask, c]), shown as escaped HTML spans and as matplotlib boxes."""

from __future__ import annotations

import re

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.plot.text import text_figure, text_html
from conftest import build_linear, build_tokens

VOCABULARY = ["<pad>", "<script>alert('x')</script>", "good", "bad", "a & b", "film", "plot", "\"quoted\"", "ok", "zz"]


@pytest.fixture(scope="module")
def case():
    return build_tokens(vocabulary=10, length=8)


@pytest.fixture(scope="module")
def explanation(case):
    ids = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [9, 9, 8, 7, 6, 5, 4, 3]])
    explanation = ae.LimeText(case.proto, mask_token_id=0, num_samples=300, num_features=None, alpha=0.0).explain(
        ids, target=1, random_state=0
    )
    np.testing.assert_allclose(explanation.values, case.E[ids, 1] - case.E[0, 1], rtol=1e-4, atol=1e-5)
    return explanation


SPAN = re.compile(r'<span title="([^"]*)" style="background-color: rgba\((\d+), (\d+), (\d+), ([\d.]+)\);[^"]*">([^<]*)</span>')


def test_html_has_one_escaped_span_per_token_coloured_by_sign(explanation):
    fragment = text_html(explanation, 0, tokens=VOCABULARY)
    spans = SPAN.findall(fragment)
    assert fragment.count("<span") == len(spans) == 8
    assert "<script>" not in fragment and "alert(&#x27;x&#x27;)" in fragment
    values = explanation.values[0]
    for (title, red, _, blue, alpha, text), value, token_id in zip(spans, values, explanation.data[0]):
        assert (int(red) > int(blue)) == (value > 0)  # red raises the target, blue lowers it
        assert float(alpha) == pytest.approx(0.85 * abs(value) / np.abs(values).max(), abs=1e-3)
        assert title.endswith(f"{value:+.4g}")
        assert text == VOCABULARY[token_id].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            "\"", "&quot;").replace("'", "&#x27;")
    assert not re.search(r"<(script|link|img|style)|src=|href=|class=", fragment)


@pytest.mark.parametrize(
    "tokens, first",
    [
        (None, "1"),
        ({i: word for i, word in enumerate(VOCABULARY)}, "zz"),
        (lambda ids: [f"t{i}" for i in ids], "t9"),
    ],
)
def test_html_token_strings(explanation, tokens, first):
    spans = SPAN.findall(text_html(explanation, 1 if first != "1" else 0, tokens=tokens))
    assert spans[0][-1] == first


def test_html_uses_the_explainer_vocabulary():
    ids = np.array([[2, 3, 2]])
    explanation = ae.LimeText(build_tokens(vocabulary=10, length=3).proto, mask_token_id=0, vocabulary=VOCABULARY, num_samples=100).explain(ids, target=0)
    assert [span[-1] for span in SPAN.findall(text_html(explanation))] == ["good", "bad", "good"]


def test_figure_has_one_box_per_token_wrapped_without_overlap():
    ids = np.random.default_rng(1).integers(1, 10, size=(1, 60))
    long = ae.LimeText(build_tokens(vocabulary=10, length=60).proto, mask_token_id=0, num_samples=200, num_features=None, alpha=0.0).explain(ids, target=2)
    ax = text_figure(long, tokens=VOCABULARY)
    assert [text.get_text() for text in ax.texts] == [VOCABULARY[i] for i in ids[0]]
    figure = ax.figure
    figure.draw_without_rendering()
    boxes = [text.get_bbox_patch().get_window_extent() for text in ax.texts]
    assert len({round(box.y0) for box in boxes}) > 1  # wrapped onto several lines
    assert all(0 <= box.x0 and box.x1 <= figure.bbox.width and box.y0 >= 0 for box in boxes)
    for first, second in zip(boxes, boxes[1:]):
        assert not first.overlaps(second)
    for text, value in zip(ax.texts, long.values[0]):
        red, _, blue, _ = text.get_bbox_patch().get_facecolor()
        assert (red > blue) == (value > 0)


def test_figure_on_a_given_axes_and_errors(explanation, case):
    from matplotlib.figure import Figure

    ax = Figure(figsize=(4, 3)).add_subplot()
    assert text_figure(explanation, 1, ax=ax) is ax and len(ax.texts) == 8
    with pytest.raises(ParameterError, match="token id"):
        text_html(explanation, tokens=["<pad>", "one"])
    with pytest.raises(ParameterError, match="strings"):
        text_html(explanation, tokens=lambda ids: ["x"])
    tabular = ae.KernelShap(build_linear().proto, background=np.zeros((1, 4), np.float32)).explain(
        np.ones((1, 4), np.float32), target=0
    )
    with pytest.raises(ParameterError, match="token ids"):
        text_figure(tabular)
