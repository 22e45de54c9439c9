"""Figures of explanations, activations, weights and graphs; one module per kind of figure,
matplotlib imported lazily.

Functions draw on a given Axes, or on a new headless ``matplotlib.figure.Figure`` (Agg
canvas), and never call ``plt.show()`` or change the global backend: save with
``ax.figure.savefig(path)`` or ``figure.savefig(path)``.
"""

from .activations import activation_maps, embedding_plot, trajectory
from .image import image_grid, image_overlay
from .topology import topology
from .weights import filter_grid, weight_heatmap, weight_histograms

__all__ = [
    "activation_maps", "embedding_plot", "filter_grid", "image_grid", "image_overlay", "topology", "trajectory",
    "weight_heatmap", "weight_histograms",
]
