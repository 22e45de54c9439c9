"""Explainers: each one overrides ``Explainer._attribute`` and shares the rest."""

from .ablation import FeatureAblation
from .cam import AblationCam, ScoreCam
from .base import Explainer
from .deep_lift import DeepLift
from .grad_cam import GradCam, GradCamPlusPlus
from .gradient_shap import GradientShap
from .guided import GuidedBackprop, GuidedGradCam
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .kernel_shap import KernelShap
from .layer_gradient_x_activation import LayerGradientXActivation
from .layer_integrated_gradients import LayerIntegratedGradients
from .lime import LimeImage, LimeTabular, LimeText
from .occlusion import Occlusion
from .rise import Rise
from .saliency import Saliency
from .shapley_sampling import ShapleySampling
from .smooth_grad import SmoothGrad
from .tree_shap import TreeShap
from .unit_ablation import UnitAblation

__all__ = [
    "AblationCam",
    "DeepLift",
    "Explainer",
    "FeatureAblation",
    "GradCam",
    "GradCamPlusPlus",
    "GradientShap",
    "GuidedBackprop",
    "GuidedGradCam",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "LayerGradientXActivation",
    "LayerIntegratedGradients",
    "LimeImage",
    "LimeTabular",
    "LimeText",
    "Occlusion",
    "Rise",
    "Saliency",
    "ScoreCam",
    "ShapleySampling",
    "SmoothGrad",
    "TreeShap",
    "UnitAblation",
]
