"""Which 4-D tensors of a graph are image feature maps, and in which layout, read from the graph.

ONNX's convolution, pooling and normalisation operators work on channels-first tensors, so
their inputs and outputs are ``nchw``. A ``Transpose`` with ``perm=[0, 2, 3, 1]`` turns one
into ``nhwc`` (TensorFlow exports, ConvNeXt blocks), and a ``LayerNormalization`` over the
last axis of a 4-D tensor reads it channels-last. Elementwise operators, padding, slicing,
concatenation and resizing keep the layout of their 4-D input. Any other 4-D tensor (attention
scores ``(batch, heads, tokens, tokens)``, a reshape) has no layout: it is not a feature map.
"""

from __future__ import annotations

import onnx

__all__ = ["tensor_layouts"]

_CHANNELS_FIRST_OPS = {
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
    "GlobalMaxPool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN", "DepthToSpace",
    "SpaceToDepth", "MaxRoiPool", "RoiAlign", "GroupNormalization",
}
#: ops whose 4-D output has the layout of their 4-D inputs
_KEEPS_LAYOUT = {
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus",
    "Softsign", "Mish", "Gelu", "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Clip", "Add", "Sub", "Mul",
    "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Identity", "Dropout", "Cast", "Pad", "Slice", "Split",
    "Concat", "Resize", "Upsample", "QuantizeLinear", "DequantizeLinear", "Floor", "Ceil", "Round", "Sign",
}
_PERMUTATIONS = {(0, 2, 3, 1): ("nchw", "nhwc"), (0, 3, 1, 2): ("nhwc", "nchw")}


def tensor_layouts(proto: onnx.ModelProto, ranks: dict[str, int]) -> dict[str, str]:
    """``"nchw"`` or ``"nhwc"`` for each 4-D tensor of the main graph whose layout the graph shows.

    ``ranks`` gives the rank of each tensor that has a known one (from :func:`..inspect.tensors`).
    """
    graph = proto.graph
    layouts: dict[str, str] = {}

    def four_d(name: str) -> bool:
        return ranks.get(name) == 4

    def settle(name: str, layout: str) -> None:
        if name and four_d(name) and name not in layouts:
            layouts[name] = layout

    for _ in range(2):  # a second pass carries what consumers revealed forward again
        for node in graph.node:
            inputs = [name for name in node.input if name]
            if node.op_type in _CHANNELS_FIRST_OPS:
                for name in inputs[:1] + list(node.output):
                    settle(name, "nchw")
            elif node.op_type == "Transpose":
                perm = next((tuple(attr.ints) for attr in node.attribute if attr.name == "perm"), None)
                if perm in _PERMUTATIONS and inputs:
                    before, after = _PERMUTATIONS[perm]
                    if layouts.get(inputs[0], before) == before:
                        settle(inputs[0], before)
                        settle(node.output[0], after)
            elif node.op_type == "LayerNormalization" and inputs and four_d(inputs[0]):
                axis = next((attr.i for attr in node.attribute if attr.name == "axis"), -1)
                if axis in (-1, 3):
                    settle(inputs[0], "nhwc")
                    settle(node.output[0], "nhwc")
            elif node.op_type in _KEEPS_LAYOUT:
                known = {layouts[name] for name in inputs if name in layouts}
                if len(known) == 1:
                    (layout,) = known
                    for name in list(node.output) + [name for name in inputs if four_d(name)]:
                        settle(name, layout)
    return layouts
