"""Gradients at a layer: the model cut at the layer, and the gradient graph of its tail.

The explained rows run once through the model with the layer exposed (as every layer method
does, :mod:`.layer`); the tail's gradient graph then takes activations and gives the target's
gradient with respect to them, so activations can be interpolated or edited before the
gradient is taken (Layer Integrated Gradients) at no cost to the head.
"""

from __future__ import annotations

import numpy as np

from .base import Problem
from .gradients import gradient_model, run_gradients
from .layer import LayerExplainer, tail_inputs


class LayerGradientExplainer(LayerExplainer):
    """Base of the methods that need the target's gradient with respect to a layer."""

    def _layer_gradients(self, problem: Problem, activations: np.ndarray, n: int, make_rows, owners: np.ndarray,
                         desc: str, reduce=None) -> np.ndarray:
        """Gradients at ``n`` activation rows built by ``make_rows``, shape (n, *layer_shape).

        ``activations`` are the layer's values at the explained rows (one per row).
        """
        parts = problem.context["parts"]
        graph = gradient_model(
            problem.model, parts.tail, ("tail", parts.layer), wrt=parts.layer, output=problem.output,
            output_transform=problem.output_transform,
        )
        problem.extras["n_evals_tail"] = problem.extras.get("n_evals_tail", 0) + n
        return run_gradients(problem, graph, rows=activations, fixed=tail_inputs(parts.tail, problem.feeds), n=n,
                             make_rows=make_rows, owners=owners, desc=desc, reduce=reduce)

    def _gradients_at_activations(self, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
        """``(activations, gradients)`` at the explained rows, both shaped like the layer."""
        activations = self._layer_rows(problem)
        n = len(activations)
        grads = self._layer_gradients(problem, activations, n, lambda start, stop: activations[start:stop],
                                      np.arange(n), desc=self.method)
        return activations, grads
