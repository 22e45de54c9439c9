"""GradientShap and SmoothGrad against Captum with the same random draws.

Captum draws with ``torch.normal`` (noise), ``np.random.choice`` (background rows) and
``np.random.uniform`` (path points); the tests hand it ours through those functions, so the
comparison is exact rather than statistical.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradient_cases import assert_close
from test_gradient_explainers import cnn, targets_of  # noqa: F401 - the shared fixture

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.explainers.gradient_shap import gradient_shap_draws

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")


def feed_draws(monkeypatch, noise=None, index=None, alpha=None):
    """Make Captum's next draws return these arrays (flattened row-major: row, then sample)."""
    if noise is not None:
        flat = torch.tensor(noise.reshape(-1, *noise.shape[2:]))
        monkeypatch.setattr(torch, "normal", lambda mean, std, *args, **kwargs: flat.clone())
    if index is not None:
        monkeypatch.setattr(np.random, "choice", lambda *args, **kwargs: index.reshape(-1))
    if alpha is not None:
        monkeypatch.setattr(np.random, "uniform", lambda *args, **kwargs: alpha.reshape(-1))


@pytest.mark.parametrize("stdev", [0.0, 0.2])
def test_gradient_shap_matches_captum_with_the_same_draws(cnn, monkeypatch, stdev):  # noqa: F811
    net, model, images = cnn
    background = np.random.default_rng(5).normal(size=(4, 3, 16, 16)).astype(np.float32)
    ours = ae.GradientShap(model, background, n_samples=6, stdev=stdev).explain(images, target=2, random_state=3)
    weights = np.full(4, 0.25)
    noise, index, alpha = gradient_shap_draws(np.random.default_rng(3), images, weights, 6, stdev)
    feed_draws(monkeypatch, noise, index, alpha)
    expected = captum_attr.GradientShap(net).attribute(
        torch.tensor(images), baselines=torch.tensor(background), n_samples=6, stdevs=stdev, target=2)
    assert_close(ours.values, expected.detach().numpy())
    assert ours.n_evals == 3 + 3 * 6


def test_gradient_shap_is_deterministic_and_checks_parameters(cnn):  # noqa: F811
    _, model, images = cnn
    background = images[:2]
    first = ae.GradientShap(model, background, n_samples=3).explain(images, random_state=1).values
    np.testing.assert_array_equal(first, ae.GradientShap(model, background, n_samples=3).explain(
        images, random_state=1).values)
    with pytest.raises(ParameterError, match="n_samples"):
        ae.GradientShap(model, background, n_samples=0).explain(images)
    with pytest.raises(ParameterError, match="stdev"):
        ae.GradientShap(model, background, stdev=-1).explain(images)
    with pytest.raises(ParameterError, match="background"):
        ae.GradientShap(model, background[:, :2]).explain(images)


@pytest.mark.parametrize("kind", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("inner", ["saliency", "input_x_gradient", "integrated_gradients"])
def test_smooth_grad_matches_captum_noise_tunnel(cnn, monkeypatch, kind, inner):  # noqa: F811
    net, model, images = cnn
    ours_inner, theirs_inner, kwargs = {
        "saliency": (ae.Saliency(model), captum_attr.Saliency(net), {}),
        "input_x_gradient": (ae.InputXGradient(model), captum_attr.InputXGradient(net), {}),
        "integrated_gradients": (ae.IntegratedGradients(model, steps=8), captum_attr.IntegratedGradients(net),
                                 {"n_steps": 8}),
    }[inner]
    ours = ae.SmoothGrad(ours_inner, n_samples=5, stdev=0.3, kind=kind).explain(images, target="predicted",
                                                                              random_state=4)
    noise = np.random.default_rng(4).normal(0.0, 0.3, size=(3, 5, 3, 16, 16)).astype(np.float32)
    feed_draws(monkeypatch, noise)
    expected = captum_attr.NoiseTunnel(theirs_inner).attribute(
        torch.tensor(images), nt_type=kind, nt_samples=5, stdevs=0.3, target=torch.tensor(targets_of(net, images)),
        **kwargs)
    assert_close(ours.values, expected.detach().numpy())
    assert ours.params["explainer"] == inner and ours.params["kind"] == kind


def test_smooth_grad_of_a_model_wraps_saliency_and_checks_parameters(cnn):  # noqa: F811
    _, model, images = cnn
    explanation = ae.SmoothGrad(model, n_samples=2).explain(images[:1], random_state=0)
    assert explanation.params["explainer"] == "saliency" and explanation.n_evals == 1 + 2
    with pytest.raises(ParameterError, match="kind"):
        ae.SmoothGrad(model, kind="median").explain(images[:1])
    with pytest.raises(ParameterError, match="gradient explainer"):
        ae.SmoothGrad(ae.Occlusion(model)).explain(images[:1])
