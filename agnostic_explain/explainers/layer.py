"""The shared pipeline of methods that edit one layer's activations and run only the tail.

The model is cut at the layer (:func:`agnostic_explain.graph.split`). The explained rows run
once through the model with the layer exposed, which gives the activations and the
unperturbed output together (the "head" rows). A method then builds edited activations,
one row per unit it probes, and only the tail runs on them, in the one batching loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..graph.expose import expose
from ..graph.inspect import resolve_tensors, tensors
from ..graph.source import open_model
from ..graph.layouts import tensor_layouts
from ..graph.split import cut
from ..runtime.batching import Feeds, evaluate
from ..runtime.model import Model
from ..runtime.targets import transform
from .base import Explainer, Problem
from .layer_choice import LayerView, choose_layer, view_of


@dataclass(frozen=True)
class LayerParts:
    """The models a layer method runs: the model with the layer exposed, and the tail after it."""

    layer: str
    chosen_automatically: bool
    exposed: Model
    tail: Model
    view: LayerView


class LayerExplainer(Explainer):
    """Base of :class:`UnitAblation`, :class:`AblationCam` and :class:`ScoreCam`.

    Subclasses implement ``_attribute(problem)`` using ``problem.context["activations"]``
    (batch first) and :meth:`_unit_scores`.
    """

    #: whether an automatically chosen layer must be a spatial 4-D activation
    needs_spatial = False
    needs_graph = True

    def __init__(self, model, layer=None):
        super().__init__(model)
        self.layer = layer

    def _params(self) -> dict:
        return {"layer": self.layer}

    def _parts(self, model: Model, feeds: Feeds) -> LayerParts:
        """Split the model at the layer (chosen automatically when None), once per model and layer."""
        # Kept with the model, so that every explainer of the same model and layer reuses them.
        layer = self._named_layer(model, feeds)
        return model.cache.derived_model(("layer", layer, self.needs_spatial), lambda: self._split(model, feeds, layer))

    def _named_layer(self, model: Model, feeds: Feeds):
        """The layer to cut at, or None to choose one automatically (a method may choose its own)."""
        return self.layer

    def _split(self, model: Model, feeds: Feeds, named) -> LayerParts:
        source = open_model(model)
        method = type(self).__name__
        found = tensors(source, feeds.rows[:1] if not feeds.fixed else None)
        if named is None:
            layer, view, (_, tail) = choose_layer(source, found, _graph_batch(source, feeds), self.needs_spatial, method)
        else:
            if not isinstance(named, str):
                raise ParameterError(f"layer must be a tensor name (str) or None, got {named!r}")
            layer = resolve_tensors(source, named, parameter="layer", kinds={"node output"})[0]
            _, tail = cut(source, [layer], parameter="layer")
            shape = found[layer].shape if layer in found else None
            view = LayerView("nchw")
            if self.needs_spatial and shape is not None:
                ranks = {name: len(info.shape) for name, info in found.items() if info.shape is not None}
                view = view_of(layer, shape, tensor_layouts(source.proto, ranks).get(layer), method)
        # The head runs once per call: its idle threads must not spin while the tail runs.
        exposed = model.derive(
            expose(source, [layer]), session_config={"session.intra_op.allow_spinning": "0"}
        )
        return LayerParts(layer, self.layer is None, exposed, model.derive(tail), view)

    def _unperturbed(self, model, feeds, output, output_transform, context) -> np.ndarray:
        parts = self._parts(model, feeds)
        n = len(feeds.rows)
        outputs, activations = evaluate(
            parts.exposed, feeds, n=n, make_rows=lambda start, stop: feeds.rows[start:stop], owners=np.arange(n),
            reduce=lambda values, owners: (values[0], values[1]), output=[output, parts.layer], progress=False,
        )
        context.update(parts=parts, activations=activations)
        return transform(outputs, output_transform)

    def _layer_rows(self, problem: Problem) -> np.ndarray:
        """The layer's activations at the explained rows; records the layer in params and extras."""
        parts = problem.context["parts"]
        problem.params["layer"] = parts.layer
        problem.params["layer_chosen_automatically"] = parts.chosen_automatically
        if self.needs_spatial:
            problem.params["layer_layout"] = parts.view.describe()
        problem.extras["n_evals_head"] = len(problem.rows)
        problem.extras["n_evals_tail"] = 0
        return problem.context["activations"]

    def _unit_scores(self, problem: Problem, n_units: int, edit) -> np.ndarray:
        """Target scalars, shape (n_rows, n_units), of the tail on edited activations.

        ``edit(rows, owners, units)`` returns ``rows`` (the activations of explained rows
        ``owners``, one per evaluated row: a fresh copy it may edit in place) with unit
        ``units[i]`` edited in row ``i``.
        """
        parts = problem.context["parts"]
        activations = problem.context["activations"]
        n = len(activations) * n_units
        owners_all = np.arange(n) // n_units

        def make_rows(start: int, stop: int) -> np.ndarray:
            owners, units = np.divmod(np.arange(start, stop), n_units)
            return edit(activations[owners], owners, units)

        scores = problem.evaluate(
            n, make_rows, owners_all, desc=f"{self.method} tail", model=parts.tail,
            feeds=_tail_feeds(parts, problem.feeds, activations),
        )
        problem.extras["n_evals_tail"] += n
        return scores.reshape(len(activations), n_units)


def _tail_feeds(parts: LayerParts, feeds: Feeds, activations: np.ndarray) -> Feeds:
    """Feeds of the tail: the activations, plus any model input the tail also reads."""
    fixed = tail_inputs(parts.tail, feeds)
    return Feeds.prepare(parts.tail, activations, input=parts.layer, fixed_inputs=fixed, check_finite=False)


def tail_inputs(tail: Model, feeds: Feeds) -> dict:
    """The model inputs a tail reads besides the layer (its first input), from ``feeds``."""
    fixed = {}
    for spec in tail.inputs[1:]:
        if spec.name == feeds.name:
            fixed[spec.name] = feeds.rows
        elif spec.name in feeds.fixed:
            fixed[spec.name] = feeds.fixed[spec.name][0]
    return fixed


def _graph_batch(source, feeds: Feeds):
    """The explained input's batch dimension as the graph declares it: a symbol, a size, or None."""
    axis = feeds.spec.batch_axis
    for value in source.proto.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name == feeds.name and axis is not None and axis < len(dims):
            return dims[axis].dim_param or dims[axis].dim_value or None
    return None


def is_spatial(shape) -> bool:
    """Whether a shape is (batch, channels, height, width) with height or width not 1."""
    return len(shape) == 4 and not (shape[2] == 1 and shape[3] == 1)


def require_spatial(activations: np.ndarray, layer: str, method: str) -> None:
    if activations.ndim != 4 or activations.shape[2] * activations.shape[3] == 1:
        raise InputShapeError(
            f"layer: {method} needs a 4-D (batch, channels, height, width) activation with spatial "
            f"extent; {layer!r} has shape {activations.shape}. Pick a convolutional layer, or None to "
            "choose the last one automatically"
        )
