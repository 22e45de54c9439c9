"""A method comparison as a figure and as a report section."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import ParameterError
from agnostic_explain.plot import metric_bars


@pytest.fixture(scope="module")
def comparison():
    images, _ = load_samples()
    methods = {"occlusion": ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)),
               "ablation_cam": ae.AblationCam(DEFAULT_MODEL_PATH)}
    return ae.metrics.compare(methods, DEFAULT_MODEL_PATH, images[:3], steps=4)


def test_metric_bars_draw_each_methods_mean(comparison):
    ax = metric_bars(comparison)
    heights = np.array([patch.get_height() for patch in ax.patches]).reshape(len(comparison.methods), -1)
    np.testing.assert_allclose(heights, comparison.means(), rtol=1e-6)
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels == ["deletion\n(lower is better)", "insertion\n(higher is better)"]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["occlusion", "ablation_cam"]


def test_report_holds_the_comparison(comparison, tmp_path):
    path = ae.report.write_report(list(comparison.explanations.values()), tmp_path / "r.html", comparison=comparison)
    page = path.read_text(encoding="utf-8")
    assert "<h2>Comparison of methods</h2>" in page
    means = comparison.means()
    assert f"<td>{means[0, 0]:.4f}</td>" in page and f"<td>{means[1, 1]:.4f}</td>" in page
    assert page.count('src="data:image/png;base64,') >= 1 + len(comparison.methods)


def test_metric_bars_refuse_an_empty_comparison(comparison):
    from dataclasses import replace

    with pytest.raises(ParameterError, match="no metric"):
        metric_bars(replace(comparison, metrics=(), scores={}))
