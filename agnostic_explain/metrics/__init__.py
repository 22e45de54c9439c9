"""Explanation quality metrics; each is a batch of perturbations on the same runtime.

Every metric takes the model and an Explanation (or an explainer, for those that re-explain)
and returns a result object with the numbers and what is needed to plot them.
"""

from .scoring import Scorer

__all__ = ["Scorer"]
