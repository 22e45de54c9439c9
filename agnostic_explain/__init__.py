"""agnostic-explain: explain any model through its ONNX export, on ONNX Runtime.

>>> import agnostic_explain as ae
>>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
>>> images, labels = load_samples()
>>> explanation = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 2, 2)).explain(images[:2])
>>> explanation.values.shape
(2, 1, 8, 8)
"""

from . import errors
from . import graph, masks, metrics, report, summary
from .activations import Activations, LayerActivations
from .background import Background, summarize
from .explainers import (
    AblationCam,
    Explainer,
    FeatureAblation,
    KernelShap,
    LimeImage,
    LimeTabular,
    LimeText,
    Occlusion,
    PermutationImportance,
    Rise,
    ScoreCam,
    ShapleySampling,
    UnitAblation,
)
from .explanation import Explanation
from .generative import LatentAttribution, latent_traversal, sensitivity_map
from .global_surrogate import GlobalSurrogate
from .partial_dependence import PartialDependence, partial_dependence
from .runtime import CallableModel, Model, OnnxModel, TensorSpec, load
from . import jobs  # noqa: E402 - after the runtime and explainers it uses

__version__ = "0.1.0"

__all__ = sorted(
    [
        "AblationCam",
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
        "UnitAblation",
        "errors",
        "graph",
        "jobs",
        "latent_traversal",
        "load",
        "masks",
        "metrics",
        "partial_dependence",
        "report",
        "sensitivity_map",
        "summarize",
        "summary",
    ]
)
