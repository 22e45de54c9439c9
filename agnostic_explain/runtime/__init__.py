"""The one runtime layer: loading, execution providers, batching and targets."""

from ..graph.inspect import use_type_filler
from .callable import CallableModel
from .model import Model
from .loading import load
from .session import OnnxModel
from .probes import fill_types
from .specs import TensorSpec

use_type_filler(fill_types)  # graph functions that need a tensor's type by a run get it from here

__all__ = ["CallableModel", "Model", "OnnxModel", "TensorSpec", "load"]
