"""Explainers: each one overrides ``Explainer._attribute`` and shares the rest."""

from .base import Explainer
from .occlusion import Occlusion

__all__ = ["Explainer", "Occlusion"]
