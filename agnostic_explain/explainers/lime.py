"""LIME (Ribeiro et al. 2016) for tables, images and token sequences, with lime's defaults.

The three explainers share the batched surrogate fits of :mod:`agnostic_explain.surrogates`;
each lives in its own module.
"""

from __future__ import annotations

from .lime_image import LimeImage
from .lime_tabular import LimeTabular
from .lime_text import LimeText

__all__ = ["LimeImage", "LimeTabular", "LimeText"]
