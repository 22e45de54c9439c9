"""Where a graph edit's model comes from: a proto, and the folder its external weights live in.

Graph functions take a path, bytes, a ModelProto or a loaded :class:`OnnxModel`. External
weights are never loaded into the edited proto: they stay references that ONNX Runtime
resolves from the model's folder, so models over protobuf's 2 GB limit can be edited too.
Every reference is checked to stay inside that folder before anything reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelLoadError

__all__ = ["ModelSource", "open_model"]


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
        raise KeyError(name)

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


def open_model(model) -> ModelSource:
    """A :class:`ModelSource` for a path, bytes, ModelProto, ModelSource or loaded OnnxModel.

    The model passes the ONNX checker, and its external data references stay inside its folder.
    """
    if isinstance(model, ModelSource):
        return model
    proto = getattr(model, "proto", None)
    if isinstance(proto, onnx.ModelProto):  # a loaded OnnxModel
        path = getattr(model, "path", None)
        base_dir = getattr(model, "external_data_dir", None) or (path.parent if path is not None else None)
        source = ModelSource(proto, base_dir, path)
    else:
        from ..runtime.session import read_model

        proto, path = read_model(model)
        source = ModelSource(proto, path.parent if path is not None else None, path)
    check_external_locations(source)
    return source


def check_external_locations(source: ModelSource) -> None:
    """Refuse external data references that point outside the model's folder.

    A model file names its weight files; a crafted one could name ``../../etc/passwd`` or an
    absolute path, or a symlink out of the folder. Nothing outside the folder is ever read.
    """
    external = [tensor for tensor in source.proto.graph.initializer if _is_external(tensor)]
    if not external or source.base_dir is None:
        return
    root = Path(os.path.realpath(source.base_dir))
    for tensor in external:
        location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
        target = Path(os.path.realpath(root / location))
        if not location or Path(location).is_absolute() or root not in (target, *target.parents):
            raise ModelLoadError(
                f"model: initializer {tensor.name!r} names external data {location!r}, outside the "
                f"model's folder {str(root)!r}; only files inside that folder are read"
            )


def _is_external(tensor: onnx.TensorProto) -> bool:
    return tensor.data_location == onnx.TensorProto.EXTERNAL
