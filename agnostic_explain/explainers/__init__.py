"""Explainers: each one overrides ``Explainer._attribute`` and shares the rest."""

from .ablation import FeatureAblation
from .cam import AblationCam, ScoreCam
from .base import Explainer
from .kernel_shap import KernelShap
from .lime import LimeImage, LimeTabular, LimeText
from .occlusion import Occlusion
from .rise import Rise
from .shapley_sampling import ShapleySampling
from .tree_shap import TreeShap
from .unit_ablation import UnitAblation

__all__ = [
    "AblationCam",
    "Explainer",
    "FeatureAblation",
    "KernelShap",
    "LimeImage",
    "LimeTabular",
    "LimeText",
    "Occlusion",
    "Rise",
    "ScoreCam",
    "ShapleySampling",
    "TreeShap",
    "UnitAblation",
]
