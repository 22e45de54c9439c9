"""Explanation quality metrics; each is a batch of perturbations on the same runtime.

Every metric takes the model and an Explanation (or an explainer, for those that re-explain)
and returns a result object with the numbers and what is needed to plot them.

- :func:`deletion`, :func:`insertion` (Petsiuk et al. 2018), with :func:`random_curve` as the
  reference a real explanation must beat;
- :func:`infidelity`, :func:`sensitivity_max` (Yeh et al. 2019), as Captum defines them;
- :func:`randomization_check` (Adebayo et al. 2018), cascading through ``graph.randomize``;
- :func:`pointing_game`, :func:`relevance_mass` against boxes or masks;
- :func:`compare`: several explainers through several metrics, as a table.
"""

from .compare import ComparisonResult, compare
from .deletion import CurveResult, deletion, insertion, random_attribution, random_curve
from .infidelity import InfidelityResult, infidelity
from .localisation import PointingResult, channel_summed_maps, pointing_game, relevance_mass
from .sanity import RandomizationResult, randomization_check
from .scoring import Scorer
from .sensitivity import SensitivityResult, sensitivity_max

__all__ = sorted([
    "ComparisonResult", "CurveResult", "InfidelityResult", "PointingResult", "RandomizationResult", "Scorer",
    "SensitivityResult", "channel_summed_maps", "compare", "deletion", "infidelity", "insertion",
    "pointing_game", "random_attribution", "random_curve", "randomization_check", "relevance_mass",
    "sensitivity_max",
])
