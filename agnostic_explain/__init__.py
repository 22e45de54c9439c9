"""agnostic-explain: explain any model through its ONNX export, on ONNX Runtime.

>>> import agnostic_explain as ae
>>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
>>> images, labels = load_samples()
>>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
>>> explanation.values.shape
(2, 1, 8, 8)
"""

from . import errors, graph, jobs, metrics, report
from .activations import Activations, LayerActivations
from .explainers import (
    AblationCam,
    DeepLift,
    Explainer,
    FeatureAblation,
    GradCam,
    GradCamPlusPlus,
    GradientShap,
    GuidedBackprop,
    GuidedGradCam,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LimeImage,
    LimeTabular,
    LimeText,
    Occlusion,
    Rise,
    Saliency,
    ScoreCam,
    ShapleySampling,
    SmoothGrad,
    TreeShap,
    UnitAblation,
)
from .explanation import Explanation
from .io import read_input
from .inspection import (
    GlobalSurrogate,
    LatentAttribution,
    PartialDependence,
    PermutationImportance,
    latent_traversal,
    partial_dependence,
    sensitivity_map,
)
from .perturbation import Background, masks, summarize
from .report import summary
from .runtime import CallableModel, Model, OnnxModel, TensorSpec, load

from ._version import __version__  # noqa: E402

__all__ = sorted(
    [
        "AblationCam",
        "DeepLift",
        "LayerGradientXActivation",
        "GuidedGradCam",
        "GuidedBackprop",
        "SmoothGrad",
        "GradientShap",
        "LayerIntegratedGradients",
        "GradCamPlusPlus",
        "GradCam",
        "Saliency",
        "IntegratedGradients",
        "InputXGradient",
        "Activations",
        "Background",
        "CallableModel",
        "Explainer",
        "Explanation",
        "GlobalSurrogate",
        "FeatureAblation",
        "KernelShap",
        "LatentAttribution",
        "LayerActivations",
        "LimeImage",
        "LimeTabular",
        "LimeText",
        "Model",
        "Occlusion",
        "OnnxModel",
        "PartialDependence",
        "PermutationImportance",
        "Rise",
        "ScoreCam",
        "ShapleySampling",
        "TensorSpec",
        "TreeShap",
        "UnitAblation",
        "errors",
        "graph",
        "jobs",
        "latent_traversal",
        "load",
        "masks",
        "metrics",
        "partial_dependence",
        "read_input",
        "report",
        "sensitivity_map",
        "summarize",
        "summary",
    ]
)
