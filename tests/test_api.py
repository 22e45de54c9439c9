"""The public API: a sorted ``__all__`` whose names resolve, and docstring examples that run."""

from __future__ import annotations

import doctest
import importlib

import pytest

import agnostic_explain as ae

DOCTESTED = [
    "agnostic_explain",
    "agnostic_explain.runtime.loading",
    "agnostic_explain.runtime.callable",
    "agnostic_explain.runtime.binding",
    "agnostic_explain.runtime.sharded",
    "agnostic_explain.graph.fuse",
    "agnostic_explain.explainers.occlusion",
    "agnostic_explain.graph.batch",
    "agnostic_explain.graph.inspect",
    "agnostic_explain.graph.expose",
    "agnostic_explain.graph.explained",
    "agnostic_explain.graph.split",
    "agnostic_explain.graph.randomize",
    "agnostic_explain.explainers.cam",
    "agnostic_explain.explainers.saliency",
    "agnostic_explain.explainers.deep_lift",
    "agnostic_explain.explainers.input_x_gradient",
    "agnostic_explain.explainers.integrated_gradients",
    "agnostic_explain.explainers.grad_cam",
    "agnostic_explain.explainers.layer_integrated_gradients",
    "agnostic_explain.explainers.gradient_shap",
    "agnostic_explain.explainers.smooth_grad",
    "agnostic_explain.explainers.guided",
    "agnostic_explain.explainers.layer_gradient_x_activation",
    "agnostic_explain.explainers.unit_ablation",
    "agnostic_explain.activations.record",
    "agnostic_explain.tables",
    "agnostic_explain.plot.image",
    "agnostic_explain.plot.compare",
    "agnostic_explain.plot.scale",
    "agnostic_explain.plot.tabular",
    "agnostic_explain.plot.dependence",
    "agnostic_explain.explainers.tree_shap",
    "agnostic_explain.explainers.registry",
    "agnostic_explain.plot.text",
    "agnostic_explain.metrics.scoring",
    "agnostic_explain.metrics.deletion",
    "agnostic_explain.metrics.infidelity",
    "agnostic_explain.metrics.sensitivity",
    "agnostic_explain.metrics.sanity",
    "agnostic_explain.metrics.localisation",
    "agnostic_explain.metrics.compare",
    "agnostic_explain.plot.metrics",
    "agnostic_explain.inspection.global_surrogate",
    "agnostic_explain.inspection.partial_dependence",
    "agnostic_explain.inspection.generative",
    "converters.metadata",
    "converters.pytorch",
    "converters.sklearn",
    "agnostic_explain.graph.weights",
    "agnostic_explain.plot.weights",
    "agnostic_explain.plot.topology",
    "agnostic_explain.data",
    "agnostic_explain.jobs",
    "agnostic_explain.jobs.spec",
    "agnostic_explain.jobs.chunks",
    "agnostic_explain.jobs.dataset",
    "agnostic_explain.jobs.worker",
]


def test_all_is_sorted_and_resolves():
    assert ae.__all__ == sorted(ae.__all__)
    assert len(set(ae.__all__)) == len(ae.__all__)
    for name in ae.__all__:
        assert getattr(ae, name) is not None, name


@pytest.mark.parametrize("module", ["agnostic_explain.errors", "agnostic_explain.runtime", "agnostic_explain.graph", "agnostic_explain.explainers", "agnostic_explain.data", "agnostic_explain.metrics", "agnostic_explain.jobs", "converters"])
def test_subpackage_all_resolves(module):
    imported = importlib.import_module(module)
    for name in imported.__all__:
        assert hasattr(imported, name), f"{module}.{name}"


def test_public_classes_are_the_runtime_ones():
    from agnostic_explain.runtime.callable import CallableModel
    from agnostic_explain.runtime.model import Model

    assert ae.CallableModel is CallableModel and issubclass(ae.OnnxModel, Model)
    assert issubclass(ae.Occlusion, ae.Explainer)
    assert ae.Occlusion.method == "occlusion"


@pytest.mark.parametrize("module", DOCTESTED)
def test_doctests(module):
    imported = importlib.import_module(module)
    result = doctest.testmod(imported, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{module} has no examples to run"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {module}"
