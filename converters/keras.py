"""Keras 3 models (TensorFlow backend) to ONNX with tf2onnx, checked against the Keras model.

Two routes give the same graph and the same parity (about 1e-6 on a small CNN): Keras's own
``model.export(path, format="onnx")``, which on the TensorFlow backend is itself a call to
``tf2onnx.convert.from_function``, and calling tf2onnx here on ``model(x, training=False)``.
This module takes the second, through :func:`converters.tensorflow.convert_function`:

- the outputs get our names; ``export`` leaves tf2onnx's ``Identity:0``, ``Identity_1:0``,
  whose order has to be trusted to rename them;
- inputs and outputs come back in a fixed order, and every input and output shares one
  ``batch`` symbol (``export`` gives each its own ``unk__N``, and the runtime finds the batch
  axis through the symbol the inputs share);
- no temporary file, and no process-wide patch: ``export`` first sets ``numpy.object``
  (removed in NumPy 2) for tf2onnx's sake.

``tf2onnx.convert.from_keras`` is not an option: it needs a Keras 2 (``tf.keras``) model.
Only the TensorFlow backend is supported; with the PyTorch backend a Keras model is a
``torch.nn.Module``, which :func:`converters.from_torch` converts.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from agnostic_explain.errors import ConversionError, ModelNotFoundError, require

from .metadata import finish
from .parity import DEFAULT_ATOL, DEFAULT_RTOL
from .tensorflow import convert_function, quiet_tensorflow

__all__ = ["from_keras", "load_native"]

EXTRA = "agnostic-explain[keras]"
KERAS_FILES = (".keras", ".h5", ".hdf5")


def from_keras(
    model, sample, *, input_names=None, output_names=None, dynamic_batch=True, opset=17,
    class_names=None, feature_names=None, preprocessing=None, path=None,
    atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL,
):
    """Convert a Keras 3 model to ONNX and prove it on ``sample``.

    The model runs with ``training=False`` (dropout off, batch-norm statistics frozen).

    Parameters
    ----------
    model : keras.Model
        Functional, Sequential or subclassed; TensorFlow backend.
    sample : ndarray or sequence of ndarray
        Rows for each model input in order, batch axis first (images channels-last as the
        model takes them). Cast to the inputs' dtypes; the parity sample.
    input_names, output_names : sequence of str, optional
        ONNX names; by default ``input`` (``input_0``, ... for several) and ``output``
        (``output_0``, ...), outputs in the order Keras flattens them.
    dynamic_batch : bool, default True
        Leave the batch axis open (named ``batch``); False fixes it to the sample's.
    opset : int, default 17
    class_names, feature_names : sequence of str, optional
        Stored in the metadata (read back as ``label_names``, ``feature_names``).
    preprocessing : dict, optional
        ``{"layout": ..., "scale": ..., "mean": [...], "std": [...]}``. For a single input
        of rank 4 the layout defaults to Keras's image data format (``"nhwc"`` for
        ``channels_last``); keys given here win.
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
        A layer uses an op tf2onnx cannot convert (the op and layer are named), the
        sample does not fit the model's inputs, or the backend is not TensorFlow.
    ParityError
        ONNX Runtime's outputs differ from Keras's beyond the tolerances.

    Examples
    --------
    >>> import numpy as np, keras                                              # doctest: +SKIP
    >>> net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])    # doctest: +SKIP
    >>> proto = from_keras(net, np.ones((3, 4), np.float32), class_names=["no", "yes"])  # doctest: +SKIP
    >>> [value.name for value in proto.graph.output]                          # doctest: +SKIP
    ['output']
    """
    tf = quiet_tensorflow()
    keras = require("keras", EXTRA)
    if keras.backend.backend() != "tensorflow":
        raise ConversionError(
            f"from_keras converts models on the TensorFlow backend; Keras runs on {keras.backend.backend()!r} "
            "(with the torch backend the model is a torch.nn.Module: use converters.from_torch)"
        )
    if not isinstance(model, keras.Model):
        raise ConversionError(f"model must be a keras.Model, got {type(model).__name__}")
    items = list(sample) if isinstance(sample, (tuple, list)) else [sample]
    arrays = [np.asarray(item) for item in items]
    specs = _input_specs(tf, model, arrays, dynamic_batch)
    arrays = [np.ascontiguousarray(array.astype(spec.dtype.as_numpy_dtype, copy=False))
              for array, spec in zip(arrays, specs)]
    names = _names(input_names, len(arrays), "input", "input_names")

    def call(*tensors):
        return model(tensors[0] if len(tensors) == 1 else list(tensors), training=False)

    try:
        flat = [np.asarray(value) for value in tf.nest.flatten(call(*(tf.constant(array) for array in arrays)))]
    except Exception as error:
        raise ConversionError(
            f"sample: the model failed on inputs of shape {[array.shape for array in arrays]}: "
            f"{type(error).__name__}: {error}"
        ) from error
    output_names = _names(output_names, len(flat), "output", "output_names")
    proto = convert_function(tf, call, names, specs, output_names, opset=opset,
                             locate=lambda node: _layer_of(model, node))
    if len(specs) == 1 and specs[0].shape.rank == 4:
        layout = "nhwc" if keras.config.image_data_format() == "channels_last" else "nchw"
        preprocessing = {"layout": layout, **(preprocessing or {})}
    return finish(
        proto, feeds=dict(zip(names, arrays)), expected=dict(zip(output_names, flat)),
        framework="keras", framework_version=keras.__version__, path=path, atol=atol, rtol=rtol,
        class_names=class_names, feature_names=feature_names, preprocessing=preprocessing,
    )


def load_native(path, *, allow_pickle=False):
    """Load a ``.keras`` file (or a legacy ``.h5``) with ``keras.saving.load_model``.

    Loading runs in Keras's safe mode, which refuses ``Lambda`` layers: their Python code
    is stored as bytecode and would run on load. ``allow_pickle=True`` switches safe mode
    off, with a warning; use it only for trusted files.

    Parameters
    ----------
    path : str or Path
    allow_pickle : bool, default False

    Returns
    -------
    keras.Model

    Raises
    ------
    ModelNotFoundError
        ``path`` does not exist.
    ConversionError
        The file needs safe mode off, or it is not a Keras file (a SavedModel folder goes
        to :func:`converters.tensorflow.load_native`).
    """
    quiet_tensorflow()
    keras = require("keras", EXTRA)
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(f"path: no Keras model at {str(path)!r}")
    if path.is_dir() or path.suffix.lower() not in KERAS_FILES:
        raise ConversionError(
            f"path: {str(path)!r} is not a .keras or .h5 file; a SavedModel folder loads with "
            "converters.tensorflow.load_native"
        )
    if allow_pickle:
        warnings.warn(
            f"loading {str(path)!r} with Keras safe mode off: like unpickling, this can run arbitrary code "
            "(Lambda layers); do this only for trusted files",
            UserWarning, stacklevel=2,
        )
    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=not allow_pickle)
    except Exception as error:
        if not allow_pickle and "safe_mode" in str(error):
            raise ConversionError(
                f"path: {str(path)!r} holds code (a Lambda layer) that Keras's safe mode will not load, since "
                "it can run arbitrary code; pass --allow-pickle (allow_pickle=True) only if the file is trusted"
            ) from error
        raise ConversionError(f"path: cannot load the Keras model {str(path)!r}: {error}") from error


def _input_specs(tf, model, arrays, dynamic_batch):
    """One TensorSpec per input: the model's declared shape and dtype, checked against the sample."""
    try:
        declared = [(tuple(tensor.shape), tensor.dtype) for tensor in model.inputs]
    except (AttributeError, ValueError, TypeError):  # a subclassed model never called on data
        declared = None
    if declared is not None and len(declared) != len(arrays):
        raise ConversionError(f"sample: {len(arrays)} arrays for a model with {len(declared)} inputs")
    specs = []
    for index, array in enumerate(arrays):
        shape, dtype = declared[index] if declared else ((None,) + array.shape[1:], array.dtype)
        if array.ndim != len(shape) or any(want is not None and want != got for want, got in zip(shape, array.shape)):
            raise ConversionError(
                f"sample: input {index} has shape {array.shape}; the model expects {shape} (None: any size)"
            )
        shape = (None if dynamic_batch else array.shape[0],) + tuple(shape[1:])
        specs.append(tf.TensorSpec(shape, tf.as_dtype(dtype)))
    return specs


def _layer_of(model, node_name: str) -> str | None:
    """The Keras layer whose name scope holds a tf2onnx node (``sequential_1/my_layer_1/Lgamma``).

    Tracing may suffix scopes (``my_layer_1``), so a scope matches a layer's name followed by
    ``_N`` suffixes; the longest matching name wins, so ``dense_1`` is not taken for ``dense``.
    """
    import re

    layers, stack = [], list(getattr(model, "layers", ()))
    while stack:  # nested models' layers too
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "layers", ()))
    for scope in reversed(node_name.split("/")[:-1]):  # innermost scope first
        matches = [layer for layer in layers if re.fullmatch(re.escape(layer.name) + r"(_\d+)*", scope)]
        if matches:
            layer = max(matches, key=lambda layer: len(layer.name))
            return f"layer {layer.name!r} ({type(layer).__name__})"
    return None


def _names(names, count: int, stem: str, parameter: str) -> list[str]:
    if names is None:
        return [stem] if count == 1 else [f"{stem}_{index}" for index in range(count)]
    names = [names] if isinstance(names, str) else [str(name) for name in names]
    if len(names) != count or len(set(names)) != count:
        raise ConversionError(f"{parameter}: expected {count} distinct names, got {names!r}")
    return names
