"""The shared plumbing of gradient methods: a gradient graph per model, seeds from the target,
and gradients of many rows through the one batching loop.

The gradient graph (:func:`agnostic_explain.graph.gradient`) takes a seed input
``<output>__seed``, the cotangent. Here the seed is the one-hot vector at each explained row's
target index; it rides along as a fixed input with one row per explained row, so that the
batching loop picks each evaluated row's seed by its owner, like any other fixed input. With
``output_transform`` the graph differentiates ``softmax(y)`` (or ``sigmoid(y)``), a node added
before differentiating (:func:`agnostic_explain.graph.explained.transformed_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from ..graph.explained import transformed_output
from ..graph.gradient import GRAD_SUFFIX, SEED_SUFFIX, gradient
from ..runtime.batching import Feeds, evaluate
from ..runtime.model import Model
from .base import Explainer, Problem

__all__ = [
    "GradientExplainer", "GradientModel", "gradient_model", "input_gradients", "linear_weights", "one_hot_seeds",
    "path_sum", "require_float_rows", "run_gradients",
]


@dataclass(frozen=True)
class GradientModel:
    """A derived model that outputs ``grad``, the gradient of the seeded output with respect to ``wrt``."""

    model: Model
    wrt: str
    seed: str
    grad: str


def gradient_model(model: Model, source, key, *, wrt: str, output: str, output_transform=None,
                   rules: dict | None = None, rules_key=None, finish=None) -> GradientModel:
    """The gradient graph of ``source`` (``model``'s graph, or a part of it named by ``key``),
    derived from ``model`` and kept in its cache under ``(key, wrt, output, transform, rules_key)``.

    ``finish(proto) -> proto`` edits the gradient graph before it is loaded (the inputs a rule
    added, say)."""

    def make() -> GradientModel:
        proto, differentiated = transformed_output(source, output, output_transform)
        edited = gradient(proto, wrt, output=differentiated, rules=rules)
        if finish is not None:
            edited = finish(edited)
        return GradientModel(model.derive(edited), wrt, differentiated + SEED_SUFFIX, wrt + GRAD_SUFFIX)

    return model.cache.derived_model(("gradient", key, wrt, output, output_transform, rules_key), make)


def one_hot_seeds(problem: Problem, dtype=np.float32) -> np.ndarray:
    """Seeds of shape (n_rows, *output_shape): 1 at each explained row's target, 0 elsewhere.

    A callable target must be linear in the outputs (a weighted sum of them: a contrast of two
    classes, a sum over a group); its weights are the seed (:func:`linear_weights`).
    """
    target = problem.target
    n, shape = len(problem.rows), tuple(problem.output_shape)
    if target.function is not None:
        return np.broadcast_to(linear_weights(target, shape), (n, *shape)).astype(dtype)
    seeds = np.zeros((n, int(np.prod(shape, dtype=np.int64))), dtype=dtype)
    seeds[np.arange(n), target.positions(shape)] = 1
    return seeds.reshape(n, *shape)


#: the most output elements a callable target's weights are read for (one call on as many rows)
MAX_CALLABLE_ELEMENTS = 4096


def linear_weights(target, shape: tuple) -> np.ndarray:
    """The weights ``w`` (shaped like one output row) of a callable target ``f(y) = <w, y> + c``.

    Read from ``f`` at zero and at each basis vector, then checked at random outputs; a
    callable that is not linear (a softmax, a maximum) is refused, since the gradient of the
    model cannot be taken through Python code, and so is one that takes ``(outputs, owners)``.
    """
    name = getattr(target.function, "__name__", "target")
    if target.with_owners:
        raise ParameterError(
            f"target: the callable target ({name}) takes (outputs, owners); gradient methods take a callable of "
            "the outputs alone that is linear in them (y[:, 3] - y[:, 5], say), a class index, one per row, "
            "or 'predicted'"
        )
    size = int(np.prod(shape, dtype=np.int64))
    if size > MAX_CALLABLE_ELEMENTS:
        raise ParameterError(
            f"target: a callable target ({name}) on an output of {size} elements per row; gradient methods "
            f"read a callable's weights for at most {MAX_CALLABLE_ELEMENTS}. Pass a class index, one per row, "
            "or 'predicted'"
        )
    rng = np.random.default_rng(0)  # the check's own draws: the method's random_state stays untouched
    basis = np.concatenate([np.zeros((1, size)), np.eye(size)])
    probes = rng.standard_normal((4, size)) * np.array([[1.0], [10.0], [0.1], [100.0]])
    values = target.select(np.concatenate([basis, probes]).reshape(-1, *shape),
                           np.zeros(len(basis) + len(probes), dtype=np.int64))
    offset, weights = values[0], values[1:size + 1] - values[0]
    expected = probes @ weights + offset
    scale = np.abs(probes) @ np.abs(weights) + abs(offset) + np.abs(values[size + 1:]) + 1e-12
    if np.any(np.abs(values[size + 1:] - expected) > 1e-5 * scale):
        raise ParameterError(
            f"target: the callable target ({name}) is not linear in the outputs, so gradient methods cannot "
            "seed the backward pass with it. Pass a weighted sum of outputs (y[:, 3] - y[:, 5], say), a "
            "class index, one per row, or 'predicted'; for probabilities use output_transform='softmax'"
        )
    return weights.reshape(shape)


def run_gradients(problem: Problem, graph: GradientModel, *, rows: np.ndarray, fixed: dict, n: int,
                  make_rows: Callable[[int, int], np.ndarray], owners: np.ndarray, desc: str,
                  seeds: np.ndarray | None = None, reduce=None) -> np.ndarray:
    """Gradients of ``n`` rows built by ``make_rows(start, stop)``, shape (n, *row_shape).

    ``rows`` are the explained values of ``graph.wrt`` (one per explained row, for the checks
    and the batch size), ``fixed`` the other inputs of the graph (one row or one per explained
    row); ``owners[i]`` is the explained row that evaluated row ``i`` belongs to, and picks its
    seed and fixed inputs. Counted in ``problem.n_evals``. ``reduce(grads, owners)``, called on
    the batches in order, replaces keeping them (see :func:`path_sum`).
    """
    seeds = one_hot_seeds(problem, graph.model.input_spec(graph.seed).dtype) if seeds is None else seeds
    feeds = Feeds.prepare(graph.model, rows, input=graph.wrt, fixed_inputs={**fixed, graph.seed: seeds},
                          check_finite=False)
    problem.n_evals += n
    return evaluate(graph.model, feeds, n=n, make_rows=make_rows, owners=owners,
                    reduce=reduce or (lambda outputs, _: outputs), output=graph.grad, progress=problem.progress,
                    desc=desc)


def fixed_values(feeds: Feeds) -> dict:
    """The fixed inputs of ``feeds`` as given to ``Feeds.prepare`` (batch first)."""
    return {name: value for name, (value, _) in feeds.fixed.items()}


def input_gradients(problem: Problem, n: int, make_rows, owners: np.ndarray, desc: str, *, rules=None,
                    rules_key=None, reduce=None) -> np.ndarray:
    """Gradients of the target with respect to the explained input at ``n`` rows built by
    ``make_rows(start, stop)``, shape (n, *row_shape); ``rules`` override backward rules
    (cached under ``rules_key``)."""
    graph = gradient_model(
        problem.model, problem.model, "model", wrt=problem.feeds.name, output=problem.output,
        output_transform=problem.output_transform, rules=rules, rules_key=rules_key,
    )
    return run_gradients(problem, graph, rows=problem.rows, fixed=fixed_values(problem.feeds), n=n,
                         make_rows=make_rows, owners=owners, desc=desc, reduce=reduce)


def path_sum(weights: np.ndarray, shape: tuple, n: int):
    """``(total, reduce)``: ``reduce`` adds ``weights[k % len(weights)] * grads[k]`` of evaluated
    row ``k`` into ``total[owner]`` (float64, shape (n, *shape)) batch by batch, so that a path of
    many points per row never holds more than one batch of gradients."""
    steps, total, done = len(weights), np.zeros((n, *shape)), [0]

    def reduce(grads: np.ndarray, owners: np.ndarray) -> np.ndarray:
        index = np.arange(done[0], done[0] + len(grads))
        done[0] += len(grads)
        scaled = grads * weights[index % steps].reshape((-1,) + (1,) * len(shape))
        for owner in np.unique(owners):
            total[owner] += scaled[owners == owner].sum(axis=0)
        return np.empty((len(grads), 0), np.float32)

    return total, reduce


def require_float_rows(rows: np.ndarray, method: str) -> None:
    """Refuse integer rows (token ids): they have no gradient."""
    if rows.dtype.kind not in "fc":
        raise ParameterError(
            f"x: {method} differentiates the input, which needs floating-point rows; got dtype "
            f"{rows.dtype}. For token ids, explain the embedding output with LayerIntegratedGradients"
        )


class GradientExplainer(Explainer):
    """Base of the methods that differentiate the model's output with respect to its input.

    Subclasses implement ``_attribute`` with :meth:`_input_gradients`. ``rules`` replaces
    backward rules (Guided Backprop's ReLU), keyed in the cache by ``method``.
    """

    needs_graph = True
    row_kinds = ("tabular", "image")
    #: backward rule overrides, {op_type: rule}
    rules: dict | None = None

    def _check(self, rows: np.ndarray):
        require_float_rows(rows, type(self).__name__)

    def _input_gradients(self, problem: Problem, n: int, make_rows, owners: np.ndarray, desc: str,
                         reduce=None) -> np.ndarray:
        """Gradients of the target at ``n`` input rows, shape (n, *row_shape) (or as ``reduce`` makes them)."""
        return input_gradients(problem, n, make_rows, owners, desc, rules=self.rules,
                               rules_key=self.method if self.rules else None, reduce=reduce)

    def _gradients_at_rows(self, problem: Problem) -> np.ndarray:
        """Gradients of the target at the explained rows themselves."""
        rows = problem.rows
        n = len(rows)
        return self._input_gradients(problem, n, lambda start, stop: rows[start:stop], np.arange(n),
                                     desc=self.method)
