"""Framework models to ONNX, each conversion proven by a parity check and annotated with metadata.

One module per framework. Importing this package imports no framework: each ``from_*``
function imports its framework (and converter) when called, with an install hint when it is
missing. Every converter returns an ``onnx.ModelProto`` whose ``metadata_props`` hold the
class and feature names, the input preprocessing, the source framework and version, and the
parity figures (see :func:`converters.metadata.read_metadata`), and writes it when given a path.
"""

from .lightgbm import from_lightgbm
from .keras import from_keras
from .metadata import annotate, read_metadata
from .parity import DEFAULT_ATOL, DEFAULT_RTOL, Parity, check_parity
from .pytorch import from_torch
from .sklearn import from_sklearn
from .tensorflow import from_tensorflow
from .xgboost import from_xgboost

__all__ = sorted([
    "DEFAULT_ATOL", "DEFAULT_RTOL", "Parity", "annotate", "check_parity", "from_keras", "from_lightgbm",
    "from_sklearn", "from_tensorflow", "from_torch", "from_xgboost", "read_metadata",
])
