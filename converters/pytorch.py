"""PyTorch modules to ONNX with ``torch.onnx.export``, checked against the module's own outputs.

The default exporter is TorchScript-based (``dynamo=False``): on torch 2.13 it converts
recurrent layers (``nn.LSTM``, ``nn.GRU``) with a dynamic batch in well under a second,
while the ``torch.export``-based exporter (``dynamo=True``) takes seconds and more often
trips on data-dependent shapes. ``dynamo=True`` stays available, and is what an
``ExportedProgram`` (a ``.pt2`` file) needs, since the TorchScript exporter cannot trace one.
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .metadata import finish
from .parity import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["from_torch", "load_native"]

EXTRA = "agnostic-explain[torch]"


def from_torch(
    module, example_inputs, *, input_names=None, output_names=None, dynamic_batch=True, opset=17,
    class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, dynamo=False,
):
    """Convert a PyTorch module to ONNX and prove it on ``example_inputs``.

    The module runs in eval mode under ``torch.no_grad()`` (its training flag is restored
    afterwards); ONNX Runtime must then reproduce its outputs on the example inputs.

    Parameters
    ----------
    module : torch.nn.Module, torch.jit.ScriptModule or torch.export.ExportedProgram
    example_inputs : ndarray, torch.Tensor, or tuple of them
        One array per ``forward`` argument, batch axis first, e.g. a tuple
        ``(sequences of shape (n, T, F), features of shape (n, D))``. They trace the graph
        and are the parity sample. float64 arrays are cast to the weights' float type.
    input_names, output_names : sequence of str, optional
        ONNX names; by default ``input`` (``input_0``, ``input_1``, ... for several) and
        ``output`` (``output_0``, ...). Outputs are the module's returned tensors, flattened.
    dynamic_batch : bool, default True
        Make the first axis of every input and output symbolic (``batch``), so any batch
        size runs. An ``ExportedProgram`` keeps the dynamic shapes it was exported with.
    opset : int, default 17
        ONNX opset to export to.
    class_names, feature_names : sequence of str, optional
        Stored in the model's metadata (read back as ``label_names``, ``feature_names``).
    preprocessing : dict, optional
        ``{"layout": "nchw", "scale": ..., "mean": [...], "std": [...]}`` stored as metadata.
    path : str or Path, optional
        Also write the model there.
    atol, rtol : float
        Parity tolerances (see :func:`converters.check_parity`).
    dynamo : bool, default False
        Use the ``torch.export``-based exporter instead of the TorchScript one.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ConversionError
        The exporter cannot convert an operator (named, with the opset to try), or the
        module's ``forward`` fails on ``example_inputs``.
    ParityError
        ONNX Runtime's outputs differ from the module's beyond the tolerances.
    MissingDependencyError
        PyTorch is not installed.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from converters import from_torch, read_metadata
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> proto = from_torch(net, np.ones((2, 4), np.float32), class_names=["a", "b", "c"])
    >>> read_metadata(proto)["class_names"], read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    (['a', 'b', 'c'], True)
    """
    torch = require("torch", EXTRA)
    program = module if isinstance(module, torch.export.ExportedProgram) else None
    if program is None and not isinstance(module, torch.nn.Module):
        raise ConversionError(
            f"module must be a torch.nn.Module, ScriptModule or ExportedProgram, got {type(module).__name__}"
        )
    arrays = _sample_arrays(torch, example_inputs, _float_dtype(module if program is None else program.module()))
    tensors = tuple(torch.from_numpy(array) for array in arrays)
    input_names = _names(input_names, len(arrays), "input", "input_names")
    with _evaluating(module), torch.no_grad():
        try:
            returned = (program.module() if program is not None else module)(*tensors)
        except Exception as error:
            shapes = ", ".join(f"{array.shape} {array.dtype}" for array in arrays)
            raise ConversionError(
                f"example_inputs: the module's forward failed on inputs of shape {shapes}: "
                f"{type(error).__name__}: {error}. Pass one array per forward argument, batch axis "
                "first, with the shapes and dtypes the module expects"
            ) from error
        outputs = _flat_tensors(returned)
        output_names = _names(output_names, len(outputs), "output", "output_names")
        expected = {name: tensor.detach().cpu().numpy() for name, tensor in zip(output_names, outputs)}
        rows = len(arrays[0])
        # an output is batched when its first axis has the sample's row count (a column mean is not)
        batched = [name for name, value in expected.items() if value.ndim and len(value) == rows]
        dynamic_axes = None
        if dynamic_batch and program is None:
            dynamic_axes = {name: {0: "batch"} for name in input_names}
            dynamic_axes.update({name: {0: "batch"} for name in batched})
        proto = _export(torch, module, tensors, input_names, output_names, dynamic_axes, opset,
                        dynamo or program is not None)
        model = _session(proto)  # one session for both checks
        if dynamic_batch and batched and not proto.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value"):
            _check_other_batch(module if program is None else program.module(), arrays, input_names,
                               output_names, batched, model, proto, atol, rtol)
    return finish(
        proto,
        feeds=dict(zip(input_names, arrays)),
        expected=expected, model=model,
        framework="torch", framework_version=torch.__version__, path=path, atol=atol, rtol=rtol,
        class_names=class_names, feature_names=feature_names, preprocessing=preprocessing,
    )


def load_native(path, *, allow_pickle=False):
    """Load a saved PyTorch model for :func:`from_torch`.

    TorchScript archives (``torch.jit.save``: ``.pt``, ``.pth``, ``.ts``) load by default:
    their loader rebuilds TorchScript code and tensors, not arbitrary Python objects. An
    ``ExportedProgram`` (``torch.export.save``, ``.pt2``) and a whole pickled ``nn.Module``
    (``torch.save(module)``) load only with ``allow_pickle=True``, since both unpickle.

    Parameters
    ----------
    path : str or Path
    allow_pickle : bool, default False
        Allow unpickling; only for trusted files (a warning says so).

    Returns
    -------
    torch.jit.ScriptModule, torch.export.ExportedProgram or torch.nn.Module

    Raises
    ------
    ModelNotFoundError
        ``path`` does not exist.
    ConversionError
        The file needs unpickling and ``allow_pickle`` is False, it holds only a
        ``state_dict``, or it is no PyTorch model.
    """
    torch = require("torch", EXTRA)
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"path: no PyTorch model file at {str(path)!r}")
    if path.suffix == ".pt2":
        _allow_unpickling(path, allow_pickle, "an ExportedProgram (torch.export.load unpickles its weights)")
        return torch.export.load(str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated, still the safe format
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # not TorchScript: try a plain torch.save file below
        script_error = error
    try:
        content = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        pass  # a pickled object (a module, say), or not a torch file at all
    else:
        raise ConversionError(
            f"path: {str(path)!r} holds a {type(content).__name__} (a state_dict or tensors), not a module; "
            "build the module in Python, load_state_dict, and call converters.from_torch"
        )
    _allow_unpickling(path, allow_pickle, "not TorchScript; it may be a pickled nn.Module (torch.save(module))")
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as error:
        raise ConversionError(
            f"path: {str(path)!r} is neither TorchScript ({script_error}) nor a torch.save file: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(loaded, torch.nn.Module):
        raise ConversionError(f"path: {str(path)!r} holds a {type(loaded).__name__}, not a torch.nn.Module")
    return loaded


def _session(proto):
    """The exported model on ONNX Runtime's CPU provider; an unloadable export is a ConversionError."""
    from agnostic_explain.errors import ModelLoadError
    from agnostic_explain.runtime import load

    try:
        return load(proto, providers="cpu")
    except ModelLoadError as error:
        raise ConversionError(f"the exported graph does not load in ONNX Runtime: {error}") from error


def _check_other_batch(forward, arrays, input_names, output_names, batched, model, proto, atol, rtol) -> None:
    """Run another batch size than the sample's: tracing can bake the batch into the graph."""
    import torch

    from agnostic_explain.errors import AgnosticExplainError

    from .parity import check_parity

    picked = [array[:1] if len(array) > 1 else np.concatenate([array, array]) for array in arrays]
    with torch.no_grad():
        outputs = _flat_tensors(forward(*(torch.from_numpy(array) for array in picked)))
    expected = {name: tensor.detach().cpu().numpy() for name, tensor in zip(output_names, outputs)}
    try:
        check_parity(proto, dict(zip(input_names, picked)), {name: expected[name] for name in batched},
                     atol=atol, rtol=rtol, model=model)
    except AgnosticExplainError as error:
        raise ConversionError(
            f"dynamic_batch: the exported graph does not reproduce the module at batch size "
            f"{len(picked[0])} (the sample has {len(arrays[0])} rows); the trace may have fixed the batch "
            f"size somewhere (a reshape to a constant shape, say): {str(error).strip()}. Pass dynamic_batch=False "
            "to export a fixed batch size"
        ) from error


def _allow_unpickling(path: Path, allow_pickle: bool, what: str) -> None:
    if not allow_pickle:
        raise ConversionError(
            f"path: {str(path)!r} is {what}, and loading it means unpickling, which can run arbitrary "
            "code; pass --allow-pickle (allow_pickle=True) only if the file is trusted, or save the "
            "model with torch.jit.save instead"
        )
    warnings.warn(
        f"loading {str(path)!r}: unpickling can run arbitrary code; do this only for trusted files",
        UserWarning, stacklevel=3,
    )


def _float_dtype(module) -> np.dtype:
    """The dtype of the module's floating-point weights (float32 when it has none)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return np.dtype(str(parameter.dtype).replace("torch.", ""))
    return np.dtype(np.float32)


def _sample_arrays(torch, example_inputs, float_dtype) -> tuple[np.ndarray, ...]:
    """The example inputs as arrays; NumPy's default float64 becomes the weights' float type."""
    items = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    if not items:
        raise ConversionError("example_inputs: expected an array or a tuple of arrays, got an empty sequence")
    arrays = []
    for index, item in enumerate(items):
        if isinstance(item, torch.Tensor):
            item = item.detach().cpu().numpy()
        try:
            array = np.ascontiguousarray(item)
        except Exception as error:
            raise ConversionError(f"example_inputs[{index}]: cannot make an array of {type(item).__name__}") from error
        if array.dtype == object or array.ndim == 0:
            raise ConversionError(
                f"example_inputs[{index}]: expected a numeric array with a batch axis, got "
                f"dtype {array.dtype} and shape {array.shape}"
            )
        if array.dtype == np.float64 and float_dtype != np.float64:
            array = array.astype(float_dtype)
        arrays.append(array)
    return tuple(arrays)


def _names(names, count: int, stem: str, parameter: str) -> list[str]:
    if names is None:
        return [stem] if count == 1 else [f"{stem}_{index}" for index in range(count)]
    names = [names] if isinstance(names, str) else [str(name) for name in names]
    if len(names) != count or len(set(names)) != count:
        raise ConversionError(f"{parameter}: expected {count} distinct names, got {names!r}")
    return names


def _flat_tensors(returned) -> list:
    """The module's returned tensors in order: nested tuples, lists and dict values flattened."""
    if isinstance(returned, (tuple, list)):
        return [tensor for item in returned for tensor in _flat_tensors(item)]
    if isinstance(returned, dict):
        return [tensor for item in returned.values() for tensor in _flat_tensors(item)]
    if hasattr(returned, "detach"):
        return [returned]
    raise ConversionError(f"module: forward returned a {type(returned).__name__}; expected tensors")


@contextmanager
def _evaluating(module):
    """Eval mode for the export, the caller's mode afterwards."""
    training = getattr(module, "training", None)
    if training is not None:
        module.eval()
    try:
        yield
    finally:
        if training:
            module.train(True)


def _export(torch, module, tensors, input_names, output_names, dynamic_axes, opset, dynamo):
    if dynamo:
        require("onnxscript", EXTRA)  # the torch.export-based exporter builds its graph with it
    options = dict(input_names=input_names, output_names=output_names, opset_version=opset, dynamo=dynamo,
                   dynamic_axes=dynamic_axes)
    try:
        with warnings.catch_warnings():
            # our choice of exporter, and tracer notes on LSTM internals: not the caller's concern
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            # the batch-size warning on recurrent layers: _check_other_batch tests exactly that
            warnings.filterwarnings("ignore", message=".*batch_size other than 1.*")
            warnings.filterwarnings("ignore", message="no signature found for")  # ScriptModules: harmless
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            if dynamo:
                program = torch.onnx.export(module, tensors, verbose=False, **options)
                return program.model_proto
            buffer = io.BytesIO()
            torch.onnx.export(module, tensors, buffer, **options)
    except Exception as error:
        raise _conversion_error(error, opset) from error
    return onnx.load_from_string(buffer.getvalue())


def _conversion_error(error: Exception, opset: int) -> ConversionError:
    text = str(error)
    operator = re.search(r"operator '?([\w.]+::[\w.]+)'?", text) or re.search(r"'([\w.]+::[\w.]+)'", text)
    added = re.search(r"added in version (\d+)", text)
    hint = (f"try opset={added.group(1)} or higher" if added else
            f"try a higher opset (opset={opset + 1} or more), or dynamo=True")
    where = f"operator {operator.group(1)!r}" if operator else "the module"
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return ConversionError(
        f"torch.onnx.export cannot convert {where} at opset {opset}: {first_line[:400]}; {hint}"
    )
