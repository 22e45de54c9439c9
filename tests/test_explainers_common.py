"""Every explainer through the same checks: shapes, determinism, shared names, error paths.

A new explainer is covered by adding one entry to ``EXPLAINERS``: a factory taking the model
and a background/training set for a 4-feature tabular model.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import build_linear

import agnostic_explain as ae
from agnostic_explain.errors import InputShapeError, NonFiniteInputError, ParameterError, TargetError

N_FEATURES = 4


def _factories():
    factories = {"occlusion": lambda model, data: ae.Occlusion(model, window=(1,))}
    optional = {
        "feature_ablation": ("FeatureAblation", lambda cls, model, data: cls(model)),
        "kernel_shap": ("KernelShap", lambda cls, model, data: cls(model, background=data[:5])),
        "shapley_sampling": ("ShapleySampling", lambda cls, model, data: cls(model, background=data[:3], n_permutations=4)),
        "lime_tabular": ("LimeTabular", lambda cls, model, data: cls(model, data, num_samples=200)),
        "rise": ("Rise", lambda cls, model, data: cls(model, n_masks=64, cells=2)),
    }
    for key, (name, make) in optional.items():
        cls = getattr(ae, name, None)
        if cls is not None:
            factories[key] = lambda model, data, cls=cls, make=make: make(cls, model, data)
    return factories


EXPLAINERS = _factories()


@pytest.fixture(scope="module")
def case():
    return build_linear(n_features=N_FEATURES, n_classes=3, seed=5)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).normal(size=(40, N_FEATURES)).astype(np.float32)


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_shapes_fields_and_determinism(name, case, data):
    model = ae.load(case.proto, providers="cpu")
    x = data[:3]
    first = EXPLAINERS[name](model, data).explain(x, target=1, random_state=7, progress=False)
    second = EXPLAINERS[name](model, data).explain(x, target=1, random_state=7, progress=False)
    assert first.values.shape == x.shape
    assert np.all(np.isfinite(first.values))
    np.testing.assert_array_equal(first.values, second.values)
    expected_base = (x @ case.W + case.b)[:, 1]
    np.testing.assert_allclose(first.base_values, expected_base, rtol=1e-5, atol=1e-5)
    assert first.n_evals > len(x) and first.seconds > 0
    assert first.target.tolist() == [1, 1, 1]
    assert first.method and first.input_name == "x" and first.output_name == "y"


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_explain_takes_the_shared_names(name, case, data):
    explainer = EXPLAINERS[name](ae.load(case.proto, providers="cpu"), data)
    parameters = inspect.signature(explainer.explain).parameters
    for shared in ("x", "target", "output", "input", "fixed_inputs", "output_transform", "progress", "random_state"):
        assert shared in parameters, f"{name}.explain lacks {shared!r}"


@pytest.mark.parametrize("name", sorted(EXPLAINERS))
def test_error_paths(name, case, data):
    explainer = EXPLAINERS[name](ae.load(case.proto, providers="cpu"), data)
    bad = data[:2].copy()
    bad[0, 1] = np.nan
    with pytest.raises(NonFiniteInputError):
        explainer.explain(bad, target=0)
    with pytest.raises(InputShapeError, match="expects shape"):
        explainer.explain(np.zeros((2, N_FEATURES + 1), dtype=np.float32), target=0)
    with pytest.raises(TargetError, match="out of range"):
        explainer.explain(data[:2], target=3)
    with pytest.raises(ParameterError, match="output_transform"):
        explainer.explain(data[:2], target=0, output_transform="tanh")
