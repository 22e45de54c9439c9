"""infidelity and sensitivity_max: equal to captum.metrics on the same perturbations, and exact on linear models.

How the randomness is shared with Captum: with ``max_examples_per_batch=None`` Captum calls its
``perturb_func`` once, on all rows repeated with ``repeat_interleave`` (row 0's copies first),
which is the order our metrics use. The noise is drawn in numpy beforehand and both sides get a
perturb_func that returns it: for infidelity the test's own perturbations; for sensitivity the
exact draw ``sensitivity_max`` documents (``default_rng(seed).uniform(-r, r, (n_rows * n, ...))``,
FeatureAblation consuming no randomness), added to the inputs as Captum's default_perturb_func does.
"""

from __future__ import annotations

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.metrics.infidelity import infidelity
from agnostic_explain.metrics.sensitivity import sensitivity_max

from conftest import export_torch

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")
captum_metrics = pytest.importorskip("captum.metrics")

RTOL = 1e-5
N_ROWS, N_FEATURES, N_SAMPLES = 4, 5, 6


@pytest.fixture(scope="module")
def mlp():
    """A small tanh MLP, 5 features -> 3 classes: (torch module, ONNX bytes)."""
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).eval()
    return net, export_torch(net, torch.zeros(1, N_FEATURES))


@pytest.fixture(scope="module")
def rows():
    return np.random.default_rng(11).normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def explanation(mlp, rows):
    return ae.FeatureAblation(mlp[1]).explain(rows, target=[0, 2, 1, 2])


def fixed_perturbations(rows, seed=5):
    expanded = np.repeat(rows, N_SAMPLES, axis=0)
    perturbations = np.random.default_rng(seed).normal(0.0, 0.5, size=expanded.shape).astype(np.float32)
    return perturbations, expanded - perturbations


@pytest.mark.parametrize("normalize", [False, True])
def test_infidelity_equals_captum(mlp, rows, explanation, normalize):
    net, onnx_bytes = mlp
    perturbations, perturbed = fixed_perturbations(rows)

    def ours_perturb(given, rng):
        np.testing.assert_array_equal(given, np.repeat(rows, N_SAMPLES, axis=0))
        return perturbations, perturbed

    def captum_perturb(given):
        np.testing.assert_array_equal(given.numpy(), np.repeat(rows, N_SAMPLES, axis=0))
        return torch.from_numpy(perturbations), torch.from_numpy(perturbed)

    ours = infidelity(onnx_bytes, explanation, ours_perturb, n_perturb_samples=N_SAMPLES, normalize=normalize)
    theirs = captum_metrics.infidelity(
        net, captum_perturb, torch.from_numpy(rows), torch.from_numpy(explanation.values.astype(np.float32)),
        target=explanation.target.tolist(), n_perturb_samples=N_SAMPLES, normalize=normalize,
    ).numpy()
    assert ours.values.shape == (N_ROWS,)
    assert ours.n_evals == N_ROWS * (N_SAMPLES + 1)
    assert theirs.min() > 1e-3  # far from zero, so the relative comparison is meaningful
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL)


def test_sensitivity_max_equals_captum(mlp, rows, explanation):
    net, onnx_bytes = mlp
    radius, seed = 0.3, 17
    noise = np.random.default_rng(seed).uniform(-radius, radius, size=(N_ROWS * N_SAMPLES, N_FEATURES))
    noise = torch.from_numpy(noise.astype(np.float32))
    targets = explanation.target.tolist()

    ours = sensitivity_max(ae.FeatureAblation(onnx_bytes), rows, perturb_radius=radius,
                           n_perturb_samples=N_SAMPLES, target=targets, random_state=seed)
    ablation = captum_attr.FeatureAblation(net)
    theirs = captum_metrics.sensitivity_max(
        ablation.attribute, torch.from_numpy(rows), perturb_func=lambda inputs: inputs + noise,
        n_perturb_samples=N_SAMPLES, target=targets, baselines=0.0,
    ).numpy()
    assert ours.values.shape == (N_ROWS,) and ours.sensitivities.shape == (N_ROWS, N_SAMPLES)
    assert ours.n_evals == N_ROWS * (N_FEATURES + 1) * (N_SAMPLES + 1)
    assert theirs.min() > 1e-2
    np.testing.assert_allclose(ours.values, theirs, rtol=RTOL)


def test_infidelity_zero_for_exact_attributions(linear):
    """FeatureAblation on y = x @ W + b (baseline 0) gives W[i, c] x_i: removing features is predicted exactly."""
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    explanation = ae.FeatureAblation(linear.proto).explain(x, target=[0, 1, 2])
    np.testing.assert_allclose(explanation.values, x * linear.W[:, [0, 1, 2]].T, rtol=1e-5, atol=1e-6)

    def drop_features(given, rng):
        mask = (rng.random(given.shape) < 0.5).astype(given.dtype)
        return mask, given * (1 - mask)

    exact = infidelity(linear.proto, explanation, drop_features, n_perturb_samples=20, random_state=1)
    assert np.all(exact.values < 1e-9)

    def drop_scaled(given, rng):  # the perturbation in input units: wrong for input-multiplied attributions
        mask = (rng.random(given.shape) < 0.5).astype(given.dtype)
        return mask * given, given * (1 - mask)

    assert np.all(infidelity(linear.proto, explanation, drop_scaled, n_perturb_samples=20, random_state=1).values > 1e-3)


def test_infidelity_normalize_removes_attribution_scale(linear):
    x = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
    explanation = ae.FeatureAblation(linear.proto).explain(x, target=1)
    scaled = ae.Explanation(**{**vars(explanation), "values": 3.0 * explanation.values})

    def drop_features(given, rng):
        mask = (rng.random(given.shape) < 0.5).astype(given.dtype)
        return mask, given * (1 - mask)

    plain = infidelity(linear.proto, scaled, drop_features, n_perturb_samples=8, random_state=4)
    normalized = infidelity(linear.proto, scaled, drop_features, n_perturb_samples=8, random_state=4, normalize=True)
    assert np.all(plain.values > 1e-3) and np.all(normalized.values < 1e-9)


def test_sensitivity_of_linear_ablation_by_hand(linear):
    """attr(x) = W[:, c] * x, so ||attr(x + e) - attr(x)|| / ||attr(x)|| = ||W[:, c] * e|| / ||W[:, c] * x||."""
    x = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
    radius, n, seed = 0.1, 5, 9
    result = sensitivity_max(ae.FeatureAblation(linear.proto), x, perturb_radius=radius, n_perturb_samples=n,
                             target=[2, 0], random_state=seed)
    noise = np.random.default_rng(seed).uniform(-radius, radius, size=(2 * n, 4)).astype(np.float32)
    w = linear.W[:, [2, 0]].T.astype(np.float64)  # (rows, features)
    expected = (np.linalg.norm(np.repeat(w, n, axis=0) * noise, axis=1).reshape(2, n)
                / np.linalg.norm(w * x, axis=1)[:, None])
    np.testing.assert_allclose(result.sensitivities, expected, rtol=1e-4)
    np.testing.assert_allclose(result.values, expected.max(axis=1), rtol=1e-4)
    inf_norm = sensitivity_max(ae.FeatureAblation(linear.proto), x, perturb_radius=radius, n_perturb_samples=n,
                               target=[2, 0], random_state=seed, norm=np.inf)
    expected_inf = (np.abs(np.repeat(w, n, axis=0) * noise).max(axis=1).reshape(2, n)
                    / np.abs(w * x).max(axis=1)[:, None])
    np.testing.assert_allclose(inf_norm.sensitivities, expected_inf, rtol=1e-4)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_n_perturb_samples(linear, bad):
    x = np.ones((1, 4), dtype=np.float32)
    explanation = ae.FeatureAblation(linear.proto).explain(x, target=0)
    with pytest.raises(ParameterError, match="n_perturb_samples"):
        infidelity(linear.proto, explanation, lambda r, g: (r, r), n_perturb_samples=bad)
    with pytest.raises(ParameterError, match="n_perturb_samples"):
        sensitivity_max(ae.FeatureAblation(linear.proto), x, n_perturb_samples=bad, target=0)


@pytest.mark.parametrize(
    ("perturb_func", "match"),
    [
        pytest.param(lambda r, g: r, "tuple", id="not-a-pair"),
        pytest.param(lambda r, g: (r[:-1], r[:-1]), r"perturbations of shape \(2, 4\)", id="too-few-rows"),
        pytest.param(lambda r, g: (r, r.reshape(len(r), 2, 2)), r"perturbed_rows of shape", id="row-shape"),
    ],
)
def test_perturb_func_wrong_shapes(linear, perturb_func, match):
    x = np.ones((1, 4), dtype=np.float32)
    explanation = ae.FeatureAblation(linear.proto).explain(x, target=0)
    with pytest.raises(ParameterError, match=match):
        infidelity(linear.proto, explanation, perturb_func, n_perturb_samples=3)


def test_sensitivity_bad_parameters(linear):
    x = np.ones((1, 4), dtype=np.float32)
    explainer = ae.FeatureAblation(linear.proto)
    with pytest.raises(ParameterError, match="perturb_radius"):
        sensitivity_max(explainer, x, perturb_radius=-0.1, target=0)
    with pytest.raises(ParameterError, match="norm"):
        sensitivity_max(explainer, x, norm="nuc", target=0)
