"""Graph edits and views: pure functions of a model (path, bytes or ``onnx.ModelProto``).

Edits return a new ``onnx.ModelProto`` and never change their argument.
"""

from .batch import make_batch_dynamic, static_batch_size
from .explained import with_explanation
from .expose import expose
from .fuse import fuse_perturbation
from .gradient import gradient
from .inspect import Layer, LayerTable, TensorInfo, layers, tensors
from .randomize import randomize, weight_layers
from .source import ModelSource, open_model
from .split import split
from .weights import WeightTable, weights

__all__ = sorted([
    "Layer", "LayerTable", "ModelSource", "TensorInfo", "expose", "fuse_perturbation", "gradient", "layers", "make_batch_dynamic",
    "open_model", "randomize", "split", "static_batch_size", "tensors", "WeightTable", "weight_layers", "weights",
    "with_explanation",
])
