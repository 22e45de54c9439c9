"""The model interface every explainer talks to: specs, one-call runs, batched predict."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ParameterError
from ..graph.source import ModelSource
from .specs import TensorSpec


@dataclass
class ModelCache:
    """What a model learns while it runs, kept with it so that every explainer reuses it.

    Attributes
    ----------
    tuned_batch_sizes : dict
        Batch sizes found by ``batch_size="auto"``, per explained input and row shape.
    batch_growth : dict
        Measurements of calls too short to compare two sizes, per input and row shape; the
        next call goes on from there.
    derived : dict
        Models derived from this one (fused perturbation graphs, the parts of a model split at
        a layer), by a key that names the edit.
    fingerprint : str or None
        The hash of the graph that keys the batch sizes kept on disk.
    """

    tuned_batch_sizes: dict = field(default_factory=dict)
    batch_growth: dict = field(default_factory=dict)
    derived: dict = field(default_factory=dict)
    fingerprint: str | None = None

    def derived_model(self, key, make):
        """The model derived under ``key``, made by ``make()`` the first time."""
        if key not in self.derived:
            self.derived[key] = make()
        return self.derived[key]


class Model:
    """Base of :class:`OnnxModel`, :class:`CallableModel` and :class:`ShardedModel`.

    Subclasses call ``super().__init__()``, set ``inputs``, ``outputs``, ``metadata`` and the
    other attributes below that differ from their defaults, and implement :meth:`_run`.
    Explainers, metrics and jobs use only what is declared here.
    """

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    label_names: tuple[str, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    #: how raw inputs become model inputs: layout, scale, mean, std (from the model's metadata)
    preprocessing: dict | None = None
    metadata: dict[str, str]
    #: the only batch size the model runs at, when it could not be made dynamic
    static_batch: int | None = None
    batch_size: int | str = "auto"
    #: pad short batches to the batch size, so that the runtime sees few shapes (on CUDA each
    #: new shape costs a kernel search)
    fixed_shapes: bool = False
    #: the execution providers the model runs on
    providers: tuple[str, ...] | list[str] = ()
    #: "fp32", or "fp16" for a half-precision copy (attributions then differ from fp32's)
    precision: str = "fp32"
    #: the ONNX graph, for models that are one (graph edits, fusing and splitting need it)
    proto = None
    #: the file the graph was read from, and the folder its external weights are read from
    path = None
    external_data_dir = None
    #: "auto", True or False: whether perturbations are composed inside the graph
    fuse: str | bool = False
    #: ONNX Runtime intra-op threads (None: its default), part of the batch-size cache key
    threads: int | None = None
    #: batch axes given at load for inputs whose batch the graph does not show
    batch_axes: dict | None = None

    def __init__(self):
        self.cache = ModelCache()

    @property
    def tuned_batch_sizes(self) -> dict:
        """Batch sizes found by ``batch_size="auto"``, per explained input and row shape."""
        return self.cache.tuned_batch_sizes

    @property
    def layout(self) -> str | None:
        """The image layout the model's metadata declares ("nchw" or "nhwc"), else None."""
        layout = (self.preprocessing or {}).get("layout")
        return layout if layout in ("nchw", "nhwc") else None

    @property
    def graph_source(self) -> ModelSource | None:
        """The graph and the folder its external weights are read from, for graph functions."""
        if self.proto is None:
            return None
        base_dir = self.external_data_dir or (self.path.parent if self.path is not None else None)
        return ModelSource(self.proto, base_dir, self.path)

    @property
    def fuses_perturbations(self) -> bool:
        """Whether methods that can should compose their perturbations inside the graph."""
        return False

    @property
    def device_key(self) -> str:
        """Where the model runs, as the batch-size cache keys it."""
        return "host"

    def derive(self, proto, *, session_config=None) -> "Model":
        """A model of ``proto``, an edit of this model's graph, on the same devices and settings."""
        raise ParameterError(
            f"model: {type(self).__name__} is not an ONNX graph, so it cannot run an edit of one; "
            "load an .onnx file for methods that edit the graph"
        )

    def _run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        raise NotImplementedError

    # -- specs -------------------------------------------------------------------------
    def input_spec(self, name: str | None = None) -> TensorSpec:
        """The spec of input ``name``; by default the first input."""
        if name is None:
            return self.inputs[0]
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise ParameterError(
            f"input: model has no input {name!r}; inputs are {[spec.name for spec in self.inputs]}"
        )

    def output_spec(self, output: str | int | None = None) -> TensorSpec:
        """The output selected by name or index; by default the first floating-point output."""
        if output is None:
            floating = [spec for spec in self.outputs if spec.is_floating]
            return (floating or self.outputs)[0]
        if isinstance(output, (int, np.integer)) and not isinstance(output, bool):
            if not 0 <= output < len(self.outputs):
                raise ParameterError(
                    f"output: index {output} is out of range; the model has {len(self.outputs)} outputs "
                    f"{[spec.name for spec in self.outputs]}"
                )
            return self.outputs[output]
        for spec in self.outputs:
            if spec.name == output:
                return spec
        raise ParameterError(
            f"output: model has no output {output!r}; outputs are {[spec.name for spec in self.outputs]}"
        )

    # -- running -----------------------------------------------------------------------
    def run(self, feeds: dict, output_names: list[str] | None = None) -> list[np.ndarray]:
        """Run once on ``feeds`` (a dict of input name to array, batch included), no batching.

        Returns the requested outputs (all by default) in order.
        """
        names = output_names or [spec.name for spec in self.outputs]
        missing = [spec.name for spec in self.inputs if spec.name not in feeds]
        if missing:
            raise InputError(f"run: missing inputs {missing}")
        return self._run(feeds, names)

    def run_batch(self, feeds: dict, batched: set, output_names: list[str]) -> list[np.ndarray]:
        """Run one batch of the batching loop; ``batched`` names the feeds that carry its rows.

        A model on several devices splits those rows between them (see ShardedModel).
        """
        return self.run(feeds, output_names)

    def predict(
        self, x, *, input=None, fixed_inputs=None, output=None, batch_size=None, progress=None
    ) -> np.ndarray:
        """Run any number of rows through the model in batches and return one output.

        Parameters
        ----------
        x : array_like
            Rows of the input ``input`` (batch axis included).
        input : str, optional
            The input ``x`` feeds; by default the first input.
        fixed_inputs : dict of str to array_like, optional
            Values for the other inputs, either one row (broadcast) or one per row of ``x``.
        output : str or int, optional
            The output returned; by default the first floating-point output.
        batch_size : int, optional
            Overrides the model's batch size for this call.
        progress : bool, optional
            Show a progress bar (default: only on long runs in a terminal).

        Returns
        -------
        ndarray of shape (n_rows, ...)
        """
        from .batching import Feeds, evaluate

        feeds = Feeds.prepare(self, x, input=input, fixed_inputs=fixed_inputs, check_finite=False)
        spec = self.output_spec(output)
        rows = feeds.rows
        return evaluate(
            self,
            feeds,
            n=len(rows),
            make_rows=lambda start, stop: rows[start:stop],
            owners=np.arange(len(rows)),
            reduce=lambda outputs, owners: outputs,
            output=spec.name,
            batch_size=batch_size,
            progress=progress,
            desc="predict",
        )
