"""Image overlays, top-k outlines and method comparisons: the drawn arrays, the outline's
pixels, the orientation of the rendered PNG, titles, and error paths."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from matplotlib.path import Path

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import ParameterError
from agnostic_explain.explanation import Explanation
from agnostic_explain.plot.compare import compare
from agnostic_explain.plot.image import image_grid, image_overlay
from conftest import build_image_linear, float_input, make_model, weights

pytest.importorskip("matplotlib")


def _explanation(values, data, **fields) -> Explanation:
    values, data = np.asarray(values, np.float32), np.asarray(data, np.float32)
    defaults = dict(base_values=np.full(len(values), 0.5), target=np.zeros(len(values), np.int64), method="test",
                    params={"output_transform": None})
    return Explanation(values=values, data=data, **{**defaults, **fields})


def _centres_inside(contours, shape) -> np.ndarray:
    """Which pixel centres (x = column, y = row) the outline encloses (even-odd over all rings)."""
    rows, columns = np.mgrid[: shape[0], : shape[1]]
    points = np.column_stack([columns.ravel(), rows.ravel()]).astype(float)
    inside = np.zeros(len(points), bool)
    for path in contours.get_paths():
        for ring in path.to_polygons():
            inside ^= Path(ring).contains_points(points)
    return inside.reshape(shape)


def _outline(ax):
    from matplotlib.contour import ContourSet

    found = [artist for artist in ax.collections if isinstance(artist, ContourSet)]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def rgb_occlusion():
    case = build_image_linear(layout="NCHW")
    x = np.random.default_rng(0).uniform(size=(2, 3, 8, 8)).astype(np.float32)
    return ae.Occlusion(case.proto, window=(1, 2, 2)).explain(x)


# -- the drawn arrays ------------------------------------------------------------------------
def test_heatmap_is_the_channel_sum_and_the_image_is_the_input(rgb_occlusion):
    ax = image_overlay(rgb_occlusion, 1)
    picture, heat = ax.images
    np.testing.assert_allclose(heat.get_array(), rgb_occlusion.values[1].sum(axis=0), rtol=1e-6)
    # grayscale (luma) of the input, which lies in [0, 1] so is shown unscaled
    expected = np.tensordot([0.299, 0.587, 0.114], rgb_occlusion.data[1], axes=1)
    np.testing.assert_allclose(picture.get_array(), expected, rtol=1e-5)
    assert picture.get_extent() == heat.get_extent() == [-0.5, 7.5, 7.5, -0.5]
    low, high = heat.get_clim()
    assert low == -high == -np.abs(rgb_occlusion.values[1].sum(axis=0)).max()
    unsigned = image_overlay(rgb_occlusion, 1, signed=False).images[-1]
    np.testing.assert_allclose(unsigned.get_array(), np.abs(rgb_occlusion.values[1].sum(axis=0)), rtol=1e-6)
    assert unsigned.get_clim()[0] == 0


def test_nhwc_rows_are_summed_over_the_last_axis():
    case = build_image_linear(layout="NHWC")
    x = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype(np.float32)
    explanation = ae.Occlusion(case.proto, window=(2, 2, 1)).explain(x)
    heat = image_overlay(explanation).images[-1].get_array()
    np.testing.assert_allclose(heat, explanation.values[0].sum(axis=-1), rtol=1e-6)


def test_a_map_of_one_sign_uses_the_sequential_scale_from_zero():
    heat = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) + 1
    overlay = image_overlay(_explanation(heat, np.zeros_like(heat))).images[-1]
    assert overlay.get_clim() == (0.0, 16.0) and overlay.get_cmap().name == "Reds"


def test_cam_maps_of_one_channel_over_rgb_rows(torch_cnn):
    _, onnx_bytes = torch_cnn
    x = np.random.default_rng(2).normal(size=(2, 3, 12, 12)).astype(np.float32)
    explanation = ae.AblationCam(onnx_bytes).explain(x)
    assert explanation.values.shape == (2, 1, 12, 12)
    ax = image_overlay(explanation, 1, top_k=20)
    picture, heat = ax.images
    np.testing.assert_allclose(heat.get_array(), explanation.values[1, 0], rtol=1e-6)
    assert picture.get_array().shape == (12, 12)
    assert _centres_inside(_outline(ax), (12, 12))[np.unravel_index(explanation.values[1, 0].argmax(), (12, 12))]


def test_cam_maps_over_nhwc_rows():
    # x (N, 10, 10, 3) -> NCHW -> Conv -> Relu -> global pooling -> linear
    proto = make_model(
        [
            onnx.helper.make_node("Transpose", ["x"], ["chw"], perm=[0, 3, 1, 2]),
            onnx.helper.make_node("Conv", ["chw", "K"], ["conv"], pads=[1, 1, 1, 1]),
            onnx.helper.make_node("Relu", ["conv"], ["act"]),
            onnx.helper.make_node("GlobalAveragePool", ["act"], ["pool"]),
            onnx.helper.make_node("Flatten", ["pool"], ["flat"]),
            onnx.helper.make_node("MatMul", ["flat", "W"], ["y"]),
        ],
        [float_input("x", ["N", 10, 10, 3])],
        [float_input("y", ["N", 3])],
        [("K", weights(3, 4, 3, 3, 3)), ("W", weights(4, 4, 3))],
    )
    x = np.random.default_rng(3).uniform(size=(1, 10, 10, 3)).astype(np.float32)
    explanation = ae.AblationCam(proto).explain(x)
    assert explanation.values.shape == (1, 10, 10, 1)
    picture, heat = image_overlay(explanation).images
    np.testing.assert_allclose(heat.get_array(), explanation.values[0, ..., 0], rtol=1e-6)
    np.testing.assert_allclose(picture.get_array(), x[0] @ [0.299, 0.587, 0.114], rtol=1e-5)


def test_values_that_do_not_fit_the_rows_are_refused():
    with pytest.raises(ParameterError, match=r"\(2, 8, 8\)"):
        image_overlay(_explanation(np.zeros((1, 2, 8, 8)), np.zeros((1, 3, 8, 8))))


# -- top-k outline ---------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [3, 10, 37.5])
def test_outline_encloses_exactly_the_top_k_percent(top_k):
    heat = np.random.default_rng(4).normal(size=(1, 1, 12, 16))
    ax = image_overlay(_explanation(heat, np.zeros_like(heat)), signed=False, top_k=top_k)
    inside = _centres_inside(_outline(ax), (12, 16))
    magnitude = np.abs(heat[0, 0])
    expected = magnitude >= np.sort(magnitude.ravel())[::-1][round(top_k / 100 * magnitude.size) - 1]
    assert inside.sum() == round(top_k / 100 * magnitude.size)
    np.testing.assert_array_equal(inside, expected)
    assert inside[np.unravel_index(magnitude.argmax(), magnitude.shape)]
    assert not inside[np.unravel_index(magnitude.argmin(), magnitude.shape)]
    assert ax.get_xlim() == (-0.5, 15.5) and ax.get_ylim() == (11.5, -0.5)
    # it runs along pixel edges: every vertex has a coordinate on a half-integer
    vertices = np.concatenate([path.vertices for path in _outline(ax).get_paths()])
    off_edge = np.abs((vertices + 0.5) - np.round(vertices + 0.5))
    assert len(vertices) and off_edge.min(axis=1).max() < 1e-6


def test_signed_outline_holds_positive_values_only():
    heat = -np.ones((1, 1, 6, 6))
    heat[0, 0, 4, 1] = 0.5  # the only positive value; a 50% top would otherwise take negatives
    ax = image_overlay(_explanation(heat, np.zeros_like(heat)), top_k=50)
    inside = _centres_inside(_outline(ax), (6, 6))
    assert inside.sum() == 1 and inside[4, 1]
    heat = np.where(heat > 0, -1.0, heat)
    assert not _outline_count(image_overlay(_explanation(heat, np.zeros_like(heat)), top_k=50))


def _outline_count(ax):
    from matplotlib.contour import ContourSet

    return sum(isinstance(artist, ContourSet) for artist in ax.collections)


@pytest.mark.parametrize("top_k", [0, -5, 100.5, True, "10"])
def test_bad_top_k(rgb_occlusion, top_k):
    with pytest.raises(ParameterError, match="top_k"):
        image_overlay(rgb_occlusion, top_k=top_k)


def test_image_grid_passes_top_k_through(rgb_occlusion):
    figure = image_grid(rgb_occlusion, top_k=10, signed=False)
    drawn = [ax for ax in figure.axes if ax.images]
    assert len(drawn) == 2
    assert all(_outline_count(ax) == 1 and "top 10%" in ax.get_title() for ax in drawn)


# -- orientation of the rendered image -------------------------------------------------------
def _quadrant_colours(ax) -> dict:
    """Mean RGB of the central part of each quadrant of the axes, from the rendered buffer."""
    figure = ax.figure
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float)
    box = ax.get_window_extent()
    top = pixels.shape[0] - box.y1  # the buffer's row 0 is the top of the figure
    height, width = box.height, box.width
    colours = {}
    for name, (row, column) in {"top left": (0, 0), "top right": (0, 1), "bottom left": (1, 0),
                                "bottom right": (1, 1)}.items():
        r0, c0 = int(top + (row + 0.2) * height / 2), int(box.x0 + (column + 0.2) * width / 2)
        r1, c1 = int(top + (row + 0.8) * height / 2), int(box.x0 + (column + 0.8) * width / 2)
        colours[name] = pixels[r0:r1, c0:c1].reshape(-1, 3).mean(axis=0)
    return colours


@pytest.mark.parametrize("origin", ["upper", "lower"])
def test_bright_top_left_renders_top_left(origin):
    import matplotlib

    data = np.zeros((1, 3, 16, 16))
    data[0, :, :8, :8] = 1.0  # white square, top left
    values = np.zeros((1, 3, 16, 16))
    values[0, :, :8, :8] = 1.0  # positive (red) over the white square
    values[0, :, 8:, 8:] = -1.0  # negative (blue) over black, bottom right
    with matplotlib.rc_context({"image.origin": origin}):  # explicit origin beats rcParams
        bare = _quadrant_colours(image_overlay(_explanation(values * 0, data), colorbar=False, title=False))
        drawn = _quadrant_colours(image_overlay(_explanation(values, data), colorbar=False, title=False))
    assert bare["top left"].min() > 240 and max(bare[name].max() for name in bare if name != "top left") < 15
    # the colormap's ends at 60% opacity over white (top left) and over black (bottom right)
    red_end, blue_end = (255 * np.array(matplotlib.colormaps["RdBu_r"]([1.0, 0.0])[:, :3]))
    np.testing.assert_allclose(drawn["top left"], 0.6 * red_end + 0.4 * 255, atol=6)
    np.testing.assert_allclose(drawn["bottom right"], 0.6 * blue_end, atol=6)
    assert drawn["top left"][0] > drawn["top left"][2] + 40 and drawn["bottom right"][2] > drawn["bottom right"][0] + 40
    assert drawn["top right"].max() < 15 and drawn["bottom left"].max() < 15


# -- titles ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_images():
    proto = build_image_linear(layout="NCHW").proto
    onnx.helper.set_model_props(proto, {"class_names": json.dumps(["cat", "dog", "eel"])})
    x = np.random.default_rng(5).uniform(size=(1, 3, 8, 8)).astype(np.float32)
    return proto, x


def test_title_names_the_label_and_a_probability_after_softmax(labelled_images):
    proto, x = labelled_images
    explanation = ae.Occlusion(proto, window=(3, 4, 4)).explain(x, target=1, output_transform="softmax")
    title = image_overlay(explanation).get_title()
    assert title.startswith("dog") and f"p = {explanation.base_values[0]:.2f}" in title
    assert "logit" not in title


def test_title_says_logit_without_a_transform(labelled_images):
    proto, x = labelled_images
    explanation = ae.Occlusion(proto, window=(3, 4, 4)).explain(x, target=2)
    title = image_overlay(explanation, top_k=10).get_title()
    assert title.startswith("eel") and f"logit {explanation.base_values[0]:.3g}" in title and "p = " not in title
    assert "top 10%" in title
    custom = replace(explanation, target=None, params={})
    assert image_overlay(custom).get_title().startswith("custom target (score ")


# -- compare ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digit_explanations():
    images, _ = load_samples()
    x = images[:3]
    return [
        ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(x, output_transform="softmax"),
        ae.AblationCam(DEFAULT_MODEL_PATH).explain(x, output_transform="softmax"),
        ae.Rise(DEFAULT_MODEL_PATH, n_masks=50, cells=4).explain(x, output_transform="softmax", random_state=0),
    ]


def test_compare_draws_the_input_then_one_panel_per_method(digit_explanations):
    figure = compare(digit_explanations, index=2, top_k=10)
    drawn = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in drawn] == ["input", "occlusion", "ablation_cam", "rise"]
    assert len(drawn[0].images) == 1  # the input alone, in its own (gray) colours, un-normalised
    np.testing.assert_allclose(drawn[0].images[0].get_array(), digit_explanations[0].data[2, 0])
    for ax, explanation in zip(drawn[1:], digit_explanations):
        np.testing.assert_allclose(ax.images[-1].get_array(), explanation.values[2].sum(axis=0), rtol=1e-6)
    assert len(figure.axes) == 4 + 3  # one colorbar per method
    headline = figure.get_suptitle()
    assert "2 (p = " in headline and "top 10%" in headline


def test_compare_names_and_a_shared_scale(digit_explanations):
    figure = compare(digit_explanations, names=["A", "B", "C"], shared_scale=True, ncols=2)
    drawn = [ax for ax in figure.axes if ax.images]
    assert [ax.get_title() for ax in drawn[1:]] == ["A", "B", "C"]
    limits = {ax.images[-1].get_clim() for ax in drawn[1:]}
    largest = max(np.abs(explanation.values[0].sum(axis=0)).max() for explanation in digit_explanations)
    assert len(limits) == 1 and np.isclose(limits.pop()[1], largest)
    assert len(figure.axes) == 4 + 1  # one colorbar for all


def test_compare_titles_each_panel_when_targets_differ(digit_explanations):
    images, _ = load_samples()
    other = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:3], target=7)
    titles = [ax.get_title() for ax in compare([digit_explanations[0], other]).axes if ax.images]
    assert titles[1].startswith("occlusion\n0 (p ") and titles[2].startswith("occlusion\n7 (logit ")


def test_compare_errors(digit_explanations):
    occlusion = digit_explanations[0]
    shifted = replace(occlusion, data=occlusion.data + 0.5)
    with pytest.raises(ParameterError, match="another input at row 0"):
        compare([occlusion, shifted])
    with pytest.raises(ParameterError, match="numbers of rows differ"):
        compare([occlusion, digit_explanations[1][:2]])
    with pytest.raises(ParameterError, match="names: expected 2"):
        compare(digit_explanations[:2], names=["only one"])
    with pytest.raises(ParameterError, match="non-empty"):
        compare([])
    with pytest.raises(ParameterError, match="index=5"):
        compare(digit_explanations, index=5)


def test_compare_shows_the_input_un_normalised():
    rng = np.random.default_rng(6)
    image = rng.uniform(size=(6, 5, 3))  # (H, W, C) in [0, 1]
    data = ((image - 0.5) / 0.5).transpose(2, 0, 1)[None]  # normalised, NCHW
    preprocessing = {"layout": "nchw", "mean": [0.5] * 3, "std": [0.5] * 3}
    first = _explanation(rng.normal(size=(1, 3, 6, 5)), data, preprocessing=preprocessing)
    second = _explanation(rng.uniform(size=(1, 1, 6, 5)), data, preprocessing=preprocessing, method="cam")
    drawn = [ax for ax in compare([first, second]).axes if ax.images]
    np.testing.assert_allclose(drawn[0].images[0].get_array(), image, rtol=1e-5)
    assert drawn[1].images[-1].get_cmap().name == "RdBu_r" and drawn[2].images[-1].get_cmap().name == "Reds"


# -- colour scales: signed maps centred, saliency and offset maps over their own range ----------------
def _colorbar_labels(figure) -> list[str]:
    return [ax.get_ylabel() for ax in figure.axes if not ax.images and ax.get_ylabel()]


def test_a_rise_map_with_a_common_offset_is_drawn_over_its_own_range():
    # RISE's saliency: all positive, a large common offset (the mean masked score) and a small spread
    heat = 0.5 + 0.01 * np.random.default_rng(7).normal(size=(1, 1, 8, 8))
    ax = image_overlay(_explanation(heat, np.zeros_like(heat), method="rise"))
    overlay = ax.images[-1]
    assert overlay.get_cmap().name == "Reds"
    np.testing.assert_allclose(overlay.get_clim(), (heat.min(), heat.max()), rtol=1e-6)
    assert ax.figure.axes[-1].get_ylabel() == "saliency"
    # the image shows through at the map's minimum, the colour is strongest at its maximum
    opacity = overlay.get_alpha()
    assert opacity[np.unravel_index(heat[0, 0].argmin(), (8, 8))] == 0
    assert np.isclose(opacity[np.unravel_index(heat[0, 0].argmax(), (8, 8))], 0.6)


@pytest.mark.parametrize("method", ["score_cam", "ablation_cam"])
def test_cam_maps_are_saliency_over_their_own_range(method):
    heat = np.random.default_rng(8).uniform(2.0, 3.0, size=(1, 1, 6, 6))
    ax = image_overlay(_explanation(heat, np.zeros_like(heat), method=method), top_k=10)
    np.testing.assert_allclose(ax.images[-1].get_clim(), (heat.min(), heat.max()), rtol=1e-6)
    assert ax.figure.axes[-1].get_ylabel() == "saliency" and "top 10% saliency" in ax.get_title()


def test_saliency_outline_holds_the_highest_values_whatever_their_sign():
    heat = -np.arange(36, dtype=float).reshape(1, 1, 6, 6)  # RISE of a negative logit: all below zero
    ax = image_overlay(_explanation(heat, np.zeros_like(heat), method="rise"), top_k=10)
    inside = _centres_inside(_outline(ax), (6, 6))
    assert inside.sum() == 4 and inside[0, :4].all()


def test_an_offset_map_of_an_unknown_method_is_drawn_over_its_own_range():
    heat = 30.0 + np.arange(16, dtype=float).reshape(1, 1, 4, 4)  # 30 .. 45: the offset dwarfs the spread
    ax = image_overlay(_explanation(heat, np.zeros_like(heat)))
    assert ax.images[-1].get_clim() == (30.0, 45.0) and ax.images[-1].get_cmap().name == "Reds"
    assert ax.figure.axes[-1].get_ylabel() == "attribution (one sign, own range)"


def test_a_negative_map_is_sequential_towards_zero():
    heat = -1.0 - np.arange(16, dtype=float).reshape(1, 1, 4, 4)
    ax = image_overlay(_explanation(heat, np.zeros_like(heat)))
    assert ax.images[-1].get_clim() == (-16.0, 0.0) and ax.images[-1].get_cmap().name == "Blues_r"
    opacity = ax.images[-1].get_alpha()
    assert opacity[3, 3] == pytest.approx(0.6) and opacity[0, 0] < opacity[3, 3]


def test_a_signed_map_stays_centred_on_zero_and_says_so():
    heat = np.random.default_rng(9).normal(loc=0.3, size=(1, 1, 8, 8))
    ax = image_overlay(_explanation(heat, np.zeros_like(heat), method="occlusion"))
    low, high = ax.images[-1].get_clim()
    assert low == -high and np.isclose(high, np.abs(heat).max()) and ax.images[-1].get_cmap().name == "RdBu_r"
    assert ax.figure.axes[-1].get_ylabel() == "attribution (signed)"
    assert image_overlay(_explanation(heat, np.zeros_like(heat)), signed=False).figure.axes[-1].get_ylabel() == (
        "|attribution|")


def test_every_colorbar_is_labelled(digit_explanations, rgb_occlusion):
    figures = [image_grid(rgb_occlusion), compare(digit_explanations), compare(digit_explanations, shared_scale=True)]
    expected = [["attribution (signed)"] * 2, ["attribution (signed)", "saliency", "saliency"], ["attribution (signed)"]]
    assert [_colorbar_labels(figure) for figure in figures] == expected


def test_compare_gives_each_method_its_own_kind_of_scale(digit_explanations):
    figure = compare(digit_explanations, index=1, top_k=10)
    drawn = [ax for ax in figure.axes if ax.images][1:]
    assert [ax.images[-1].get_cmap().name for ax in drawn] == ["RdBu_r", "Reds", "Reds"]
    for ax, explanation in zip(drawn[1:], digit_explanations[1:]):  # Ablation-CAM and RISE: min to max
        heat = explanation.values[1].sum(axis=0)
        np.testing.assert_allclose(ax.images[-1].get_clim(), (heat.min(), heat.max()), rtol=1e-6)
    assert "top 10% positive attribution / top 10% saliency" in figure.get_suptitle()


def test_unsigned_saliency_keeps_its_own_range():
    heat = 0.5 + 0.01 * np.arange(16, dtype=float).reshape(1, 1, 4, 4)
    ax = image_overlay(_explanation(heat, np.zeros_like(heat), method="rise"), signed=False)
    np.testing.assert_allclose(ax.images[-1].get_clim(), (0.5, 0.65), rtol=1e-6)
    assert ax.figure.axes[-1].get_ylabel() == "|saliency|"
