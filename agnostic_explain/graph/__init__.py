"""Graph edits: pure functions from ``onnx.ModelProto`` to ``onnx.ModelProto``."""

from .batch import make_batch_dynamic, static_batch_size

__all__ = ["make_batch_dynamic", "static_batch_size"]
