"""OnnxModel: one ONNX Runtime session per model and device, with specs and batched runs."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import ModelExecutionError, ModelLoadError, OutOfMemoryError, ParameterError
from ..graph.batch import make_batch_dynamic, static_batch_size
from ..graph.source import read_model, uses_external_data
from ..graph.tidy import drop_empty_trailing_inputs
from .binding import Resident, StaticBinding, run_bound
from .model import Model
from .precision import PRECISIONS, to_float16
from .providers import CUDA, resolve_providers, with_cuda_graph, without_cuda_graph
from .specs import TensorSpec, dtype_from_ort

#: the most the row-independence probe may feed (two rows of every input); above it the probe is skipped
PROBE_BYTES = 64 << 20
_MEMORY_MESSAGES = ("out of memory", "failed to allocate", "bad_alloc", "cudaerrormemoryallocation")


class OnnxModel(Model):
    """An ONNX model on one ONNX Runtime session.

    Use :func:`agnostic_explain.load` rather than this constructor. See there for parameters;
    ``session_config`` (a dict) adds ONNX Runtime session config entries.

    Attributes
    ----------
    inputs, outputs : list of TensorSpec
        Names, dtypes and shapes (symbolic dimensions by name).
    providers : list of str
        The providers the session actually runs on.
    static_batch : int or None
        Set when the model's fixed batch size could not be made dynamic; rows then run in
        padded batches of this size.
    metadata : dict of str to str
        The model's ``metadata_props``.
    """

    def __init__(self, model, *, providers="auto", device_id=0, batch_size="auto", threads=None,
                 external_data_dir=None, session_config=None, fuse="auto", precision="fp32", cuda_graph=False,
                 batch_axes=None):
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ParameterError(f"threads must be a positive int or None, got {threads!r}")
        if batch_size != "auto" and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
            raise ParameterError(f"batch_size must be a positive int or 'auto', got {batch_size!r}")
        if fuse not in ("auto", True, False):
            raise ParameterError(f"fuse must be 'auto', True or False, got {fuse!r}")
        if precision not in PRECISIONS:
            raise ParameterError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not isinstance(cuda_graph, bool):
            raise ParameterError(f"cuda_graph must be True or False, got {cuda_graph!r}")
        super().__init__()
        proto, path = read_model(model, external_data_dir)
        if precision == "fp16":
            proto, path = to_float16(proto), None
        self.fuse, self.precision = fuse, precision
        self.proto = proto
        self.path = path
        self.external_data_dir = path.parent if path is not None else (
            Path(external_data_dir) if external_data_dir is not None else None
        )
        self.batch_size = batch_size
        self.device_id = device_id
        self._provider_entries = resolve_providers(providers, device_id)
        self.threads = threads
        self._session_config = dict(session_config or {})
        self.metadata = {prop.key: prop.value for prop in proto.metadata_props}
        self.label_names = _json_names(self.metadata.get("class_names"))
        self.feature_names = _json_names(self.metadata.get("feature_names"), "feature_names")
        self.preprocessing = _json_preprocessing(self.metadata.get("preprocessing"))
        self.static_batch = None
        if cuda_graph:
            self._provider_entries = with_cuda_graph(self._provider_entries)
        self.session = self._session_for(proto, path)
        self._source, self._static = (proto, path), None
        fixed = static_batch_size(proto)
        if fixed is not None:
            self._unfix_batch(proto, path, fixed)
        self.providers = self.session.get_providers()
        if cuda_graph and self.on_cuda:
            self._static = StaticBinding(self.session, "cuda", device_id, graph_ids=True)
        symbol = _batch_symbol(self.session.get_inputs())
        self.batch_axes = _checked_batch_axes(batch_axes, self.session.get_inputs())
        self.inputs = _specs(self.session.get_inputs(), symbol, self.batch_axes)
        self.outputs = _specs(self.session.get_outputs(), symbol)
        if self.static_batch is not None:
            self.inputs = [_static_batch_spec(spec, self.static_batch) for spec in self.inputs]
            self.outputs = [_static_batch_spec(spec, self.static_batch) for spec in self.outputs]

    def __repr__(self) -> str:
        ins = ", ".join(f"{spec.name}{spec.describe()}" for spec in self.inputs)
        outs = ", ".join(f"{spec.name}{spec.describe()}" for spec in self.outputs)
        return f"OnnxModel(inputs=[{ins}], outputs=[{outs}], providers={self.providers})"

    def derive(self, proto: onnx.ModelProto, *, session_config=None) -> "OnnxModel":
        """A model of ``proto`` (an edit of this one) on the same providers, device and settings.

        ``session_config`` adds ONNX Runtime session config entries (``{"key": "value"}``).
        """
        derived = OnnxModel(
            proto, providers=self._provider_entries, device_id=self.device_id, batch_size=self.batch_size,
            threads=self.threads, external_data_dir=self.external_data_dir,
            session_config={**self._session_config, **(session_config or {})}, fuse=self.fuse,
            cuda_graph=self._static is not None, batch_axes=self.batch_axes,
        )
        derived.precision = self.precision  # an edit of an fp16 copy is one too; it is not converted again
        return derived

    @property
    def on_cuda(self) -> bool:
        return CUDA in self.providers

    @property
    def device(self) -> str:
        """Where inputs are bound: "cuda" or "cpu"."""
        return "cuda" if self.on_cuda else "cpu"

    @property
    def device_key(self) -> str:
        return f"{','.join(self.providers)}|{self.device_id}|{self.threads}"

    @property
    def fuses_perturbations(self) -> bool:
        """Whether methods that can should compose their perturbations inside the graph."""
        return self.on_cuda if self.fuse == "auto" else bool(self.fuse)

    @property
    def fixed_shapes(self) -> bool:
        return self.on_cuda

    def _session_for(self, proto: onnx.ModelProto, path: Path | None) -> ort.InferenceSession:
        # ORT's Pad fusion skips the Pad(x, pads, "") torch writes: serve the same graph without the ""
        tidied = drop_empty_trailing_inputs(proto)
        return open_session(
            path if path is not None and tidied is proto else tidied, providers=self._provider_entries,
            threads=self.threads,
            session_config=self._session_config, external_data_dir=self.external_data_dir,
        )

    def _unfix_batch(self, proto: onnx.ModelProto, path: Path | None, size: int) -> None:
        """Rewrite a static batch as symbolic, keeping it only if a probe shows rows stay independent."""
        if not uses_external_data(proto) or self.external_data_dir is not None:
            dynamic = make_batch_dynamic(proto)
            candidate = self._session_for(dynamic, None)
            if _rows_independent(candidate, size):
                self.session, self._source = candidate, (dynamic, None)
                return
        self.static_batch = size

    # -- running -------------------------------------------------------------------------
    def _run(self, feeds: dict[str, np.ndarray], output_names: list[str]) -> list[np.ndarray]:
        try:
            if self._static is not None:
                return self._run_static(feeds, output_names)
            if self.on_cuda or any(isinstance(value, Resident) for value in feeds.values()):
                # IO binding: only the requested outputs come back, Resident inputs stay put
                return run_bound(self.session, feeds, output_names, self.device, self.device_id)
            return self.session.run(output_names, feeds)
        except Exception as error:
            message = str(error)
            if any(text in message.lower() for text in _MEMORY_MESSAGES):
                raise OutOfMemoryError(f"ONNX Runtime ran out of memory: {message.splitlines()[0]}") from error
            raise ModelExecutionError(f"ONNX Runtime failed while running the model: {message}") from error

    def _run_static(self, feeds, output_names):
        """CUDA graphs: fixed buffers per shape; a model that cannot be captured runs without."""
        try:
            return self._static.run(feeds, output_names)
        except Exception as error:
            if any(text in str(error).lower() for text in _MEMORY_MESSAGES):
                raise
            warnings.warn(
                f"CUDA graph capture failed for this model ({str(error).splitlines()[0][:200]}); "
                "running without CUDA graphs", RuntimeWarning, stacklevel=4,
            )
            self._provider_entries = without_cuda_graph(self._provider_entries)
            self.session = self._session_for(*self._source)
            self._static = None
            return run_bound(self.session, feeds, output_names, self.device, self.device_id)


def open_session(model, *, providers, threads=None, session_config=None, external_data_dir=None):
    """An ONNX Runtime session with this project's settings, for a file path or a ModelProto.

    Quiet logs, deterministic compute, and external weights read from ``external_data_dir``
    when an in-memory proto refers to them. No ONNX checker: callers check first, or run an
    edit the checker would refuse (outputs whose type only ONNX Runtime infers).
    """
    in_memory = isinstance(model, onnx.ModelProto)
    if in_memory and external_data_dir is None and uses_external_data(model):
        raise ModelLoadError(
            "model: its weights are stored in external files, but it was given in memory without their "
            "folder; pass external_data_dir=FOLDER, or load the model from its .onnx path"
        )
    # ONNX Runtime's own log lines (warnings, and errors we turn into one message of ours) would
    # bury the message the user needs: the environment logger and the session log only fatal ones.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.use_deterministic_compute = True  # random_state must give identical results, on CUDA too
    if threads:
        options.intra_op_num_threads = threads
    for key, value in (session_config or {}).items():
        options.add_session_config_entry(key, value)
    if in_memory and external_data_dir is not None and uses_external_data(model):
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(external_data_dir)
        )
    source = model.SerializeToString() if in_memory else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=providers)
    except Exception as error:
        raise ModelLoadError(f"model: ONNX Runtime could not create a session: {error}") from error


def input_specs(session: ort.InferenceSession) -> list[TensorSpec]:
    """The session's inputs as TensorSpecs, the batch axis found as :class:`OnnxModel` finds it."""
    args = session.get_inputs()
    return _specs(args, _batch_symbol(args))


def _rows_independent(session: ort.InferenceSession, size: int) -> bool:
    """Whether a session gives each of two rows the same output as running them alone.

    Inputs whose first dimension is not symbolic (scalars, shared tables) get their declared
    shape and are fed unchanged to every run.
    """
    generator = np.random.default_rng(0)
    shapes = {}
    for arg in session.get_inputs():
        is_batched = bool(arg.shape) and isinstance(arg.shape[0], str)
        dims = arg.shape[1:] if is_batched else arg.shape
        shapes[arg.name] = (is_batched, ([2] if is_batched else []) + [dim if isinstance(dim, int) else 1 for dim in dims])
    total = sum(math.prod(shape) * dtype_from_ort(arg.type).itemsize for arg, (_, shape) in zip(session.get_inputs(), shapes.values()))
    if total > PROBE_BYTES:
        warnings.warn(
            f"model: the inputs of a two-row probe would take {total / 2**20:.0f} MiB, over "
            f"{PROBE_BYTES >> 20} MiB; the model keeps its static batch size", RuntimeWarning, stacklevel=4,
        )
        return False
    batched, shared = {}, {}
    for arg in session.get_inputs():
        dtype = dtype_from_ort(arg.type)
        is_batched, shape = shapes[arg.name]
        if np.issubdtype(dtype, np.floating):
            value = generator.random(shape, dtype=np.float32).astype(dtype, copy=False)
        else:
            value = np.zeros(shape, dtype)
        (batched if is_batched else shared)[arg.name] = value
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # a failing probe is an expected outcome, not an error to print
    try:
        together = session.run(None, {**batched, **shared}, quiet)
        alone = [
            session.run(None, {**{name: value[i : i + 1] for name, value in batched.items()}, **shared}, quiet)
            for i in range(2)
        ]
    except Exception:
        return False
    for index, joint in enumerate(together):
        separate = np.concatenate([outputs[index] for outputs in alone], axis=0)
        if joint.shape != separate.shape or not np.allclose(joint, separate, rtol=1e-4, atol=1e-5):
            return False
    return True


def _batch_symbol(args) -> str | None:
    """The symbolic dimension most inputs lead with: the batch, wherever else it sits."""
    firsts = [arg.shape[0] for arg in args if arg.shape and isinstance(arg.shape[0], str)]
    return max(dict.fromkeys(firsts), key=firsts.count) if firsts else None  # ties: the first input's


def _specs(args, symbol: str | None, overrides: dict | None = None) -> list[TensorSpec]:
    """Specs whose batch axis is the one ``overrides`` names, else where ``symbol`` sits, else,
    in a model whose dimensions have no names, the only unknown dimension of an input (a state
    ``[2, ?, 128]`` beside an input ``[?, ?]``), else a leading unknown dimension. An input with
    several unknown dimensions and no names is marked ambiguous: explaining it takes axis 0,
    holding it fixed asks for ``batch_axes``."""
    overrides = overrides or {}
    result = []
    for arg in args:
        shape = tuple(arg.shape)
        unknown = tuple(position for position, dim in enumerate(shape) if dim is None)
        ambiguous = ()
        if arg.name in overrides:
            axis = overrides[arg.name]
        else:
            axis = shape.index(symbol) if symbol is not None and symbol in shape else None
            if axis is None and symbol is None and len(unknown) == 1:
                axis = unknown[0]
            elif axis is None and shape and shape[0] is None:
                axis = 0  # batch first, by convention; an explained input may rely on it
                if symbol is None and len(unknown) > 1:
                    ambiguous = unknown  # a fixed input may not: which axis its rows are on is a guess
        result.append(TensorSpec(name=arg.name, dtype=dtype_from_ort(arg.type), shape=shape, batch_axis=axis,
                                 ambiguous_axes=ambiguous))
    return result


def _checked_batch_axes(batch_axes, args) -> dict:
    """``batch_axes`` ({input name: axis or None}) checked against the model's inputs."""
    if batch_axes is None:
        return {}
    if not isinstance(batch_axes, dict):
        raise ParameterError(f"batch_axes must be a dict of input name to axis (or None), got {batch_axes!r}")
    ranks = {arg.name: len(arg.shape) for arg in args}
    checked = {}
    for name, axis in batch_axes.items():
        if name not in ranks:
            raise ParameterError(f"batch_axes: the model has no input {name!r}; inputs are {sorted(ranks)}")
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int) or not -ranks[name] <= axis < ranks[name]):
            raise ParameterError(
                f"batch_axes[{name!r}] must be None or an axis of its {ranks[name]} axes, got {axis!r}"
            )
        checked[name] = None if axis is None else axis % ranks[name]
    return checked


def _static_batch_spec(spec: TensorSpec, size: int) -> TensorSpec:
    if spec.shape and spec.shape[0] == size:
        return TensorSpec(spec.name, spec.dtype, spec.shape, batch_axis=0)
    return spec


def _json_preprocessing(text: str | None) -> dict | None:
    """The ``preprocessing`` metadata (layout, scale, mean, std), or None when absent or malformed."""
    try:
        found = json.loads(text) if text else None
    except (ValueError, RecursionError):  # not JSON, or nested past Python's recursion limit
        return None
    if not isinstance(found, dict):
        return None
    result = {key: found[key] for key in ("layout", "scale", "mean", "std") if found.get(key) is not None}
    if "layout" in result:
        result["layout"] = str(result["layout"]).lower()
    return result or None


def _json_names(text: str | None, key: str = "class_names") -> tuple[str, ...] | None:
    """Names from metadata ``key``: a JSON list, or a dict of integer keys (``{"0": "cat", ...}``)."""
    if not text:
        return None
    expected = 'expected a JSON list of names or a dict with integer keys such as {"0": "cat"}; fix or remove the entry'
    try:
        names = json.loads(text)
    except ValueError:
        return None  # not JSON: a free-text entry of another tool, not names
    except RecursionError:
        raise ModelLoadError(f"model metadata {key!r}: JSON nested too deeply to read; {expected}") from None
    if isinstance(names, dict):  # {"0": "cat", ...}
        try:
            order = {name: int(name) for name in names}
        except ValueError:
            bad = next(name for name in names if not name.lstrip("-").isdigit())
            raise ModelLoadError(f"model metadata {key!r}: the key {bad[:40]!r} is not an integer; {expected}") from None
        names = [names[name] for name in sorted(names, key=order.__getitem__)]
    if not isinstance(names, list):
        return None
    if any(isinstance(name, (list, dict)) for name in names):
        raise ModelLoadError(f"model metadata {key!r}: names must be strings or numbers, not lists or dicts; {expected}")
    return tuple(str(name) for name in names)
