"""What a backward rule sees and uses: :class:`RuleContext`, the node emitter of one gradient graph.

A rule never writes protobuf by hand. It asks the context for nodes (``op``), constants
(``constant``), shapes (``shape``), static facts from shape inference (``rank``,
``static_shape``, ``dtype``, ``initializer``), and for the broadcast reduction every
elementwise rule needs (``unbroadcast``). Everything the context emits uses only ai.onnx
operators valid in the model's opset (13 or later).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...errors import ParameterError

__all__ = ["RuleContext"]


class RuleContext:
    """The emitter and the facts a backward rule works with, for one call of :func:`gradient`.

    Attributes
    ----------
    node : onnx.NodeProto
        The forward node whose rule is running (set by the engine before each call).
    needs : tuple of bool
        ``needs[i]`` tells whether input ``i`` of ``node`` needs a gradient; a rule returns
        None for the others and should not spend nodes on them.
    opset : int
        The model's ai.onnx opset.
    """

    def __init__(self, proto: onnx.ModelProto, types: dict, initializers: dict, opset: int, taken: set):
        self.proto = proto
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.extra_inputs: list[onnx.ValueInfoProto] = []
        self.forward_edits: dict[int, onnx.NodeProto] = {}
        self._types = types
        self._values = initializers
        self._taken = taken
        self._counter = 0
        self._constants: dict = {}
        self._shapes: dict = {}
        self.node = None
        self.node_index = -1
        self.needs: tuple = ()

    # -- names ----------------------------------------------------------------------------
    def fresh(self, hint: str = "t") -> str:
        """A tensor name not used anywhere in the model."""
        while True:
            self._counter += 1
            name = f"grad/{hint}_{self._counter}"
            if name not in self._taken:
                self._taken.add(name)
                return name

    # -- emitting -------------------------------------------------------------------------
    def op(self, op_type: str, inputs, n_outputs: int = 1, **attributes):
        """Emit one ai.onnx node; return its output name (or a list of names if ``n_outputs > 1``)."""
        outputs = [self.fresh(op_type) for _ in range(n_outputs)]
        attributes = {key: value for key, value in attributes.items() if value is not None}
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=outputs[0], **attributes))
        return outputs[0] if n_outputs == 1 else outputs

    def constant(self, value, like: str | None = None, dtype=None) -> str:
        """An initializer holding ``value``, in the element type of tensor ``like`` (or ``dtype``)."""
        if like is not None:
            dtype = self.dtype(like)
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            name = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def int64(self, values) -> str:
        return self.constant(np.asarray(values, dtype=np.int64))

    def add_input(self, name: str, like: str) -> str:
        """Declare a new graph input ``name`` with the type of tensor ``like`` (extra rule context).

        DeepLIFT-style rules use it for the reference activations they need; the caller feeds
        them. Returns ``name``.
        """
        if name in self._taken:
            raise ParameterError(f"rules: the extra input {name!r} would clash with a tensor of the model")
        self._taken.add(name)
        value = onnx.ValueInfoProto()
        value.CopyFrom(self.value_info(like))
        value.name = name
        self.extra_inputs.append(value)
        return name

    # -- facts ----------------------------------------------------------------------------
    def value_info(self, name: str) -> onnx.ValueInfoProto:
        if name not in self._types:
            raise ParameterError(
                f"gradient: the type of tensor {name!r} (node {self.node_label()}) is unknown to shape "
                "inference; declare it in the model's value_info"
            )
        return self._types[name]

    def dtype(self, name: str) -> np.dtype:
        elem = self.value_info(name).type.tensor_type.elem_type
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem))

    def elem_type(self, name: str) -> int:
        return self.value_info(name).type.tensor_type.elem_type

    def static_shape(self, name: str):
        """A tuple of ints (static dims) or None (symbolic/unknown dims) per axis; None if the rank is unknown."""
        info = self._types.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in info.type.tensor_type.shape.dim)

    def symbolic_shape(self, name: str):
        """Like :meth:`static_shape`, with symbolic dims as their names (so equal names compare equal)."""
        info = self._types.get(name)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return tuple(
            dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
            for dim in info.type.tensor_type.shape.dim
        )

    def rank(self, name: str) -> int:
        shape = self.static_shape(name)
        if shape is None:
            raise ParameterError(
                f"gradient: the rank of tensor {name!r} (input of node {self.node_label()}) is unknown; the "
                "rule needs it (run onnx.shape_inference or declare the tensor's shape)"
            )
        return len(shape)

    def fully_static(self, name: str):
        shape = self.static_shape(name)
        return shape if shape is not None and all(dim is not None for dim in shape) else None

    def initializer(self, name: str):
        """The value of ``name`` if it is an initializer or a Constant node's output, else None."""
        return self._values.get(name)

    def attribute(self, key: str, default=None):
        for attribute in self.node.attribute:
            if attribute.name == key:
                return helper.get_attribute_value(attribute)
        return default

    def node_label(self) -> str:
        if self.node is None:
            return "?"
        return f"{self.node.op_type} {self.node.name or '#' + str(self.node_index)!r}"

    def refuse(self, why: str):
        """Raise the ParameterError that says this node's gradient cannot be built, and why."""
        raise ParameterError(f"gradient: node {self.node_label()}: {why}")

    # -- shape helpers --------------------------------------------------------------------
    def shape(self, name: str) -> str:
        """``Shape(name)``, emitted once per tensor (a constant when the shape is static)."""
        if name not in self._shapes:
            static = self.fully_static(name)
            self._shapes[name] = self.int64(static) if static is not None else self.op("Shape", [name])
        return self._shapes[name]

    def dim(self, name: str, axis: int) -> str:
        """Dimension ``axis`` of tensor ``name`` as a 1-element int64 tensor."""
        static = self.static_shape(name)
        if static is not None and static[axis] is not None:
            return self.int64([static[axis]])
        return self.op("Gather", [self.shape(name), self.int64([axis])], axis=0)

    def reshape_like(self, grad: str, like: str) -> str:
        if self.symbolic_shape(grad) is not None and self.symbolic_shape(grad) == self.symbolic_shape(like) \
                and None not in self.symbolic_shape(like):
            return grad
        return self.op("Reshape", [grad, self.shape(like)])

    def zeros_like(self, name: str) -> str:
        dtype = self.dtype(name)
        value = numpy_helper.from_array(np.zeros(1, dtype=dtype), "")
        return self.op("ConstantOfShape", [self.shape(name)], value=value)

    def reduce(self, op_type: str, data: str, axes, keepdims: int = 1) -> str:
        """``ReduceSum``/``ReduceMean``/``ReduceMax`` over static ``axes`` in this opset's form."""
        axes = [int(axis) for axis in axes]
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, [data, self.int64(axes)], keepdims=keepdims)
        return self.op(op_type, [data], axes=axes, keepdims=keepdims)

    def unsqueeze(self, data: str, axes) -> str:
        return self.op("Unsqueeze", [data, self.int64(list(axes))])

    def squeeze(self, data: str, axes) -> str:
        return self.op("Squeeze", [data, self.int64(list(axes))])

    def mul(self, a: str, b: str) -> str:
        return self.op("Mul", [a, b])

    def mask(self, condition: str, like: str) -> str:
        """A boolean tensor as 0/1 in the dtype of ``like``.

        Lesson: ``Mul`` by a cast mask is much faster on ONNX Runtime CPU than ``Where`` over a
        broadcast boolean, so every rule that gates a gradient uses this.
        """
        return self.op("Cast", [condition], to=self.elem_type(like))

    def unbroadcast(self, grad: str, target: str, result) -> str:
        """Sum ``grad`` (shaped like the broadcast ``result``) back to the shape of input ``target``.

        ``result`` is the forward tensor ``grad`` is shaped like, or that shape as a tuple.

        Axes are chosen statically where shape inference proves them (a static 1 in the input
        against anything else in the result, and the leading axes the input lacks); where an
        input dim is symbolic and differs from the result's, the axes are computed at run time
        from the two shapes, so dynamic batch and sequence lengths stay correct.
        """
        out_shape = result if isinstance(result, tuple) else self.symbolic_shape(result)
        in_shape = self.symbolic_shape(target)
        if in_shape is None or out_shape is None:
            return self._unbroadcast_dynamic(grad, target, result)
        if in_shape == out_shape and None not in in_shape:
            return grad
        lead = len(out_shape) - len(in_shape)
        axes = list(range(lead))
        for axis, dim in enumerate(in_shape):
            other = out_shape[lead + axis]
            if dim == other and dim is not None:
                continue
            if dim == 1:
                axes.append(lead + axis)
            elif isinstance(dim, int) and isinstance(other, int):
                continue  # equal static dims were handled; unequal non-1 dims cannot occur
            else:
                return self._unbroadcast_dynamic(grad, target, result)
        if not axes:
            return grad
        summed = self.op("ReduceSum", [grad, self.int64(axes)], keepdims=1)
        return self.op("Reshape", [summed, self.shape(target)]) if lead or in_shape != out_shape else summed

    def _unbroadcast_dynamic(self, grad: str, target: str, result: str) -> str:
        out_rank = len(result) if isinstance(result, tuple) else self.rank(result)
        in_rank = self.rank(target)
        target_shape = self.shape(target)
        padded = target_shape if out_rank == in_rank else self.op(
            "Concat", [self.int64([1] * (out_rank - in_rank)), target_shape], axis=0)
        is_one = self.op("Equal", [padded, self.int64(1)])
        axes = self.op("Compress", [self.int64(np.arange(out_rank)), is_one], axis=0)
        summed = self.op("ReduceSum", [grad, axes], keepdims=1, noop_with_empty_axes=1)
        return self.op("Reshape", [summed, target_shape])
