"""Building perturbed rows: feature masks, baselines, backgrounds and the local weighted fits.

Everything here is numpy over rows of one input; it runs no model itself (``coalition_values``
takes a ``run`` function from its caller). It may import ``runtime`` (the compact ``Blend``
description of perturbed rows), ``layout`` and ``errors``; never the explainers above it.
"""

from . import masks
from .background import Background, coalition_values, summarize, validate_background

__all__ = ["Background", "coalition_values", "masks", "summarize", "validate_background"]
