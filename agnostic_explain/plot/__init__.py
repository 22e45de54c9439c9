"""Figures of explanations, activations, weights and graphs; one module per kind of figure,
matplotlib imported lazily.

Functions draw on a given Axes, or on a new headless ``matplotlib.figure.Figure`` (Agg
canvas), and never call ``plt.show()`` or change the global backend: save with
``ax.figure.savefig(path)`` or ``figure.savefig(path)``.
"""

from .activations import activation_maps, embedding_plot, trajectory
from .image import image_grid, image_overlay

__all__ = ["activation_maps", "embedding_plot", "image_grid", "image_overlay", "trajectory"]
