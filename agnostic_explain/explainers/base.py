"""The shared explain pipeline; a method overrides :meth:`Explainer._attribute` and nothing else.

``explain`` validates the inputs, runs the unperturbed rows once, resolves the target, hands
the method a :class:`Problem`, and wraps what it returns in an :class:`Explanation`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..explanation import Explanation, json_ready
from ..runtime.batching import Feeds, evaluate
from ..runtime.fused import Blend, evaluate_fused
from ..runtime.model import Model
from ..runtime.loading import load
from ..seeds import as_generator
from ..runtime.targets import OUTPUT_TRANSFORMS, Target, resolve, target_reducer, transform


@dataclass
class Problem:
    """What a method needs to compute attributions for one ``explain`` call.

    Attributes
    ----------
    model : Model
    feeds : Feeds
        ``feeds.rows`` holds the explained input, batch axis first.
    output : str
    target : Target
    output_transform : str or None
    base_values : ndarray of shape (n_rows,)
        The target at the unperturbed rows.
    progress : bool or None
    rng : numpy.random.Generator
    n_evals : int
        Model rows evaluated so far.
    extras : dict
        Method-specific results a method may add; they go into ``Explanation.extras``.
    params : dict
        Parameters settled during the call (a layer chosen automatically, say); they go
        into ``Explanation.params``.
    context : dict
        Method-private data handed from :meth:`Explainer._unperturbed` to ``_attribute``.
    checked : object
        What :meth:`Explainer._check` returned: the method's parameters, validated against
        the rows, so that ``_attribute`` does not compute them again.
    """

    model: Model
    feeds: Feeds
    output: str
    target: Target
    output_transform: str | None
    base_values: np.ndarray
    progress: bool | None
    rng: np.random.Generator
    n_evals: int = 0
    #: the shape of one row of the explained output
    output_shape: tuple = ()
    extras: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    context: dict = field(default_factory=dict)
    checked: object = None

    @property
    def rows(self) -> np.ndarray:
        return self.feeds.rows

    def evaluate(
        self, n: int, make_rows: Callable[[int, int], np.ndarray], owners: np.ndarray, desc: str,
        *, model: Model | None = None, feeds: Feeds | None = None, blend: Callable[[], Blend] | None = None,
    ) -> np.ndarray:
        """Target scalars, shape (n,), for ``n`` perturbed rows built by ``make_rows(start, stop)``.

        ``owners[i]`` is the explained row that perturbed row ``i`` belongs to. All methods
        go through this one batching path (see :func:`agnostic_explain.runtime.batching.evaluate`).
        ``model`` and ``feeds`` run the rows through another model with the same output
        instead (the tail of a split model, fed activations). ``blend()`` describes the same
        rows compactly (called only when used): a model that fuses perturbations composes them in the graph instead
        (see :mod:`agnostic_explain.runtime.fused`), and ``params["fused"]`` says which ran.
        """
        self.n_evals += n
        if model is None and blend is not None:
            scores = evaluate_fused(
                self.model, self.feeds, n=n, blend=blend, owners=owners, output=self.output, target=self.target,
                output_transform=self.output_transform, output_shape=self.output_shape, progress=self.progress,
                desc=desc,
            )
            self.params["fused"] = scores is not None
            if scores is not None:
                return scores
        return evaluate(
            model or self.model,
            feeds or self.feeds,
            n=n,
            make_rows=make_rows,
            owners=owners,
            reduce=target_reducer(self.target, self.output_transform),
            output=self.output,
            progress=self.progress,
            desc=desc,
        )


class Explainer:
    """Base class: stores parameters; :meth:`explain` does the shared work.

    The contract of a method:

    - ``method``: its name (``"occlusion"``), as results, the CLI and the jobs spell it;
    - ``_check(rows)`` (optional): validate the parameters against the explained rows before
      any model call, and return what was validated (kept as ``problem.checked``);
    - ``_attribute(problem) -> ndarray`` shaped like ``problem.rows``;
    - ``_params()``: the parameters recorded in the Explanation;
    - ``_unperturbed(...)`` (optional): how the explained rows themselves run, for methods that
      need more than the output from that run (the layer methods read activations too);
    - ``needs_graph = True`` for methods that edit the ONNX graph;
    - ``data_params``: the names of constructor parameters that take a data set (a
      background, training data), which the CLI and jobs read from files;
    - ``row_kinds``, ``values_like_rows`` and ``model_family``: what rows and models it explains,
      and the shape of its values.
    """

    method = "explainer"
    #: whether the method edits the ONNX graph (it then refuses models that are not one)
    needs_graph = False
    #: constructor parameters that take a data set rather than a setting
    data_params: tuple[str, ...] = ()
    #: the rows the method explains: "tabular" (features), "image" (H, W with or without
    #: channels), "tokens" (integer ids)
    row_kinds: tuple[str, ...] = ("tabular", "image")
    #: whether ``values`` are shaped like the explained rows (False: like a layer's units)
    values_like_rows = True
    #: the models it explains: "any", or "trees" (tree ensembles, read from the graph)
    model_family = "any"
    #: whether NaN in the explained rows is a value the method handles (a missing value a tree
    #: routes) rather than an input error
    accepts_missing_values = False
    #: the output transforms it takes
    output_transforms = OUTPUT_TRANSFORMS

    def __init__(self, model):
        self.model = model

    def _params(self) -> dict:
        """The parameters recorded in the Explanation."""
        return {}

    def _check(self, rows: np.ndarray):
        """Validate parameters against the explained rows before the model runs; return them."""
        return None

    def _attribute(self, problem: Problem) -> np.ndarray:
        raise NotImplementedError

    def _unperturbed(self, model: Model, feeds: Feeds, output: str, output_transform, context: dict) -> np.ndarray:
        """The (transformed) output at the explained rows; a method may also fill ``context``."""
        return unperturbed_outputs(model, feeds, output, output_transform)

    def _loaded(self) -> Model:
        if not isinstance(self.model, Model):
            self.model = load(self.model)
        if self.needs_graph and self.model.proto is None:
            raise ParameterError(
                f"model: {type(self).__name__} works on the ONNX graph, so it needs an ONNX model, not "
                f"{type(self.model).__name__}"
            )
        return self.model

    def _prepare(self, x, input, fixed_inputs, output_transform) -> tuple[Model, Feeds]:
        """The loaded model and the validated feeds, before any model call."""
        if output_transform not in self.output_transforms:
            raise ParameterError(f"output_transform must be one of {self.output_transforms}, got {output_transform!r}"
                                 + ("" if self.output_transforms == OUTPUT_TRANSFORMS else f" ({type(self).__name__})"))
        model = self._loaded()
        return model, Feeds.prepare(model, x, input=input, fixed_inputs=fixed_inputs,
                                    check_finite=not self.accepts_missing_values)

    def explain(
        self,
        x,
        target="predicted",
        *,
        output=None,
        input=None,
        fixed_inputs=None,
        output_transform=None,
        progress=None,
        random_state=None,
    ) -> Explanation:
        """Explain rows ``x`` of the model's input.

        Parameters
        ----------
        x : array_like of shape (n_rows, ...)
            Rows of the explained input; one row may be given without its batch axis.
        target : int, tuple, list, "predicted" or callable, default "predicted"
            What to explain: a class index for every row, one per row, the predicted class,
            or ``f(outputs) -> ndarray of shape (batch,)`` for any other scalar; a callable
            with two required arguments is called ``f(outputs, owners)``, ``owners[i]`` being
            the explained row that output row ``i`` perturbs.
        output : str or int, optional
            The model output to explain; by default the first floating-point one.
        input : str, optional
            The explained input of a multi-input model; by default the first.
        fixed_inputs : dict of str to array_like, optional
            The other inputs, held fixed: one row (broadcast) or one per row of ``x``.
        output_transform : None, "softmax" or "sigmoid"
            Read the target from raw outputs (None) or from probabilities.
        progress : bool or callable, optional
            Progress bar: None shows one on runs over ~2 s in a terminal; a callable is called
            ``progress(rows_done, rows_total)`` after each batch of model rows instead.
        random_state : int or numpy.random.Generator, optional
            Seed for methods that sample.

        Returns
        -------
        Explanation
        """
        started = time.perf_counter()
        rng = as_generator(random_state)  # a bad seed fails before the model runs
        model, feeds = self._prepare(x, input, fixed_inputs, output_transform)
        checked = self._check(feeds.rows)
        output_name = model.output_spec(output).name
        n = len(feeds.rows)
        context: dict = {}
        outputs = self._unperturbed(model, feeds, output_name, output_transform, context)
        resolved = resolve(target, outputs, output_name=output_name)
        problem = Problem(
            model=model,
            feeds=feeds,
            output=output_name,
            target=resolved,
            output_transform=output_transform,
            base_values=resolved.select(outputs, np.arange(n)),
            progress=progress,
            rng=rng,
            n_evals=n,
            output_shape=outputs.shape[1:],
            context=context,
            checked=checked,
        )
        values = self._attribute(problem)
        params = dict(self._params(), **problem.params, output_transform=output_transform)
        if resolved.function is not None:
            params["target"] = f"callable {getattr(resolved.function, '__name__', 'target')}"
        return make_explanation(
            model, values=values, base_values=problem.base_values, data=feeds.rows, target=resolved.as_array(),
            method=self.method, params=params, n_evals=problem.n_evals, started=started, input_name=feeds.name,
            output_name=output_name, extras=problem.extras,
        )


def make_explanation(model: Model, *, values, base_values, data, target, method: str, params: dict, n_evals: int,
                     started: float, input_name=None, output_name=None, extras=None, describes_input=True) -> Explanation:
    """The one place an :class:`Explanation` is built from a model and a method's results.

    It records what the model knows (names, providers, preprocessing, precision) the same way
    for every method, per-row or data-set level; ``started`` is the ``time.perf_counter()``
    at the start of the work. ``describes_input=False`` leaves out the model's feature names,
    label names and preprocessing, for values over something else (a decoder's latent rows).
    """
    params = dict(params)
    if model.precision != "fp32":
        params["precision"] = model.precision  # attributions of an fp16 copy differ from fp32's
    return Explanation(
        values=values,
        base_values=base_values,
        data=data,
        target=target,
        method=method,
        params=json_ready(params),
        n_evals=n_evals,
        seconds=time.perf_counter() - started,
        input_name=input_name,
        output_name=output_name,
        feature_names=model.feature_names if describes_input else None,
        label_names=model.label_names if describes_input else None,
        providers=tuple(model.providers),
        preprocessing=model.preprocessing if describes_input else None,
        extras=dict(extras or {}),
    )


def recorded(value):
    """How a parameter is recorded in ``Explanation.params``: None and strings as they are, a
    number as a float, an array by its shape (the values stay out of the JSON)."""
    if value is None or isinstance(value, str):
        return value
    if np.ndim(value) == 0:
        return float(value)
    return f"array of shape {np.shape(value)}"


def unperturbed_outputs(model: Model, feeds: Feeds, output: str, output_transform) -> np.ndarray:
    """The (transformed) output at the explained rows themselves, batch axis first."""
    n = len(feeds.rows)
    outputs = evaluate(
        model, feeds, n=n, make_rows=lambda a, b: feeds.rows[a:b], owners=np.arange(n),
        reduce=lambda out, own: out, output=output, progress=False,
    )
    return transform(outputs, output_transform)
