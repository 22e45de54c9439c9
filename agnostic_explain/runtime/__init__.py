"""The one runtime layer: loading, execution providers, batching and targets."""

from .callable import CallableModel
from .model import Model
from .session import OnnxModel, load
from .specs import TensorSpec

__all__ = ["CallableModel", "Model", "OnnxModel", "TensorSpec", "load"]
