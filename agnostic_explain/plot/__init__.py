"""Figures of explanations, activations, weights and graphs; one module per kind of figure,
matplotlib imported lazily.

Functions draw on a given Axes, or on a new headless ``matplotlib.figure.Figure`` (Agg
canvas), and never call ``plt.show()`` or change the global backend: save with
``ax.figure.savefig(path)`` or ``figure.savefig(path)``.
"""

from .activations import activation_maps, embedding_plot, trajectory
from .compare import compare
from .dependence import attribution_dependence, partial_dependence_plot
from .generative import traversal_grid
from .image import image_grid, image_overlay
from .metrics import metric_bars, metric_curves
from .tabular import bar, beeswarm, waterfall
from .text import text_figure, text_html
from .topology import topology
from .weights import filter_grid, weight_heatmap, weight_histograms

__all__ = [
    "activation_maps", "attribution_dependence", "bar", "beeswarm", "compare", "embedding_plot", "filter_grid", "image_grid",
    "image_overlay", "metric_bars", "metric_curves", "partial_dependence_plot", "text_figure", "text_html",
    "topology", "trajectory", "traversal_grid", "waterfall", "weight_heatmap", "weight_histograms",
]
