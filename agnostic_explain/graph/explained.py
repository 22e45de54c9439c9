"""Graph edits for gradient explanations: a transformed output to differentiate, and one model
that outputs the prediction and its attribution map together (:func:`with_explanation`).

Gradient explainers differentiate ``softmax(y)`` or ``sigmoid(y)`` by adding that node to the
graph before :func:`~agnostic_explain.graph.gradient.gradient` runs: the seed then stays a
one-hot vector, and the softmax Jacobian is applied in the graph at every evaluated row (an
integrated-gradients step differs from the explained row, so a seed computed once in numpy
from the explained row's probabilities would be wrong there).
"""

from __future__ import annotations

import onnx
from onnx import helper

from ..errors import ParameterError
from .source import open_model

__all__ = ["transformed_output"]


def transformed_output(model, output: str, transform: str | None) -> tuple[onnx.ModelProto, str]:
    """``(proto, name)``: a copy of ``model`` whose tensor ``name`` is ``transform(output)``.

    ``transform`` is None (the output itself, the model unchanged), ``"softmax"`` (over axis 1,
    as :func:`agnostic_explain.runtime.targets.transform` computes it) or ``"sigmoid"``.
    """
    proto = open_model(model).proto
    if transform is None:
        return proto, output
    if transform not in ("softmax", "sigmoid"):
        raise ParameterError(f"output_transform must be None, 'softmax' or 'sigmoid', got {transform!r}")
    edited = onnx.ModelProto()
    edited.CopyFrom(proto)
    name = f"{output}__{transform}"
    node = (helper.make_node("Softmax", [output], [name], axis=1, name=name) if transform == "softmax"
            else helper.make_node("Sigmoid", [output], [name], name=name))
    edited.graph.node.append(node)
    return edited, name
