"""Tabular plots draw exactly the explanation: KernelSHAP of a linear model, whose Shapley
values are known in closed form (w_j * (x_j - background_j)), and feature ablation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.plot.tabular import POSITIVE, bar, beeswarm, waterfall
from conftest import build_image_linear, build_linear

N_FEATURES = 6
NAMES = [f"f{j}" for j in range(N_FEATURES)]
CLASSES = ["cat", "dog", "eel"]


@pytest.fixture(scope="module")
def case():
    metadata = {"feature_names": json.dumps(NAMES), "class_names": json.dumps(CLASSES)}
    return build_linear(n_features=N_FEATURES, metadata=metadata, seed=5)


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(0).normal(size=(40, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def shap(case, rows):
    return ae.KernelShap(case.proto, background=np.zeros((1, N_FEATURES), np.float32)).explain(rows, target=1)


def _closed_form(case, rows, target=1):
    return case.W[:, target][None, :] * rows  # background zeros: phi_j = w_j x_j


def test_bar_draws_top_features_in_order_and_sums_the_rest(case, rows, shap):
    np.testing.assert_allclose(shap.values, _closed_form(case, rows), atol=1e-5)
    index = 3
    ax = bar(shap, index, max_features=3)
    values = shap.values[index].astype(np.float64)
    order = np.argsort(-np.abs(values))
    patches = sorted(ax.patches, key=lambda patch: -patch.get_y())  # top to bottom
    widths = [patch.get_width() for patch in patches]
    np.testing.assert_allclose(widths[:3], values[order[:3]], rtol=1e-6)
    np.testing.assert_allclose(widths[3], values[order[3:]].sum(), rtol=1e-6)
    assert all(patch.get_x() == 0.0 for patch in patches)
    colours = [to_rgba(POSITIVE)[:3] == patch.get_facecolor()[:3] for patch in patches[:3]]
    assert colours == [bool(values[j] >= 0) for j in order[:3]]
    labels = [label.get_text() for label in ax.get_yticklabels()]
    labels = [labels[i] for i in np.argsort([-t for t in ax.get_yticks()])]  # top to bottom
    expected = [f"{NAMES[j]} = {rows[index, j]:.4g}" for j in order[:3]] + ["3 other features"]
    assert labels == expected
    assert ax.get_title() == f"dog (logit {shap.base_values[index]:.4g})"  # the image plots' convention


def test_bar_title_gives_probability_and_falls_back_to_feature_numbers(rows):
    plain = build_linear(n_features=N_FEATURES, seed=5)
    explanation = ae.KernelShap(plain.proto, background=np.zeros((1, N_FEATURES), np.float32)).explain(
        rows[:2], target=2, output_transform="softmax"
    )
    ax = bar(explanation, 1, max_features=N_FEATURES)
    assert len(ax.patches) == N_FEATURES  # no "other features" bar when all fit
    assert ax.get_title() == f"2 (p = {explanation.base_values[1]:.2f})"
    assert all(label.get_text().startswith("feature ") for label in ax.get_yticklabels())


def test_waterfall_goes_from_expected_value_to_the_prediction(case, rows, shap):
    index = 7
    ax = waterfall(shap, index, max_features=4)
    patches = sorted(ax.patches, key=lambda patch: patch.get_y())  # bottom to top
    assert len(patches) == 5
    # the start is E[f(background)] = f(0) = b, the end f(x)
    assert patches[0].get_x() == pytest.approx(float(case.b[1]), abs=1e-5)
    top = patches[-1]
    assert top.get_x() + top.get_width() == pytest.approx(float(shap.base_values[index]), abs=1e-5)
    for lower, upper in zip(patches, patches[1:]):  # each bar starts where the one below ends
        assert upper.get_x() == pytest.approx(lower.get_x() + lower.get_width())
    values = _closed_form(case, rows)[index]
    order = np.argsort(-np.abs(values))
    widths = [patch.get_width() for patch in patches]
    np.testing.assert_allclose(widths[1:][::-1], values[order[:4]], atol=1e-5)
    np.testing.assert_allclose(widths[0], values[order[4:]].sum(), atol=1e-5)
    texts = [text.get_text() for text in ax.texts]
    assert any(text.strip() == f"E[f(X)] = {float(case.b[1]):.4g}" for text in texts)
    assert "not additive" not in ax.get_title()


def test_waterfall_of_shapley_sampling_ends_at_the_prediction(case, rows):
    sampled = ae.ShapleySampling(case.proto, n_permutations=2).explain(rows[:2], target=0, random_state=0)
    patches = sorted(waterfall(sampled, 1, max_features=2).patches, key=lambda patch: patch.get_y())
    assert patches[0].get_x() == pytest.approx(float(case.b[0]), abs=1e-5)  # f(baseline 0)
    assert patches[-1].get_x() + patches[-1].get_width() == pytest.approx(float(sampled.base_values[1]), abs=1e-5)


def test_waterfall_groups_and_logit_link(case, rows):
    mask = np.array([0, 0, 1, 1, 2, 2])
    grouped = ae.KernelShap(case.proto, background=np.zeros((1, N_FEATURES), np.float32), feature_mask=mask).explain(
        rows[:2], target=0
    )
    ax = waterfall(grouped, 1)
    assert sorted(label.get_text() for label in ax.get_yticklabels()) == ["f0 + f1", "f2 + f3", "f4 + f5"]
    top = max(ax.patches, key=lambda patch: patch.get_y())
    assert top.get_x() + top.get_width() == pytest.approx(float(grouped.base_values[1]), abs=1e-5)
    ax = bar(grouped, 1)
    assert sum(patch.get_width() for patch in ax.patches) == pytest.approx(grouped.extras["group_values"][1].sum())

    logit = ae.KernelShap(case.proto, background=rows[:5], link="logit").explain(
        rows[:2], target=0, output_transform="softmax"
    )
    ax = waterfall(logit, 0)
    top = max(ax.patches, key=lambda patch: patch.get_y())
    p = float(logit.base_values[0])
    assert top.get_x() + top.get_width() == pytest.approx(np.log(p / (1 - p)), abs=1e-5)
    assert ax.get_xlabel() == "logit of the target probability"


def test_waterfall_of_a_non_additive_method_starts_at_f_minus_sum(case, rows):
    ablation = ae.FeatureAblation(case.proto).explain(rows[:3], target=2)  # baseline 0: w_j x_j
    ax = waterfall(ablation, 2)
    patches = sorted(ax.patches, key=lambda patch: patch.get_y())
    assert patches[0].get_x() == pytest.approx(float(ablation.base_values[2] - ablation.values[2].sum()), abs=1e-5)
    assert patches[0].get_x() == pytest.approx(float(case.b[2]), abs=1e-5)  # f(baseline), as the model is linear
    assert patches[-1].get_x() + patches[-1].get_width() == pytest.approx(float(ablation.base_values[2]), abs=1e-6)
    assert "not additive" in ax.get_title()


def test_beeswarm_points_are_attributions_coloured_by_feature_value(case, rows, shap):
    ax = beeswarm(shap, max_features=4)
    ax.figure.draw_without_rendering()  # colours are mapped when drawn
    order = np.argsort(-np.abs(shap.values).mean(axis=0), kind="stable")
    assert len(ax.collections) == 5
    for line, j in zip(ax.collections[:4], order[:4]):
        np.testing.assert_allclose(line.get_offsets()[:, 0], shap.values[:, j], rtol=1e-6)
        column = rows[:, j]
        np.testing.assert_allclose(line.get_array(), (column - column.min()) / (column.max() - column.min()), rtol=1e-5)
        colours = line.get_facecolors()
        highest, lowest = colours[np.argmax(column)], colours[np.argmin(column)]
        assert highest[0] > highest[2] and lowest[2] > lowest[0]  # red high, blue low
    np.testing.assert_allclose(ax.collections[4].get_offsets()[:, 0], shap.values[:, order[4:]].sum(axis=1), rtol=1e-5)
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels == [NAMES[j] for j in order[:4]] + ["2 other features"]
    offsets = ax.collections[0].get_offsets()[:, 1]
    top = ax.get_yticks().max()
    assert np.all(np.abs(offsets - top) <= 0.4 + 1e-9) and np.ptp(offsets) > 0  # spread within the line
    again = beeswarm(shap, max_features=4)
    np.testing.assert_array_equal(again.collections[0].get_offsets(), ax.collections[0].get_offsets())
    colorbar_axes = [other for other in ax.figure.axes if other is not ax]
    assert colorbar_axes and "feature value" in colorbar_axes[0].get_ylabel()


def test_plots_draw_on_a_given_axes(shap):
    from matplotlib.figure import Figure

    figure = Figure()
    axes = figure.subplots(1, 3)
    assert bar(shap, ax=axes[0]) is axes[0]
    assert waterfall(shap, ax=axes[1]) is axes[1]
    assert beeswarm(shap, ax=axes[2]) is axes[2]


def test_errors(shap):
    with pytest.raises(ParameterError, match="max_features"):
        bar(shap, max_features=0)
    with pytest.raises(ParameterError, match="index"):
        waterfall(shap, index=1.5)
    with pytest.raises(IndexError):
        bar(shap, index=len(shap))
    image = build_image_linear(channels=1, height=4, width=4)
    explanation = ae.Occlusion(image.proto, window=(1, 2, 2)).explain(np.ones((2, 1, 4, 4), np.float32), target=0)
    for plot in (bar, waterfall):
        with pytest.raises(ParameterError, match="shape"):
            plot(explanation)
    with pytest.raises(ParameterError, match="image_overlay"):
        beeswarm(explanation)


def test_beeswarm_title_names_the_class(shap):
    assert beeswarm(shap).get_title() == "kernel_shap over 40 rows, class 'dog'"


def test_beeswarm_over_mixed_predicted_classes_refuses_or_draws_the_chosen_class(case, rows):
    explanation = ae.FeatureAblation(case.proto).explain(rows)  # target="predicted"
    classes = explanation.target
    assert len(set(classes.tolist())) > 1
    with pytest.raises(ParameterError, match=r"explain \d different targets .*Pass one of them \(e.g. target=\d or target="):
        beeswarm(explanation)
    chosen = int(classes[0])
    mine = np.flatnonzero(classes == chosen)
    for target in (chosen, CLASSES[chosen]):
        ax = beeswarm(explanation, target=target, max_features=N_FEATURES)
        assert ax.get_title() == f"feature_ablation over {len(mine)} of 40 rows, class '{CLASSES[chosen]}'"
        points = np.concatenate([line.get_offsets()[:, 0] for line in ax.collections])
        np.testing.assert_allclose(np.sort(points), np.sort(explanation.values[mine].ravel()), rtol=1e-6)
    with pytest.raises(ParameterError, match="no row explains it"):
        beeswarm(explanation, target=99)
    with pytest.raises(ParameterError, match="not a class name"):
        beeswarm(explanation, target="zebra")
