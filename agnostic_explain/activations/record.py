"""``LayerActivations``: the values of chosen tensors for given inputs, the input's path through the network.

The model is exposed once (:func:`agnostic_explain.graph.expose`) so that one run returns the
chosen tensors next to the model's output, and every row goes through the one batching loop.
Statistics and embeddings of the recorded values live in :mod:`.activation_stats`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from .statistics import ActivationStatistics, Embedding, layer_statistics, pca_embedding
from ..errors import ParameterError
from ..graph.expose import expose, select_tensors
from ..graph.inspect import resolve_tensors
from ..graph.source import open_model
from ..runtime.batching import Feeds, evaluate
from ..runtime.loading import load
from ..runtime.model import Model
from ..runtime.targets import resolve

__all__ = ["Activations", "LayerActivations"]


@dataclass(frozen=True, eq=False)
class Activations:
    """Recorded activations of a batch of rows, with the model's output for the same rows.

    Attributes
    ----------
    values : dict of str to ndarray
        Per layer (tensor name), its values with the batch axis first: shape (n_rows, ...).
    outputs : ndarray of shape (n_rows, ...)
        The model's explained output (raw, e.g. logits).
    output_name, input_name : str
    data : ndarray of shape (n_rows, ...)
        The input rows, batch axis first.
    predictions : ndarray of shape (n_rows,) or None
        The argmax over the output's classes; None for outputs with one value per row.
    label_names : tuple of str or None
        Class names from the model's metadata.
    op_types : dict of str to str
        The op that produced each layer.
    """

    values: dict
    outputs: np.ndarray
    output_name: str
    input_name: str
    data: np.ndarray
    predictions: np.ndarray | None = None
    label_names: tuple | None = None
    op_types: dict | None = None

    @property
    def layers(self) -> tuple[str, ...]:
        """The recorded layers, in graph order."""
        return tuple(self.values)

    @property
    def n_rows(self) -> int:
        return int(self.outputs.shape[0])

    def __getitem__(self, layer: str) -> np.ndarray:
        if layer not in self.values:
            raise ParameterError(_unknown_layer(layer, self.layers))
        return self.values[layer]

    def __repr__(self) -> str:
        shapes = ", ".join(f"{name}: {tuple(value.shape[1:])}" for name, value in self.values.items())
        return f"Activations(n_rows={self.n_rows}, {{{shapes}}}, output={self.output_name!r})"


@dataclass(frozen=True)
class _Exposed:
    """The exposed model, loaded once, and the layers it records."""

    key: tuple
    model: object
    layers: tuple[str, ...]
    n_original: int
    op_types: dict


class LayerActivations:
    """Record the activations of chosen tensors (layers) of an ONNX model for given inputs.

    The constructor only stores its arguments; the model is edited and loaded on first use,
    then reused.

    Parameters
    ----------
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        A loaded OnnxModel also lends its execution providers and batch size.
    layers : str, list of str, "all" or callable, default "all"
        Node output names (see ``graph.layers(model)``); ``"all"`` for every node output; or
        a predicate ``f(TensorInfo) -> bool`` over the node outputs, as in
        :func:`agnostic_explain.graph.expose`. ``"all"`` and predicates skip tensors without a
        batch axis (shapes, constants); naming one is an error. The input itself is
        :attr:`Activations.data`.

    Examples
    --------
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, labels = load_samples()
    >>> recorder = LayerActivations(DEFAULT_MODEL_PATH, layers=["/relu1/Relu_output_0", "/relu3/Relu_output_0"])
    >>> recorded = recorder.activations(images)
    >>> recorded["/relu3/Relu_output_0"].shape, recorded.predictions.tolist() == labels.tolist()
    ((10, 32, 4, 4), True)
    """

    def __init__(self, model, layers="all"):
        self.model = model
        self.layers = layers
        self._cache: _Exposed | None = None  # the exposed model of the last call, reused by the next

    # -- running -----------------------------------------------------------------------
    def activations(
        self, x, *, input=None, output=None, fixed_inputs=None, batch_size=None, progress=None
    ) -> Activations:
        """The recorded layers' values for rows ``x``, and the model's output.

        Parameters
        ----------
        x : array_like of shape (n_rows, ...)
            Rows of the input; one row may be given without its batch axis.
        input : str, optional
            The input ``x`` feeds, for a multi-input model; by default the first.
        output : str or int, optional
            The model output returned as ``outputs``; by default the first floating-point one.
        fixed_inputs : dict of str to array_like, optional
            The other inputs: one row (broadcast) or one per row of ``x``.
        batch_size : int or "auto", optional
            Rows per model call; by default the model's.
        progress : bool, optional
            Progress bar: None shows one on runs over ~2 s in a terminal.

        Returns
        -------
        Activations
        """
        return self._run(x, None, input=input, output=output, fixed_inputs=fixed_inputs,
                         batch_size=batch_size, progress=progress)

    def statistics(self, x, target="predicted", *, top_k: int = 5, **run) -> ActivationStatistics:
        """Per layer: mean, std, fraction of exact zeros, and the channels most active for the target.

        The channel axis is axis 1 of a layer's batch-first values of rank >= 3 (NCHW), the
        neuron axis for (n_rows, n_units) values. Channels are ranked by their mean activation
        over the rows whose target is a class, separately for each class present.

        Parameters
        ----------
        x : array_like of shape (n_rows, ...) or Activations
            Rows of the input, or activations already recorded.
        target : "predicted", int, tuple, sequence of them (one per row), or None
            The class of each row (e.g. the true labels); None ranks channels over all rows.
        top_k : int
            Channels kept per class.
        **run
            ``input``, ``output``, ``fixed_inputs``, ``batch_size``, ``progress`` as in
            :meth:`activations`, when ``x`` holds input rows.

        Returns
        -------
        ActivationStatistics
            A table (``str()`` it); index it by layer name.
        """
        if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 1:
            raise ParameterError(f"top_k must be a positive int, got {top_k!r}")
        recorded = self._recorded(x, None, run)
        groups = _groups(target, recorded)
        return layer_statistics(recorded, groups, int(top_k))

    def embedding(
        self, x, layer: str, *, labels=None, n_components: int = 2, pool="auto", random_state=None, **run
    ) -> Embedding:
        """PCA of one layer's activations over a data set, with each row's label and prediction.

        Parameters
        ----------
        x : array_like of shape (n_rows, ...) or Activations
            At least two rows of the input, or activations already recorded.
        layer : str
            One of the recorded layers.
        labels : array_like of shape (n_rows,), optional
            True classes, kept for colouring.
        n_components : int
            At most ``min(n_rows, n_features)``.
        pool : "auto", "mean" or None
            ``"mean"`` averages each channel over the spatial axes first (to (n_rows, C));
            None flattens the values; ``"auto"`` pools values of rank >= 4 (images) only.
        random_state : int, optional
            For PCA's randomized solver on large matrices.
        **run
            As in :meth:`statistics`.

        Returns
        -------
        Embedding
        """
        if pool not in ("auto", "mean", None):
            raise ParameterError(f"pool must be 'auto', 'mean' or None, got {pool!r}")
        if not isinstance(layer, str):
            raise ParameterError(f"layer must be a tensor name (str), got {layer!r}")
        recorded = self._recorded(x, [layer], run)
        values = recorded[layer]
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != (recorded.n_rows,):
                raise ParameterError(
                    f"labels: expected one label per row, shape ({recorded.n_rows},), got shape {labels.shape}"
                )
        if pool == "auto":
            pool = "mean" if values.ndim >= 4 else None
        return pca_embedding(recorded, layer, labels=labels, n_components=n_components, pool=pool,
                             random_state=random_state)

    # -- internals -------------------------------------------------------------------------
    def _recorded(self, x, names, run: dict) -> Activations:
        allowed = {"input", "output", "fixed_inputs", "batch_size", "progress"}
        unknown = sorted(set(run) - allowed)
        if unknown:
            raise ParameterError(f"unexpected keyword arguments {unknown}; accepted: {sorted(allowed)}")
        if isinstance(x, Activations):
            given = sorted(key for key, value in run.items() if value is not None)
            if given:
                raise ParameterError(f"{given}: x holds activations already recorded; these apply to input rows only")
            for name in names or ():
                if name not in x.values:
                    raise ParameterError(_unknown_layer(name, x.layers))
            return x
        return self._run(x, names, **run)

    def _run(self, x, names, *, input=None, output=None, fixed_inputs=None, batch_size=None, progress=None):
        exposed = self._exposed()
        model = exposed.model
        if names is not None:
            for name in names:
                if name not in exposed.layers:
                    self._check_known(name, exposed.layers)
        feeds = Feeds.prepare(model, x, input=input, fixed_inputs=fixed_inputs)
        output_name = _original_output(model, output, exposed.n_original).name
        wanted = list(exposed.layers if names is None else names)
        fetched = list(dict.fromkeys([output_name, *wanted]))
        rows = feeds.rows
        results = evaluate(
            model, feeds, n=len(rows), make_rows=lambda start, stop: rows[start:stop],
            owners=np.arange(len(rows)), reduce=lambda outputs, owners: tuple(outputs),
            output=fetched, batch_size=batch_size, progress=progress, desc="activations",
        )
        by_name = dict(zip(fetched, results))
        outputs = by_name[output_name]
        return Activations(
            values={name: by_name[name] for name in wanted},
            outputs=outputs,
            output_name=output_name,
            input_name=feeds.name,
            data=rows,
            predictions=_predictions(outputs),
            label_names=model.label_names,
            op_types={name: exposed.op_types.get(name, "?") for name in wanted},
        )

    def _exposed(self) -> _Exposed:
        layers = self.layers
        # compared, not hashed: a copy of a list, so that editing it later is noticed
        key = (id(self.model), tuple(layers) if isinstance(layers, list) else layers)
        cached = self._cache
        if cached is not None and cached.key == key:
            return cached
        source = open_model(self.model)
        listed = select_tensors(source, layers, parameter="layers", kinds={"node output"})
        exposed = expose(source, listed)
        if isinstance(self.model, Model) and self.model.proto is not None:  # same providers, device and batch size
            model = self.model.derive(exposed)
        else:
            model = load(exposed, external_data_dir=source.base_dir)
        batched = [name for name in listed if _has_batch_axis(model.output_spec(name))]
        if len(batched) < len(listed) and not (callable(layers) or layers == "all"):
            name = next(name for name in listed if name not in batched)
            raise ParameterError(
                f"layers: tensor {name!r} has no batch axis (shape {model.output_spec(name).describe()}), "
                "so it has no value per row; choose tensors computed from the input rows"
            )
        if not batched:
            raise ParameterError("layers: none of the selected tensors has a batch axis")
        graph = source.proto.graph
        op_types = {}
        for node in graph.node:
            op_types.update({name: node.op_type for name in node.output if name})
        self._cache = _Exposed(key, model, tuple(batched), len(graph.output), op_types)
        return self._cache

    def _check_known(self, name: str, recorded: tuple) -> None:
        source = open_model(self._exposed().model)
        resolve_tensors(source, [name], parameter="layer")
        raise ParameterError(_unknown_layer(name, recorded))


def _has_batch_axis(spec) -> bool:
    # A leading symbolic or unknown dimension is the batch even when shape inference named it
    # differently from the input's (after a Reshape, say); evaluate leaves such values as they are.
    return spec.batch_axis is not None or bool(spec.shape and not isinstance(spec.shape[0], int))


def _original_output(model, output, n_original: int):
    """The explained output among the model's own outputs, not the exposed tensors."""
    if output is not None:
        return model.output_spec(output)
    own = model.outputs[:n_original]
    return next((spec for spec in own if spec.is_floating), own[0])


def _predictions(outputs: np.ndarray) -> np.ndarray | None:
    """The argmax over the class axis of (n_rows, C) or (n_rows, C, 1, ...) outputs; else None."""
    if outputs.ndim < 2 or any(size != 1 for size in outputs.shape[2:]) or outputs.shape[1] < 2:
        return None
    if not np.issubdtype(outputs.dtype, np.number):
        return None
    return np.argmax(outputs.reshape(len(outputs), -1), axis=1)


def _groups(target, recorded: Activations) -> dict:
    """Row indices per class of ``target``: {class: ndarray of row indices}, {None: all} for None."""
    n = recorded.n_rows
    if target is None:
        return {None: np.arange(n)}
    if callable(target) and not isinstance(target, str):
        raise ParameterError(
            "target: statistics groups rows by class; pass 'predicted', an int, per-row labels or None, not a callable"
        )
    outputs = recorded.outputs
    if outputs.ndim > 2 and outputs.shape[2:] == (1,) * (outputs.ndim - 2):
        outputs = outputs.reshape(n, -1)
    indices = resolve(target, outputs, output_name=recorded.output_name).as_array()
    if indices.ndim == 2 and indices.shape[1] == 0:
        return {None: np.arange(n)}
    keys = [int(value) for value in indices] if indices.ndim == 1 else [tuple(int(v) for v in row) for row in indices]
    groups: dict = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    return {key: np.asarray(groups[key]) for key in sorted(groups)}


def _unknown_layer(name: str, recorded) -> str:
    close = difflib.get_close_matches(name, list(recorded), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"layer: {name!r} is not among the recorded layers{hint} (recorded: {list(recorded)})"
