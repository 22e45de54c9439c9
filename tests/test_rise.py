"""Rise: its masks against scikit-image, its saliency against exact and expected values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper

from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.rise import Rise, axis_weights, channel_axis, draw_masks, upsample

from conftest import float_input, make_model, weights


def build_weighted_sum(row_shape: tuple, w: np.ndarray):
    """y[n, 0] = sum(x[n] * w) with no bias, x of shape (N, *row_shape)."""
    axes = list(range(1, len(row_shape) + 1))
    return make_model(
        [
            helper.make_node("Mul", ["x", "w"], ["weighted"]),
            helper.make_node("ReduceSum", ["weighted", "axes"], ["y"], keepdims=0),
            helper.make_node("Unsqueeze", ["y", "one"], ["out"]),
        ],
        [float_input("x", ["N", *row_shape])],
        [float_input("out", ["N", 1])],
        [
            ("w", w.astype(np.float32)),
            ("axes", np.array(axes, dtype=np.int64)),
            ("one", np.array([1], dtype=np.int64)),
        ],
    )


# -- masks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plane", "cells"),
    [((224, 224), 8), ((12, 12), 5), ((7, 20), 3), ((30,), 4), ((9, 9), 1), ((5, 6, 7), 2)],
)
def test_masks_match_the_papers_skimage_resize_and_crop(plane, cells):
    transform = pytest.importorskip("skimage.transform")
    grids, shifts = draw_masks(np.random.default_rng(0), 4, cells, 0.5, plane)
    masks = upsample(grids, shifts, plane)
    assert masks.shape == (4, *plane) and masks.dtype == np.float32
    for grid, shift, mask in zip(grids, shifts, masks):
        cell_sizes = [-(-size // cells) for size in plane]
        size = [(cells + 1) * cell for cell in cell_sizes]
        resized = transform.resize(grid.astype(np.float64), size, order=1, mode="reflect", anti_aliasing=False)
        crop = tuple(slice(begin, begin + size) for begin, size in zip(shift, plane))
        np.testing.assert_allclose(mask, resized[crop], atol=1e-6)


def test_axes_with_no_more_elements_than_cells_take_one_cell_per_element():
    grids, shifts = draw_masks(np.random.default_rng(1), 3, 6, 0.5, (6, 4))
    assert (shifts == 0).all()
    np.testing.assert_array_equal(upsample(grids, shifts, (6, 4)), grids[:, :6, :4])


def test_interpolation_weights_sum_to_one():
    weights_ = axis_weights(224, 7, np.arange(32))
    np.testing.assert_allclose(weights_.sum(axis=2), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    ("row_shape", "axis"),
    [
        ((3, 8, 8), 0), ((8, 8, 3), 2), ((1, 5, 5), 0), ((5, 5, 4), 2),
        ((5, 6, 7), None), ((8, 8), None), ((10,), None),
    ],
)
def test_channel_axis(row_shape, axis):
    assert channel_axis(row_shape) == axis


# -- saliency ---------------------------------------------------------------------------------
@pytest.mark.parametrize("baseline", [0.0, 0.4])
def test_equals_the_formula_on_the_same_masks(rng, baseline):
    row_shape, cells, n_masks, p_keep = (1, 10, 12), 3, 50, 0.4
    w = weights(3, *row_shape)
    x = rng.normal(size=(2, *row_shape)).astype(np.float32)
    explanation = Rise(
        build_weighted_sum(row_shape, w), n_masks=n_masks, cells=cells, p_keep=p_keep, baseline=baseline
    ).explain(x, target=0, random_state=11)
    grids, shifts = draw_masks(np.random.default_rng(11), n_masks, cells, p_keep, row_shape[1:])
    masks = upsample(grids, shifts, row_shape[1:]).astype(np.float64)[:, None]  # (n_masks, 1, H, W)
    scores = ((baseline + (x[:, None] - baseline) * masks) * w).sum(axis=(2, 3, 4))  # (n_rows, n_masks)
    expected = np.einsum("rn,nchw->rchw", scores, masks) / (n_masks * p_keep)
    np.testing.assert_allclose(explanation.values, expected, rtol=1e-4, atol=1e-5)
    assert explanation.n_evals == len(x) * (1 + n_masks)
    assert explanation.method == "rise"


@pytest.mark.parametrize("p_keep", [0.5, 0.3])
def test_independent_cells_give_the_expected_saliency(rng, p_keep):
    # One cell per feature: M_i ~ Bernoulli(p) independently, f = sum_j c_j M_j with c_j = w_j x_j,
    # so E[S_i] = E[f M_i] / p = c_i + p * sum_{j != i} c_j.
    length, n_masks = 6, 20000
    w = weights(4, length)
    x = rng.normal(size=(3, length)).astype(np.float32)
    explanation = Rise(build_weighted_sum((length,), w), n_masks=n_masks, cells=length, p_keep=p_keep).explain(
        x, target=0, random_state=0
    )
    c = (w * x).astype(np.float64)
    rest = c.sum(axis=1, keepdims=True) - c
    expected = c + p_keep * rest
    # exact standard deviation of S_i: Var(f M_i) / (N p^2), from the moments of Bernoulli masks
    rest_squares = (c**2).sum(axis=1, keepdims=True) - c**2
    second = p_keep * ((c + p_keep * rest) ** 2 + p_keep * (1 - p_keep) * rest_squares)
    sigma = np.sqrt((second - (p_keep * (c + p_keep * rest)) ** 2) / n_masks) / p_keep
    assert np.all(np.abs(explanation.values - expected) < 4.5 * sigma)


def test_interpolated_masks_give_the_expected_saliency(rng):
    # Bilinear masks are M_i = sum_c a_ic G_c with weights a_i summing to 1, so
    # E[M_i M_j | shift] = p^2 + p (1 - p) <a_i, a_j> and E[S_i] = sum_j c_j (p + (1 - p) E<a_i, a_j>).
    plane, cells, p_keep, n_masks = (6, 6), 2, 0.5, 20000
    w = weights(5, 1, *plane)
    x = rng.normal(size=(1, 1, *plane)).astype(np.float32)
    explanation = Rise(build_weighted_sum((1, *plane), w), n_masks=n_masks, cells=cells, p_keep=p_keep).explain(
        x, target=0, random_state=1
    )
    cell = -(-plane[0] // cells)
    gram = np.zeros((36, 36))
    for shift_y, shift_x in itertools.product(range(cell), repeat=2):
        rows_ = axis_weights(plane[0], cells, np.array([shift_y]))[0]
        cols_ = axis_weights(plane[1], cells, np.array([shift_x]))[0]
        a = np.einsum("hc,wd->hwcd", rows_, cols_).reshape(36, cells * cells)
        gram += a @ a.T / cell**2
    c = (w * x).reshape(36).astype(np.float64)
    expected = (p_keep + (1 - p_keep) * gram) @ c
    # the spread of one term f(x * M) M_i / p, estimated on independently drawn masks
    grids, shifts = draw_masks(np.random.default_rng(99), 4000, cells, p_keep, plane)
    masks = upsample(grids, shifts, plane).reshape(4000, 36).astype(np.float64)
    terms = (masks @ c)[:, None] * masks / p_keep
    tolerance = 5 * terms.std(axis=0) / np.sqrt(n_masks)
    assert np.all(np.abs(explanation.values.reshape(36) - expected) < tolerance)
    # and the interpolation matters: the independent-cell answer is far outside the tolerance
    assert np.abs(c + p_keep * (c.sum() - c) - expected).max() > 5 * tolerance.max()


def test_the_quadrant_that_matters_gets_the_highest_saliency():
    w = np.zeros((3, 16, 16), dtype=np.float32)
    w[:, :8, 8:] = 1.0  # only the top-right quadrant reaches the output
    images = np.random.default_rng(2).uniform(0.5, 1.0, size=(2, 3, 16, 16)).astype(np.float32)
    explainer = Rise(build_weighted_sum((3, 16, 16), w), n_masks=300, cells=4)
    values = explainer.explain(images, target=0, random_state=3).values
    halves = (slice(0, 8), slice(8, 16))
    quadrants = np.stack([values[:, 0, rows, cols].mean(axis=(1, 2)) for rows in halves for cols in halves], axis=1)
    assert (quadrants.argmax(axis=1) == 1).all()
    top = np.argsort(values[:, 0].reshape(2, -1), axis=1)[:, -32:]  # the 32 most salient pixels
    inside = (top // 16 < 8) & (top % 16 >= 8)
    assert inside.mean() > 0.9


def test_masks_are_shared_by_channels_in_either_layout(image_nchw, image_nhwc, rng):
    images = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    first = Rise(image_nchw.proto, n_masks=64, cells=3).explain(images, target=1, random_state=5)
    channels_last = images.transpose(0, 2, 3, 1)
    last = Rise(image_nhwc.proto, n_masks=64, cells=3).explain(channels_last, target=1, random_state=5)
    np.testing.assert_allclose(last.values, first.values.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-6)
    # a linear model on the masked image is not the same per channel, but the saliency is one plane
    np.testing.assert_array_equal(first.values[:, 0], first.values[:, 2])


def test_same_seed_same_values_other_seed_other_values(image_nchw, rng):
    images = rng.normal(size=(2, 3, 8, 8)).astype(np.float32)
    explainer = Rise(image_nchw.proto, n_masks=40, cells=2)
    one = explainer.explain(images, target=0, random_state=7).values
    np.testing.assert_array_equal(one, explainer.explain(images, target=0, random_state=7).values)
    assert not np.allclose(one, explainer.explain(images, target=0, random_state=8).values)


def test_summing_in_chunks_changes_nothing(image_nchw, rng):
    images = rng.normal(size=(3, 3, 8, 8)).astype(np.float32)
    whole = Rise(image_nchw.proto, n_masks=50, cells=3).explain(images, target=2, random_state=9)
    chunked = Rise(image_nchw.proto, n_masks=50, cells=3, batch_masks=7).explain(images, target=2, random_state=9)
    np.testing.assert_allclose(chunked.values, whole.values, rtol=1e-6, atol=1e-7)
    assert chunked.params["batch_masks"] == 7 and chunked.params["n_masks"] == 50


# -- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"n_masks": 0}, "n_masks must be a positive int"),
        ({"n_masks": 10.0}, "n_masks must be a positive int"),
        ({"cells": 0}, "cells must be a positive int"),
        ({"p_keep": 0.0}, "p_keep must be a number in"),
        ({"p_keep": 1.5}, "p_keep must be a number in"),
        ({"p_keep": True}, "p_keep must be a number in"),
        ({"batch_masks": -1}, "batch_masks must be a positive int"),
        ({"baseline": np.zeros(3)}, "baseline"),
    ],
)
def test_bad_parameters_raise(linear, params, match):
    with pytest.raises(ParameterError, match=match):
        Rise(linear.proto, **params).explain(np.ones((2, 4), dtype=np.float32), target=0)


def test_integer_rows_are_refused(tokens):
    with pytest.raises(ParameterError, match="floating point"):
        Rise(tokens.proto).explain(np.ones((2, 6), dtype=np.int64), target=0)
