"""TensorFlow SavedModels and ``tf.function`` graphs to ONNX with tf2onnx, checked against TensorFlow.

The function (a SavedModel signature, a concrete function, or a ``tf.function``) is wrapped
in a ``tf.function`` with a flat, named input signature and converted with
``tf2onnx.convert.from_function``. tf2onnx does not fail on a TensorFlow op it cannot
convert: it logs it and leaves a node that is not ONNX, so the result is checked against the
ONNX operator schemas here. The helpers :func:`convert_function`, :func:`check_supported` and
:func:`quiet_tensorflow` also serve :mod:`converters.keras`, whose path is tf2onnx too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .metadata import finish
from .parity import DEFAULT_ATOL, DEFAULT_RTOL

__all__ = ["from_tensorflow", "load_native"]

EXTRA = "agnostic-explain[tensorflow]"
ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def from_tensorflow(
    model, sample, *, signature="serving_default", input_names=None, output_names=None, dynamic_batch=True,
    opset=17, class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL,
):
    """Convert a SavedModel or a TensorFlow function to ONNX and prove it on ``sample``.

    Parameters
    ----------
    model : str, Path, loaded SavedModel, tf.Module, ConcreteFunction or tf.function
        A SavedModel folder (or the object ``tf.saved_model.load`` returns), whose
        ``signature`` is converted; a ``tf.Module`` whose ``__call__`` is a ``tf.function``;
        or a function. A ``tf.function`` without an input signature is traced on the
        sample's shapes and dtypes.
    sample : ndarray, tuple of ndarray, or dict of str to ndarray
        Rows for every input, batch axis first: by input name, or in order (a function's
        positional order; a signature's argument names sorted). Cast to the signature's
        dtypes; the parity sample.
    signature : str, default "serving_default"
        The SavedModel signature to convert.
    input_names, output_names : sequence of str, optional
        ONNX names. By default the signature's own: its argument names and, for a dict of
        outputs, its keys (in TensorFlow's sorted order); otherwise ``input``/``output``
        (``input_0``, ... for several).
    dynamic_batch : bool, default True
        For a ``tf.function`` traced here: leave the batch axis unknown. A signature keeps
        its declared shapes; a batch axis left unknown there is named ``batch`` in the ONNX model.
    opset : int, default 17
    class_names, feature_names : sequence of str, optional
    preprocessing : dict, optional
        Stored as metadata (see :func:`converters.from_torch`).
    path : str or Path, optional
        Also write the model there.
    atol, rtol : float
        Parity tolerances.

    Returns
    -------
    onnx.ModelProto

    Raises
    ------
    ConversionError
        An op tf2onnx cannot convert (named, with its node), a missing signature, or a
        sample that does not fit the signature.
    ParityError
        ONNX Runtime's outputs differ from TensorFlow's beyond the tolerances.

    Examples
    --------
    >>> import numpy as np, tensorflow as tf                          # doctest: +SKIP
    >>> double = tf.function(lambda x: 2.0 * x)                      # doctest: +SKIP
    >>> proto = from_tensorflow(double, np.ones((3, 2), np.float32))  # doctest: +SKIP
    >>> [value.name for value in proto.graph.input]                  # doctest: +SKIP
    ['input']
    """
    tf = quiet_tensorflow()
    if isinstance(model, (str, os.PathLike)):
        model = load_native(model)  # held here: a signature's variables die with the loaded object
    function = _concrete_function(tf, model, signature, sample, dynamic_batch)
    names, specs, call = _inputs(function)
    names = _names(input_names, names, "input_names")
    arrays = _sample_arrays(sample, names, specs)
    try:
        returned = call(*(tf.constant(array) for array in arrays))
    except Exception as error:
        raise ConversionError(
            f"sample: the function failed on inputs of shape {[array.shape for array in arrays]}: "
            f"{type(error).__name__}: {error}"
        ) from error
    flat = [np.asarray(value) for value in tf.nest.flatten(returned)]
    structure = function.structured_outputs
    default_outputs = (sorted(structure) if isinstance(structure, dict) and len(structure) == len(flat)
                       else _default_names("output", len(flat)))  # tf.nest flattens a dict in key order
    output_names = _names(output_names, default_outputs, "output_names")
    proto = convert_function(tf, call, names, specs, output_names, opset=opset)
    return finish(
        proto, feeds=dict(zip(names, arrays)), expected=dict(zip(output_names, flat)),
        framework="tensorflow", framework_version=tf.__version__, path=path, atol=atol, rtol=rtol,
        class_names=class_names, feature_names=feature_names, preprocessing=preprocessing,
    )


def load_native(path, *, allow_pickle=False):
    """Load a SavedModel folder with ``tf.saved_model.load`` (no pickle is involved).

    Parameters
    ----------
    path : str or Path
        The folder holding ``saved_model.pb``.
    allow_pickle : bool, default False
        Unused: a SavedModel is a graph and variables, never unpickled.

    Returns
    -------
    The loaded object; its ``signatures`` are what :func:`from_tensorflow` converts.
    """
    tf = quiet_tensorflow()
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"path: no SavedModel at {str(path)!r}")
    if not (path / "saved_model.pb").is_file():
        hint = (" (a Keras file: use converters.keras.load_native)" if path.suffix in (".keras", ".h5", ".hdf5")
                else "")
        raise ConversionError(f"path: {str(path)!r} is not a SavedModel folder with a saved_model.pb{hint}")
    try:
        return tf.saved_model.load(str(path))
    except Exception as error:
        raise ConversionError(f"path: cannot load the SavedModel {str(path)!r}: {error}") from error


def quiet_tensorflow():
    """Import TensorFlow with its C++ logging off, unless the caller chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return require("tensorflow", EXTRA)


def unsupported_ops(proto: onnx.ModelProto) -> list[tuple[str, str]]:
    """``(op_type, node name)`` of nodes claiming an ONNX domain that ONNX does not define."""
    found = []
    stack = [proto.graph]
    while stack:
        graph = stack.pop()
        for node in graph.node:
            if node.domain in ONNX_DOMAINS and not onnx.defs.has(node.op_type, node.domain):
                found.append((node.op_type, node.name))
            for attribute in node.attribute:
                stack.extend([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else attribute.graphs)
    return found


def check_supported(proto: onnx.ModelProto, opset: int, locate=None) -> None:
    """Raise ConversionError naming the TensorFlow ops tf2onnx left unconverted.

    ``locate(node_name)`` may say where a node comes from (a Keras layer), or return None.
    """
    missing = unsupported_ops(proto)
    if missing:
        described = []
        for op, name in missing[:5]:
            where = locate(name) if locate is not None else None
            described.append(f"{op!r} (node {name!r}{', in ' + where if where else ''})")
        raise ConversionError(
            f"tf2onnx has no ONNX conversion for the TensorFlow op{'s' if len(missing) > 1 else ''} "
            f"{', '.join(described)} at opset {opset}; try a higher opset (tf2onnx supports up to 18), "
            "or replace the layer or op with one ONNX can express"
        )


def convert_function(tf, call, input_names, specs, output_names, *, opset: int, locate=None):
    """tf2onnx's ONNX model of ``call(*tensors)``, with the given input and output names, in order.

    ``call`` takes one tensor per spec and returns a (nested) structure of tensors, flattened
    in ``tf.nest`` order. It is wrapped so that it returns a dict keyed by ``output_names``:
    tf2onnx then names each output after its key, instead of after a TensorFlow tensor
    (``Identity:0``), and the order is restored here. Inputs are named by their specs. An
    unknown first dimension, which tf2onnx names separately per tensor (``unk__12``), becomes
    one ``batch`` symbol, the one the runtime looks for.

    Raises
    ------
    ConversionError
        tf2onnx fails, or leaves ops it cannot convert (see :func:`check_supported`, which
        ``locate`` is handed to).
    """
    tf2onnx = require("tf2onnx", EXTRA)
    clash = set(input_names) & set(output_names)
    if clash:
        raise ConversionError(f"output_names: {sorted(clash)} are also input names; ONNX names must be unique")
    named = [tf.TensorSpec(spec.shape, spec.dtype, name=name) for name, spec in zip(input_names, specs)]

    def keyed(*tensors):
        return dict(zip(output_names, tf.nest.flatten(call(*tensors))))

    wrapper = tf.function(keyed, input_signature=named, autograph=False)
    try:
        proto, _ = tf2onnx.convert.from_function(wrapper, input_signature=named, opset=opset)
    except Exception as error:
        raise ConversionError(
            f"tf2onnx cannot convert the model at opset {opset}: {type(error).__name__}: {error}; "
            "try another opset"
        ) from error
    check_supported(proto, opset, locate)
    batch = any(spec.shape.rank and spec.shape[0] is None for spec in specs)
    return _arrange(proto, list(input_names), list(output_names), batch=batch)


def _arrange(proto: onnx.ModelProto, input_names, output_names, *, batch: bool) -> onnx.ModelProto:
    """A copy whose graph inputs and outputs are in the given order, with a shared ``batch`` symbol."""
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    graph = edited.graph
    initializers = {tensor.name for tensor in graph.initializer}
    for field, names in ((graph.input, input_names), (graph.output, output_names)):
        values = {value.name: value for value in field if value.name not in initializers}
        if sorted(values) != sorted(names):
            raise ConversionError(
                f"tf2onnx produced tensors {sorted(values)} where {sorted(names)} were expected"
            )
        kept = [value for value in field if value.name in initializers]
        ordered = [onnx.ValueInfoProto() for _ in names]
        for target, name in zip(ordered, names):
            target.CopyFrom(values[name])
        del field[:]
        field.extend(ordered + kept)
    if batch:
        for value in list(graph.input)[:len(input_names)] + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].dim_param = "batch"
    return edited


def _concrete_function(tf, model, signature, sample, dynamic_batch):
    if _is_keras(model):
        raise ConversionError("model: a Keras model; convert it with converters.from_keras")
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        return model
    if isinstance(model, tf.Module) and isinstance(getattr(model, "__call__", None),
                                                   tf.types.experimental.PolymorphicFunction):
        model = model.__call__  # a tf.Module whose __call__ is a tf.function, not saved yet
    if isinstance(model, tf.types.experimental.PolymorphicFunction):
        if model.input_signature is not None:
            return model.get_concrete_function()
        arrays = sample if isinstance(sample, (tuple, list)) else (sample,)
        if isinstance(sample, dict):
            raise ConversionError("sample: a tf.function without an input signature takes positional arrays")
        specs = []
        for index, array in enumerate(arrays):
            array = np.asarray(array)
            shape = ((None,) + array.shape[1:]) if dynamic_batch and array.ndim else array.shape
            specs.append(tf.TensorSpec(shape, tf.as_dtype(array.dtype), name=_default_names("input", len(arrays))[index]))
        return model.get_concrete_function(*specs)
    signatures = getattr(model, "signatures", None)
    if signatures is not None:
        if signature not in signatures:
            raise ConversionError(
                f"signature: the SavedModel has no signature {signature!r}; it has {sorted(signatures)}"
            )
        return signatures[signature]
    raise ConversionError(
        f"model must be a SavedModel folder, a loaded SavedModel, a ConcreteFunction or a tf.function, "
        f"got {type(model).__name__}"
    )


def _is_keras(model) -> bool:
    return any(cls.__module__.startswith(("keras", "tf_keras")) and cls.__name__ in ("Model", "Sequential")
               for cls in type(model).__mro__)


def _inputs(function):
    """Names, specs and a call taking the flat tensors in that order."""
    args, kwargs = function.structured_input_signature
    kwargs = dict(sorted(kwargs.items()))  # a loaded signature's keyword order varies between loads
    specs = list(args) + list(kwargs.values())
    for spec in specs:
        if not hasattr(spec, "shape") or not hasattr(spec, "dtype"):
            raise ConversionError(
                f"model: only flat tensor arguments can be converted, the signature has {type(spec).__name__}"
            )
    defaults = _default_names("input", len(args))
    names = [spec.name or default for spec, default in zip(args, defaults)] + list(kwargs)
    keys, positional = list(kwargs), len(args)

    def call(*tensors):
        return function(*tensors[:positional], **dict(zip(keys, tensors[positional:])))

    return names, specs, call


def _sample_arrays(sample, names, specs) -> list[np.ndarray]:
    if isinstance(sample, dict):
        missing = [name for name in names if name not in sample]
        if missing:
            raise ConversionError(f"sample: no array for inputs {missing}; the inputs are {names}")
        items = [sample[name] for name in names]
    else:
        items = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    if len(items) != len(names):
        raise ConversionError(f"sample: {len(items)} arrays for the {len(names)} inputs {names}")
    arrays = []
    for name, spec, item in zip(names, specs, items):
        array = np.asarray(item)
        expected = [None if dim is None else int(dim) for dim in spec.shape.as_list()] if spec.shape.rank is not None else None
        if expected is not None and (array.ndim != len(expected) or any(
                want is not None and want != got for want, got in zip(expected, array.shape))):
            raise ConversionError(
                f"sample: input {name!r} has shape {array.shape}; the signature expects {tuple(expected)} "
                "(None: any size)"
            )
        try:
            arrays.append(np.ascontiguousarray(array.astype(spec.dtype.as_numpy_dtype, copy=False)))
        except (TypeError, ValueError) as error:
            raise ConversionError(f"sample: input {name!r} of dtype {array.dtype} is not {spec.dtype.name}") from error
    return arrays


def _default_names(stem: str, count: int) -> list[str]:
    return [stem] if count == 1 else [f"{stem}_{index}" for index in range(count)]


def _names(given, defaults, parameter: str) -> list[str]:
    if given is None:
        return list(defaults)
    given = [given] if isinstance(given, str) else [str(name) for name in given]
    if len(given) != len(defaults) or len(set(given)) != len(given):
        raise ConversionError(f"{parameter}: expected {len(defaults)} distinct names, got {given!r}")
    return given
