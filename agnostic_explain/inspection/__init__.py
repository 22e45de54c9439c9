"""Data-set and model-level methods: permutation importance, partial dependence, global surrogates,
and the generative-model tools (latent attribution, traversals, sensitivity maps).

They consume a model and a data set rather than explaining rows one at a time, and they are
built on the explainers and the runtime below them. They may import ``explainers``,
``perturbation``, ``runtime``, ``graph``, ``explanation`` and ``errors``; never ``metrics``,
``jobs``, ``plot``, ``report`` or ``cli``.
"""

from .generative import LatentAttribution, latent_traversal, sensitivity_map
from .global_surrogate import GlobalSurrogate
from .partial_dependence import PartialDependence, partial_dependence
from .permutation import PermutationImportance

__all__ = [
    "GlobalSurrogate",
    "LatentAttribution",
    "PartialDependence",
    "PermutationImportance",
    "latent_traversal",
    "partial_dependence",
    "sensitivity_map",
]
