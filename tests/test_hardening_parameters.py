"""Issue 18: non-finite parameters and outputs, negative targets, loose arguments, and numpy running out of memory."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
from conftest import build_linear, build_two_input, float_input, make_model
from onnx import helper

import agnostic_explain as ae
from agnostic_explain import jobs
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import (
    ModelExecutionError,
    NonFiniteInputError,
    OutOfMemoryError,
    ParameterError,
    TargetError,
)
from agnostic_explain.explainers.budget import SAMPLE_BUDGET
from agnostic_explain.runtime.batching import Feeds, evaluate
from agnostic_explain.seeds import as_generator


@pytest.fixture(scope="module")
def digits():
    return ae.load(DEFAULT_MODEL_PATH, providers="cpu")


@pytest.fixture(scope="module")
def images():
    return load_samples()[0][:2]


@pytest.fixture(scope="module")
def linear():
    return ae.load(build_linear().proto, providers="cpu")


@pytest.fixture(scope="module")
def log_model():
    """y = log(x), elementwise, x and y of shape (N, 4): NaN where x < 0."""
    proto = make_model([helper.make_node("Log", ["x"], ["y"])], [float_input("x", ["N", 4])],
                       [float_input("y", ["N", 4])])
    return ae.load(proto, providers="cpu")


BASELINE_EXPLAINERS = {
    "occlusion": lambda model, baseline: ae.Occlusion(model, window=(1, 4, 4), baseline=baseline),
    "rise": lambda model, baseline: ae.Rise(model, n_masks=8, cells=2, baseline=baseline),
    "feature_ablation": lambda model, baseline: ae.FeatureAblation(model, baseline=baseline),
    "shapley_sampling": lambda model, baseline: ae.ShapleySampling(
        model, baseline=baseline, n_permutations=1, feature_mask=ae.masks.grid((8, 8), 4)),
}
BAD_BASELINES = {
    "nan": (np.nan, r"baseline must be finite, got nan"),
    "inf": (np.inf, r"baseline must be finite, got inf"),
    "-inf": (-np.inf, r"baseline must be finite, got -inf"),
    "1e39": (1e39, r"baseline 1e\+39 does not fit the input's dtype float32 \(it overflows to infinity\)"),
    "complex": (1j, r"baseline must be real, got complex values \(1j"),
    "array with nan": (np.where(np.eye(8) > 0, np.nan, 0.0), r"baseline must be finite, got nan in 8 of 64 values"),
    "text": (np.array(["a"]), r"baseline must be numeric, got dtype <U1"),
}


# -- 3. non-finite parameters ------------------------------------------------------------------
@pytest.mark.parametrize("bad", sorted(BAD_BASELINES))
@pytest.mark.parametrize("method", sorted(BASELINE_EXPLAINERS))
def test_a_non_finite_or_complex_baseline_is_refused(method, bad, digits, images):
    baseline, message = BAD_BASELINES[bad]
    with pytest.raises(ParameterError, match=message):
        BASELINE_EXPLAINERS[method](digits, baseline).explain(images, random_state=0)


def test_an_integer_baseline_out_of_an_integer_input_range_is_refused():
    from agnostic_explain.perturbation.baselines import baseline_rows

    with pytest.raises(ParameterError, match=r"baseline 300 does not fit the input's dtype int8; expected values in -128\.\.127"):
        baseline_rows(300, np.zeros((2, 3), np.int8))
    assert baseline_rows(3.6, np.zeros((2, 3), np.int8))[0].tolist() == [4, 4, 4]


@pytest.mark.parametrize("hide_color, message", [(np.nan, "hide_color must be finite, got nan"),
                                                 (1e39, "hide_color 1e\\+39 does not fit"),
                                                 (np.inf, "hide_color must be finite, got inf")])
def test_lime_image_refuses_a_non_finite_hide_color(hide_color, message, digits, images):
    explainer = ae.LimeImage(digits, segmentation=np.arange(64).reshape(8, 8) // 16, hide_color=hide_color,
                             num_samples=10)
    with pytest.raises(ParameterError, match=message):
        explainer.explain(images[:1], random_state=0)


def test_nan_in_fixed_inputs_is_refused_naming_the_input():
    model = ae.load(build_two_input().proto, providers="cpu")
    z = np.ones((1, 4), np.float32)
    z[0, 2] = np.nan
    with pytest.raises(NonFiniteInputError, match=r"fixed_inputs\['z'\]: 1 value\(s\) are NaN or infinite"):
        ae.Occlusion(model, window=(1,)).explain(np.ones((2, 4), np.float32), target=0, fixed_inputs={"z": z})


def test_the_model_returning_nan_at_an_explained_row_names_the_output_and_the_row(log_model):
    x = np.ones((3, 4), np.float32)
    x[1, 0] = -1.0  # log(-1) is NaN
    with pytest.raises(ModelExecutionError, match=r"output 'y' is nan at row 1 of the batch, which belongs to "
                                                  r"explained row 1"):
        ae.Occlusion(log_model, window=(1,)).explain(x, target=0)


def test_the_model_returning_inf_at_a_perturbed_row_is_refused(log_model):
    x = np.ones((2, 4), np.float32)  # log(0) of the occluded feature is -inf
    with pytest.raises(ModelExecutionError, match=r"output 'y' is -inf at row 0 of the batch, which belongs to "
                                                  r"explained row 0"):
        ae.Occlusion(log_model, window=(1,)).explain(x, target=0)


def test_a_target_callable_returning_nan_is_a_target_error(linear):
    def nan_for_row_one(outputs):
        scores = outputs[:, 0].astype(np.float64)
        scores[1:2] = np.nan
        return scores

    with pytest.raises(TargetError, match=r"target callable returned nan at row 1 of the batch.*output 'y'"):
        ae.Occlusion(linear, window=(1,)).explain(np.ones((3, 4), np.float32), target=nan_for_row_one)


# -- 4. negative targets ---------------------------------------------------------------------
@pytest.mark.parametrize("target", [-1, np.int64(-3), [0, -1], (-1,), [(0,), (-2,)]])
def test_a_negative_target_is_refused_stating_the_valid_range(target, linear):
    with pytest.raises(TargetError, match=r"out of range for output 'y' of shape \(3,\) per row \(valid: 0\.\.2\)"):
        ae.Occlusion(linear, window=(1,)).explain(np.ones((2, 4), np.float32), target=target)


def test_a_negative_target_is_refused_by_cams_and_jobs(digits, images, tmp_path):
    with pytest.raises(TargetError, match=r"valid: 0\.\.9"):
        ae.ScoreCam(digits).explain(images, target=-1)
    with pytest.raises(TargetError, match=r"valid: 0\.\.9"):
        jobs.explain_dataset(DEFAULT_MODEL_PATH, images, {"method": "occlusion", "params": {"window": [1, 4, 4]},
                                                          "target": -1}, out=tmp_path, devices=["cpu"], progress=False)


# -- 5. numpy out of memory while building a batch -------------------------------------------
def test_a_memory_error_while_building_a_batch_halves_it_and_loses_nothing(linear):
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    feeds = Feeds.prepare(linear, x)
    sizes = []

    def make_rows(start, stop):
        sizes.append(stop - start)
        if stop - start > 6:
            raise MemoryError("Unable to allocate 1.00 TiB for an array")
        return x[start:stop]

    out = evaluate(linear, feeds, n=50, make_rows=make_rows, owners=np.arange(50), reduce=lambda o, own: o,
                   output="y", batch_size=32, progress=False)
    np.testing.assert_allclose(out, linear.predict(x), rtol=1e-6)
    assert max(sizes) == 32 and sizes[-1] <= 6 and sizes[sizes.index(32) + 1] == 16


def test_a_memory_error_in_the_producer_thread_is_handled_too(linear):
    x = np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32)
    feeds = Feeds.prepare(linear, x)

    def make_rows(start, stop):
        if start > 0 and stop - start > 4:  # only the batches built ahead, on the producer thread
            raise MemoryError()
        return x[start:stop]

    out = evaluate(linear, feeds, n=40, make_rows=make_rows, owners=np.arange(40), reduce=lambda o, own: o,
                   output="y", batch_size=8, progress=False)
    np.testing.assert_allclose(out, linear.predict(x), rtol=1e-6)


def test_a_memory_error_on_one_row_is_an_out_of_memory_error(linear):
    x = np.ones((4, 4), np.float32)

    def make_rows(start, stop):
        raise MemoryError("no memory at all")

    with pytest.raises(OutOfMemoryError, match=r"batch of one row.*MemoryError: no memory at all") as raised:
        evaluate(linear, Feeds.prepare(linear, x), n=4, make_rows=make_rows, owners=np.arange(4),
                 reduce=lambda o, own: o, output="y", batch_size=4, progress=False)
    assert isinstance(raised.value.__cause__, MemoryError)


# -- 7. loose arguments ---------------------------------------------------------------------
@pytest.mark.parametrize("random_state, why", [(-1, "negative"), ("a", "str"), (1.5, "float"), (True, "a bool"),
                                               ([1, 2], "list")])
def test_as_generator_refuses_what_numpy_would_fail_on_obscurely(random_state, why):
    with pytest.raises(ParameterError, match=rf"random_state must be None, a non-negative int or a numpy\.random\."
                                             rf"Generator, got .* \({why}\)"):
        as_generator(random_state)


def test_as_generator_accepts_the_usual_seeds():
    generator = np.random.default_rng(3)
    assert as_generator(generator) is generator
    assert as_generator(np.int64(5)).random() == np.random.default_rng(5).random()
    assert as_generator(2**80).random() == np.random.default_rng(2**80).random()
    assert isinstance(as_generator(None), np.random.Generator)
    assert isinstance(as_generator(np.random.SeedSequence(1)), np.random.Generator)


@pytest.mark.parametrize("random_state", [-1, "a", 1.5])
def test_explain_refuses_a_bad_random_state_with_a_parameter_error(random_state, linear):
    with pytest.raises(ParameterError, match="random_state"):
        ae.Rise(linear, n_masks=4, cells=2).explain(np.ones((1, 4), np.float32), target=0, random_state=random_state)


@pytest.mark.parametrize("random_state", [-1, "a", 1.5])
def test_metrics_refuse_a_bad_random_state(random_state, linear):
    from agnostic_explain.metrics.deletion import random_attribution

    explanation = ae.Occlusion(linear, window=(1,)).explain(np.ones((2, 4), np.float32), target=0)
    with pytest.raises(ParameterError, match="random_state"):
        random_attribution(explanation, random_state=random_state)


@pytest.mark.parametrize("fixed_inputs", ["str", "", ["z"], 3])
def test_fixed_inputs_must_be_a_dict(fixed_inputs, linear):
    with pytest.raises(ParameterError, match=r"fixed_inputs must be a dict of input name to array, got"):
        ae.Occlusion(linear, window=(1,)).explain(np.ones((2, 4), np.float32), target=0, fixed_inputs=fixed_inputs)


@pytest.mark.parametrize("window, stride, message", [
    ((1, 2.5, 2), None, r"window entries must be ints, got 2\.5 \(float\)"),
    ((1, 2.0, 2), None, r"window entries must be ints, got 2\.0 \(float\)"),
    ((1, 2, 2), (1, 1.5, 1), r"stride entries must be ints, got 1\.5 \(float\)"),
    ((1, True, 2), None, r"window entries must be ints, got True \(bool\)"),
    ((1, "2", 2), None, r"window entries must be ints, got '2' \(str\)"),
])
def test_occlusion_refuses_windows_and_strides_that_are_not_ints(window, stride, message, digits, images):
    with pytest.raises(ParameterError, match=message):
        ae.Occlusion(digits, window=window, stride=stride).explain(images)


def test_occlusion_still_takes_numpy_ints(digits, images):
    explanation = ae.Occlusion(digits, window=np.array([1, 4, 4]), stride=(np.int64(1), 4, 4)).explain(images)
    assert explanation.values.shape == images.shape


@pytest.mark.parametrize("n_masks, cells", [(10**13, 8), (10**6, 10**3), (1, 10**6)])
def test_rise_refuses_mask_counts_beyond_the_memory_budget_before_allocating(n_masks, cells, digits, images,
                                                                                monkeypatch):
    import agnostic_explain.explainers.rise as rise

    def no_draw(*args, **kwargs):
        raise AssertionError("draw_masks must not be reached")

    monkeypatch.setattr(rise, "draw_masks", no_draw)
    with pytest.raises(ParameterError, match=rf"n_masks={n_masks} with cells={cells} .* GiB allowed"):
        ae.Rise(digits, n_masks=n_masks, cells=cells).explain(images)
    assert SAMPLE_BUDGET >= 1 << 30


def test_lime_refuses_sample_counts_beyond_the_memory_budget_before_drawing(digits, images):
    explainer = ae.LimeImage(digits, segmentation=np.arange(64).reshape(8, 8) // 16, num_samples=10**12)
    with pytest.raises(ParameterError, match=r"num_samples=1000000000000 for 2 row\(s\) needs about .* GiB"):
        explainer.explain(images)


@pytest.mark.parametrize("module", ["agnostic_explain.seeds", "agnostic_explain.jobs.integrity",
                                    "agnostic_explain.perturbation.baselines", "agnostic_explain.explainers.budget"])
def test_doctests_of_the_new_helpers(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
