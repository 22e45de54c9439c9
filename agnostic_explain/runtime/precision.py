"""Half precision: an fp16 copy of a model whose inputs and outputs stay float32.

GPUs run fp16 convolutions and matrix products several times faster than fp32. Attributions
move with the model's outputs, so the benchmarks report the error against an fp32 run
(``python -m benchmarks run --precision fp16``).
"""

from __future__ import annotations

import onnx

from ..errors import ParameterError, require

__all__ = ["PRECISIONS", "to_float16"]

PRECISIONS = ("fp32", "fp16")


def to_float16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``proto`` computing in float16, with float32 inputs and outputs.

    Uses onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)``, which adds
    a Cast at each graph input and output, and leaves ``proto`` unchanged.

    Raises
    ------
    MissingDependencyError
        onnxconverter-common is not installed (``pip install agnostic-explain[fp16]``).
    ParameterError
        The model's weights are external: the conversion needs them in memory.
    """
    if any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in proto.graph.initializer):
        raise ParameterError(
            "precision='fp16' needs the weights inside the model; this model stores them in external files"
        )
    float16 = require("onnxconverter_common.float16", "agnostic-explain[fp16]")
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return float16.convert_float_to_float16(copy, keep_io_types=True)
