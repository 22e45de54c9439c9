"""Explainers: each one overrides ``Explainer._attribute`` and shares the rest."""

from .ablation import FeatureAblation
from .base import Explainer
from .kernel_shap import KernelShap
from .occlusion import Occlusion
from .permutation import PermutationImportance
from .rise import Rise
from .shapley_sampling import ShapleySampling

__all__ = [
    "Explainer",
    "FeatureAblation",
    "KernelShap",
    "Occlusion",
    "PermutationImportance",
    "Rise",
    "ShapleySampling",
]
