"""Explainers: each one overrides ``Explainer._attribute`` and shares the rest."""

from .ablation import FeatureAblation
from .base import Explainer
from .occlusion import Occlusion
from .permutation import PermutationImportance
from .rise import Rise

__all__ = ["Explainer", "FeatureAblation", "Occlusion", "PermutationImportance", "Rise"]
