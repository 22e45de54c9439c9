"""Recording chosen intermediate tensors of a model, and their statistics and embeddings.

It runs exposed copies of the graph (``graph.expose``) through the runtime's batching loop.
It may import ``runtime``, ``graph``, ``tables`` and ``errors``; never the explainers or
anything above them.
"""

from .record import Activations, LayerActivations
from .statistics import ActivationStatistics, Embedding, LayerStatistics

__all__ = ["ActivationStatistics", "Activations", "Embedding", "LayerActivations", "LayerStatistics"]
