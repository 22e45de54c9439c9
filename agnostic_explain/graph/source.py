"""Where a graph edit's model comes from: a proto, and the folder its external weights live in.

Graph functions take a path, bytes, a ModelProto or a loaded :class:`OnnxModel`. External
weights are never loaded into the edited proto: they stay references that ONNX Runtime
resolves from the model's folder, so models over protobuf's 2 GB limit can be edited too.
Every reference is checked to stay inside that folder before anything reads it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import onnx
from google.protobuf.message import Message
from onnx import numpy_helper

from ..errors import ModelLoadError, ModelNotFoundError, ParameterError

__all__ = ["HasGraph", "ModelSource", "open_model", "read_model"]


class ModelSource:
    """A parsed model and the folder its external data is read from (None for in-memory models).

    Attributes
    ----------
    proto : onnx.ModelProto
        Never modified; edits copy it.
    base_dir : pathlib.Path or None
    path : pathlib.Path or None
        The file it was read from, if any.
    """

    def __init__(self, proto: onnx.ModelProto, base_dir: Path | None = None, path: Path | None = None):
        self.proto = proto
        self.base_dir = base_dir
        self.path = path

    @property
    def has_external_data(self) -> bool:
        return any(_is_external(tensor) for tensor in self.proto.graph.initializer)

    def initializer(self, name: str) -> np.ndarray:
        """The value of initializer ``name``, reading external data only from inside ``base_dir``."""
        for tensor in self.proto.graph.initializer:
            if tensor.name == name:
                return self.array(tensor)
        names = [tensor.name for tensor in self.proto.graph.initializer]
        raise ParameterError(
            f"name: the model has no initializer {name!r}; it has {names[:8]}{' ...' if len(names) > 8 else ''}"
        )

    def array(self, tensor: onnx.TensorProto) -> np.ndarray:
        if not _is_external(tensor):
            return numpy_helper.to_array(tensor)
        if self.base_dir is None:
            raise ModelLoadError(
                f"model: initializer {tensor.name!r} is stored in an external file, but the model was "
                "given in memory; load it from its .onnx path so the weights can be found"
            )
        loaded = onnx.TensorProto()
        loaded.CopyFrom(tensor)
        onnx.external_data_helper.load_external_data_for_tensor(loaded, str(self.base_dir))
        return numpy_helper.to_array(loaded)


@runtime_checkable
class HasGraph(Protocol):
    """What graph functions need of a loaded model (the runtime's models implement it)."""

    @property
    def graph_source(self) -> "ModelSource | None":
        """The model's graph and the folder of its external weights; None when it has no graph."""


def open_model(model) -> ModelSource:
    """A :class:`ModelSource` for a path, bytes, ModelProto, ModelSource or loaded model.

    The model passes the ONNX checker, and its external data references stay inside its folder.
    """
    if isinstance(model, ModelSource):
        return model
    if isinstance(model, HasGraph):
        source = model.graph_source
        if source is None:
            raise ModelLoadError(f"model: {type(model).__name__} is not an ONNX graph; graph functions need one")
    else:
        proto, path = read_model(model)
        source = ModelSource(proto, path.parent if path is not None else None, path)
    check_external_locations(source)
    return source


def check_external_locations(source: ModelSource) -> None:
    """Refuse external data references that cannot be read safely.

    A model file names its weight files; a crafted one could name ``../../etc/passwd`` or an
    absolute path, or a symlink out of the folder. Nothing outside the folder is ever read. An
    in-memory model with external data and no folder is refused rather than resolved against
    the process's working directory. A reference whose offset or length falls past the end of
    its file is refused before ONNX Runtime reads it.
    """
    external = [tensor for tensor in source.proto.graph.initializer if _is_external(tensor)]
    if not external:
        return
    if source.base_dir is None:
        raise ModelLoadError(
            f"model: initializer {external[0].name!r} is stored in an external file, but the model was given "
            "in memory without its folder; pass external_data_dir=FOLDER (the folder holding the weight "
            "files), or load the model from its .onnx path"
        )
    root = Path(os.path.realpath(source.base_dir))
    for tensor in external:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        if "\x00" in location:
            raise ModelLoadError(
                f"model: initializer {tensor.name!r} names external data {location!r}, which holds a NUL byte; "
                "expected a file name inside the model's folder"
            )
        target = Path(os.path.realpath(root / location))
        if not location or Path(location).is_absolute() or root not in (target, *target.parents):
            raise ModelLoadError(
                f"model: initializer {tensor.name!r} names external data {location!r}, outside the "
                f"model's folder {str(root)!r}; only files inside that folder are read"
            )
        _check_extent(tensor, entries, target)


def _check_extent(tensor: onnx.TensorProto, entries: dict, target: Path) -> None:
    """The offset and length of an external reference: non-negative integers inside the file."""
    if not target.is_file():
        raise ModelLoadError(
            f"model: initializer {tensor.name!r} names external data {entries.get('location')!r}, "
            f"but there is no such file in the model's folder {str(target.parent)!r}"
        )
    size = target.stat().st_size
    extent = {}
    for key in ("offset", "length"):
        text = entries.get(key)
        if text is None:
            continue
        if not text.isascii() or not text.isdigit():
            raise ModelLoadError(
                f"model: initializer {tensor.name!r} has external data {key} {text!r}; expected a "
                "non-negative integer"
            )
        extent[key] = int(text)
    offset = extent.get("offset", 0)
    end = offset + extent.get("length", max(size - offset, 0))
    if offset > size or end > size:
        raise ModelLoadError(
            f"model: initializer {tensor.name!r} reads bytes {offset} to {end} of "
            f"{entries.get('location')!r}, past the end of the file ({size} bytes)"
        )


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def read_model(model, external_data_dir=None) -> tuple[onnx.ModelProto, Path | None]:
    """Parse and check ``model`` (path, bytes or ModelProto) without loading external weights.

    Returns the proto and, for files, the path (ONNX Runtime resolves external data from it).
    Refuses external data references that leave the model's folder (or ``external_data_dir``).
    """
    if isinstance(model, onnx.ModelProto):
        proto, path = model, None
    elif isinstance(model, (bytes, bytearray)):
        try:
            proto = onnx.load_from_string(bytes(model))
        except Exception as error:
            raise ModelLoadError(f"model: the bytes given are not a serialized ONNX model ({error})") from error
        path = None
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ModelNotFoundError(f"model: no such file {str(path)!r}")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as error:
            raise ModelLoadError(f"model: {str(path)!r} is not an ONNX model ({type(error).__name__}: {error})") from error
    else:
        raise ModelLoadError(
            f"model must be a path, bytes, an onnx.ModelProto or a callable, got {type(model).__name__}"
        )
    if not proto.graph.node and not proto.graph.output:
        raise ModelLoadError("model: the ONNX graph is empty (no nodes and no outputs)")
    if not proto.graph.output:
        raise ModelLoadError("model: the ONNX graph declares no outputs; a model needs at least one to explain")
    check_text(proto)
    folder = path.parent if path is not None else external_data_dir
    check_external_locations(ModelSource(proto, Path(folder) if folder is not None else None, path))
    try:
        # The path form checks external data in place and works past protobuf's 2 GB limit.
        onnx.checker.check_model(str(path) if path is not None else _without_external_data(proto))
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model fails the ONNX checker: {first}") from error
    return proto, path


def check_text(proto: onnx.ModelProto) -> None:
    """Refuse names and metadata that are not valid UTF-8.

    ONNX strings are UTF-8. protobuf parses a model whose strings are not, and hands such
    fields back as ``bytes``, which every later step (paths, messages, metadata) would trip on.
    """
    stack = [(proto, "model")]
    while stack:
        message, where = stack.pop()
        for field, value in message.ListFields():
            if field.type == field.TYPE_STRING:
                values = (value,) if isinstance(value, (str, bytes)) else value
                bad = next((item for item in values if not isinstance(item, str)), None)
                if bad is not None:
                    raise ModelLoadError(
                        f"model: {where}.{field.name} is not valid UTF-8 text ({bytes(bad)[:40]!r}); ONNX "
                        "names and metadata must be UTF-8"
                    )
            elif field.type == field.TYPE_MESSAGE:
                items = (value,) if isinstance(value, Message) else value
                stack.extend((item, f"{where}.{field.name}") for item in items)


def _without_external_data(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy for the checker whose external weights are empty tensors.

    The checker resolves external files from the working directory when it has no path; the
    references were already checked to stay inside the model's folder, and ONNX Runtime
    reads them from there.
    """
    if not uses_external_data(proto):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for tensor in copy.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor.CopyFrom(onnx.helper.make_tensor(tensor.name, tensor.data_type, [0], []))
    return copy


def uses_external_data(proto: onnx.ModelProto) -> bool:
    return any(
        tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in proto.graph.initializer
    )
