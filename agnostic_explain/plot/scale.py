"""The colour scale of an image map: diverging around zero, or sequential over the map's own range.

One rule for every figure that draws an attribution map (overlays, grids, comparisons, the
report), so that the same map reads the same everywhere:

- ``signed=False``: ``|attribution|``, sequential (from zero, or over its own range as below);
- a saliency method (RISE, Score-CAM, Ablation-CAM, Grad-CAM): sequential over the map's own
  range, min to max, as pytorch-grad-cam and the RISE paper show it. These maps are
  non-negative scores with no meaningful zero (RISE's saliency carries a large common offset,
  the expected score under random masks), so only their order matters;
- any other map with values on both sides of zero: diverging (white at zero), limits
  symmetric, as Captum's ``sign="all"``;
- a map of one sign: sequential from zero (Captum's ``sign="positive"``), unless a common
  offset dominates it (its values all lie farther from zero than they spread, so a scale
  from zero would paint the whole map in one strong colour): then over its own range.

>>> import numpy as np
>>> scale = colour_scale([np.array([[0.9, 1.0], [1.1, 1.2]])], method="rise")
>>> scale.cmap, (scale.low, scale.high), scale.label
('Reds', (0.9, 1.2), 'saliency')
>>> colour_scale([np.array([[-1.0, 3.0]])], method="occlusion")[:3]
(-3.0, 3.0, 'RdBu_r')
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["SALIENCY_METHODS", "ColourScale", "colour_scale"]

#: methods whose maps are saliency scores (non-negative, no meaningful zero): drawn over their own range
SALIENCY_METHODS = frozenset({"rise", "score_cam", "ablation_cam", "grad_cam", "grad_cam_plus_plus"})


class ColourScale(NamedTuple):
    """Colour limits, colormap and colorbar label of a map; ``strong`` is the end drawn most opaque."""

    low: float
    high: float
    cmap: str
    label: str
    diverging: bool
    strong: str = "high"  # "high", "low" (a map of negative values) or "both" (diverging)

    def intensity(self, heat: np.ndarray) -> np.ndarray:
        """Where each value sits on the scale, 0 (transparent end) to 1 (strongest colour)."""
        span = (self.high - self.low) or 1.0
        if self.diverging:
            return np.clip(np.abs(heat) / (span / 2), 0.0, 1.0)
        position = np.clip((heat - self.low) / span, 0.0, 1.0)
        return position if self.strong == "high" else 1.0 - position


def colour_scale(heats, *, method=None, signed=True, cmap=None) -> ColourScale:
    """The colour scale of one map, or the one scale shared by several (the union of their values).

    Parameters
    ----------
    heats : sequence of ndarray
        The maps as drawn (channel-summed; already ``|.|`` when ``signed`` is False).
    method : str or sequence of str, optional
        The explanation method(s); all in :data:`SALIENCY_METHODS` makes a saliency scale.
    signed : bool
        False: the maps are ``|attribution|``.
    cmap : str, optional
        Overrides the colormap ("RdBu_r" diverging, "Reds" sequential, "Blues_r" for a negative map).

    Returns
    -------
    ColourScale
    """
    values = np.concatenate([np.asarray(heat, dtype=np.float64).ravel() for heat in heats])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    methods = [method] if method is None or isinstance(method, str) else list(method)
    saliency = bool(methods) and all(name in SALIENCY_METHODS for name in methods)
    if saliency:
        return _sequential(low, high, cmap, "saliency" if signed else "|saliency|", from_zero=False)
    if not signed:
        return _sequential(low, high, cmap, "|attribution|", from_zero=not _offset(low, high))
    if low < 0.0 < high:
        limit = max(-low, high)
        return ColourScale(-limit, limit, cmap or "RdBu_r", "attribution (signed)", True, "both")
    offset = _offset(low, high)
    label = "attribution (one sign, own range)" if offset else "attribution (one sign)"
    return _sequential(low, high, cmap, label, from_zero=not offset)


def _offset(low: float, high: float) -> bool:
    """Whether a one-signed map lies farther from zero than it spreads (a common offset dominates)."""
    nearest = low if low >= 0.0 else (-high if high <= 0.0 else 0.0)
    return nearest > high - low


def _sequential(low: float, high: float, cmap, label: str, *, from_zero: bool) -> ColourScale:
    negative = high <= 0.0 and low < 0.0
    if from_zero or high <= low:  # a constant map has no range of its own: from zero
        low, high = (low, 0.0) if negative else (0.0, high)
    if high <= low:  # all zero
        high = 1.0
    return ColourScale(low, high, cmap or ("Blues_r" if negative else "Reds"), label, False,
                       "low" if negative else "high")
