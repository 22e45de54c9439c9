"""Generative models: latent attribution, sensitivity maps and traversals of a decoder.

The main claim: for a small VAE-style decoder, occluding one latent dimension moves the output
measurably, and LatentAttribution ranks the dimensions exactly as that measured movement does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from conftest import float_input, make_model, weights
from onnx import helper

from agnostic_explain.errors import InputShapeError, ParameterError
from agnostic_explain.inspection.generative import LatentAttribution, latent_traversal, sensitivity_map
from agnostic_explain.plot.generative import traversal_grid

LATENT, HIDDEN, PIXELS = 4, 16, 64
# Latent dims scaled differently so their effects on the output are well separated.
SCALES = np.array([0.3, 2.0, 1.0, 0.6], dtype=np.float32)


@pytest.fixture(scope="module")
def decoder():
    """sigmoid(tanh(z W1 + b1) W2 + b2): a 4-16-64 decoder with fixed weights, flat 8x8 output."""
    w1 = weights(1, LATENT, HIDDEN) * SCALES[:, None]
    b1, w2, b2 = weights(2, HIDDEN) * 0.1, weights(3, HIDDEN, PIXELS), weights(4, PIXELS) * 0.1
    proto = make_model(
        [helper.make_node("MatMul", ["z", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"]),
         helper.make_node("Tanh", ["a1"], ["h"]), helper.make_node("MatMul", ["h", "w2"], ["m2"]),
         helper.make_node("Add", ["m2", "b2"], ["a2"]), helper.make_node("Sigmoid", ["a2"], ["image"])],
        [float_input("z", ["N", LATENT])], [float_input("image", ["N", PIXELS])],
        [("w1", w1), ("b1", b1), ("w2", w2), ("b2", b2)],
    )
    return proto


def decode(proto, z):
    """The decoder run directly by ONNX Runtime, outside the package."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"z": np.asarray(z, np.float32)})[0].astype(np.float64)


LATENTS = np.random.default_rng(0).normal(size=(5, LATENT)).astype(np.float32)


def measured_effects(proto, z):
    """||decode(z with dim k set to 0) - decode(z)||^2, shape (n, latent_dim), by direct decoding."""
    reference = decode(proto, z)
    effects = np.empty((len(z), LATENT))
    for k in range(LATENT):
        occluded = z.copy()
        occluded[:, k] = 0.0
        effects[:, k] = ((decode(proto, occluded) - reference) ** 2).sum(axis=1)
    return effects


def test_occluding_a_latent_moves_the_output_and_attribution_ranks_by_it(decoder):
    effects = measured_effects(decoder, LATENTS)
    assert effects.min() > 1e-3  # every dimension moves the decoded image measurably
    explanation = LatentAttribution(decoder, method="occlusion", target="distance").explain(LATENTS)
    assert explanation.values.shape == (len(LATENTS), LATENT)
    np.testing.assert_allclose(explanation.extras["effect"], effects, rtol=1e-4, atol=1e-6)
    for row in range(len(LATENTS)):
        # the most negative attribution is the most influential dimension: exact same order
        np.testing.assert_array_equal(np.argsort(explanation.values[row]), np.argsort(-effects[row]))
    np.testing.assert_allclose(explanation.base_values, 0.0, atol=1e-9)  # distance to itself


def test_kernel_shap_distance_sums_to_the_fully_removed_distance(decoder):
    """Efficiency: the Shapley values add up to target(z) - target(baseline) = -||decode(0) - decode(z)||^2."""
    z = LATENTS[:2]
    explanation = LatentAttribution(decoder, method="kernel_shap").explain(z, random_state=0)
    full = ((decode(decoder, np.zeros_like(z)) - decode(decoder, z)) ** 2).sum(axis=1)
    np.testing.assert_allclose(explanation.values.sum(axis=1), -full, rtol=1e-4)


def test_region_and_callable_targets(decoder):
    region = np.zeros((8, 8), dtype=bool)
    region[:4] = True
    by_region = LatentAttribution(decoder, target="region", region=region).explain(LATENTS)
    by_callable = LatentAttribution(decoder, target=lambda out: out[:, :32].sum(axis=1)).explain(LATENTS)
    occluded = np.repeat(LATENTS, LATENT, axis=0)
    occluded[np.arange(len(occluded)), np.tile(np.arange(LATENT), len(LATENTS))] = 0.0
    expected = decode(decoder, LATENTS)[:, :32].sum(1)[:, None] - decode(decoder, occluded)[:, :32].sum(1).reshape(
        len(LATENTS), LATENT)
    np.testing.assert_allclose(by_region.values, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(by_callable.values, expected, rtol=1e-4, atol=1e-5)


def test_sensitivity_map_matches_finite_differences(decoder):
    z, delta = LATENTS[0], 0.25
    result = sensitivity_map(decoder, z, delta=delta)
    assert result.shape == (LATENT, PIXELS)
    reference = decode(decoder, z[None])[0]
    for k in range(LATENT):
        stepped = z.copy()
        stepped[k] += delta
        np.testing.assert_allclose(result[k], np.abs(decode(decoder, stepped[None])[0] - reference), atol=1e-6)
    assert np.argmax(result.sum(axis=1)) == np.argmax(SCALES)  # the largest-scaled dimension moves most


def test_traversal_is_one_batched_call_equal_to_direct_decoding(decoder):
    from agnostic_explain.runtime.callable import CallableModel

    calls = []
    model = CallableModel(lambda rows: calls.append(len(rows)) or decode(decoder, rows), batch_size=64)
    values = np.linspace(-2, 2, 9)
    traversal = latent_traversal(model, LATENTS[1], 2, values)
    assert calls == [len(values)]
    expected_z = np.repeat(LATENTS[1:2], len(values), axis=0)
    expected_z[:, 2] = values
    np.testing.assert_allclose(traversal, decode(decoder, expected_z), atol=1e-6)


def test_traversal_grid_draws_rows_of_dims_and_columns_of_values(decoder, tmp_path):
    figure = traversal_grid(decoder, LATENTS[0], [0, 1, 3], [-1.0, 0.0, 1.0, 2.0], image_shape=(8, 8))
    assert len(figure.axes) == 12
    image = figure.axes[5].images[0].get_array()  # row 1 (dim 1), column 1 (value 0)
    z = LATENTS[0].copy()
    z[1] = 0.0
    np.testing.assert_allclose(image, decode(decoder, z[None])[0].reshape(8, 8), atol=1e-6)
    figure.savefig(tmp_path / "grid.png")
    with pytest.raises(ParameterError, match="image_shape"):
        traversal_grid(decoder, LATENTS[0], [0], [0.0], image_shape=(7, 7))
    with pytest.raises(ParameterError, match="image_shape"):
        traversal_grid(decoder, LATENTS[0], [0], [0.0])  # flat rows need image_shape


@pytest.mark.parametrize("call", [
    lambda d: LatentAttribution(d).explain(np.zeros((2, 5))),
    lambda d: sensitivity_map(d, np.zeros(3)),
    lambda d: latent_traversal(d, np.zeros((1, 6)), 0, [0.0]),
])
def test_a_latent_of_the_wrong_size_names_the_expected_size(decoder, call):
    with pytest.raises(InputShapeError, match=f"latents of size {LATENT}"):
        call(decoder)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "pixels"}, "target must be one of"),
    ({"target": "region"}, "needs region="),
    ({"target": "region", "region": np.ones((8, 8))}, "boolean mask"),
    ({"target": "region", "region": np.ones(10, dtype=bool)}, "region has 10 elements"),
    ({"region": np.ones(64, dtype=bool)}, "only used with target='region'"),
    ({"method": "lime"}, "method must be one of"),
    ({"baseline": np.zeros(3)}, "baseline must be"),
])
def test_bad_parameters_are_named(decoder, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        LatentAttribution(decoder, **kwargs).explain(LATENTS[:1])


def test_bad_traversal_arguments(decoder):
    with pytest.raises(ParameterError, match="dim must be an int in 0..3"):
        latent_traversal(decoder, LATENTS[0], 4, [0.0])
    with pytest.raises(ParameterError, match="values must be"):
        latent_traversal(decoder, LATENTS[0], 0, [])
    with pytest.raises(ParameterError, match="delta"):
        sensitivity_map(decoder, LATENTS[0], delta=0.0)


def test_vae_digits_example_runs_and_its_attribution_matches_measured_effects(tmp_path):
    pytest.importorskip("torch")
    path = Path(__file__).resolve().parents[1] / "examples" / "vae_digits.py"
    spec = importlib.util.spec_from_file_location("vae_digits", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(tmp_path)

    for written in results["paths"].values():
        assert written.stat().st_size > 1000
    assert (tmp_path / "results.json").exists()
    latents, attribution = results["latents"], results["attribution"]
    assert attribution.values.shape == (3, 4) and results["means"].shape == (1797, 4)
    effects = np.empty_like(attribution.values)
    session = onnxruntime.InferenceSession(results["decoder"].SerializeToString(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    reference = session.run(None, {name: latents})[0]
    for k in range(4):
        occluded = latents.copy()
        occluded[:, k] = 0.0
        effects[:, k] = ((session.run(None, {name: occluded})[0] - reference) ** 2).sum(axis=1)
    np.testing.assert_allclose(attribution.extras["effect"], effects, rtol=1e-3, atol=1e-6)
    assert effects.max(axis=1).min() > 0.1  # some latent dimension moves every decoded digit
    # The discriminator scores real digits as real, and both explainers return per-pixel maps.
    assert (results["discriminator_occlusion"].base_values > 0).all()
    assert results["discriminator_occlusion"].values.shape == (3, 1, 8, 8)
    assert results["discriminator_rise"].values.shape == (3, 1, 8, 8)
