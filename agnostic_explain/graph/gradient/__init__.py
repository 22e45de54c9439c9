"""Vector-Jacobian products as ONNX graphs: :func:`gradient` and its per-operator rule table.

``gradient(model, wrt, output=None, rules=None)`` returns a model with one seed input
``<output>__seed`` per differentiated output and one output ``<wrt>__grad`` per wrt tensor.

Writing a rule
--------------
A rule is a function ``rule(ctx, node, grads) -> list``:

- ``ctx`` is a :class:`RuleContext`: ``ctx.op(op_type, inputs, **attributes)`` emits a node and
  returns its output name; ``ctx.constant(value, like=tensor)``, ``ctx.shape``, ``ctx.mask``,
  ``ctx.unbroadcast``, ``ctx.rank``, ``ctx.static_shape``, ``ctx.initializer`` and
  ``ctx.attribute`` give what rules need; ``ctx.needs[i]`` says whether input ``i`` wants a
  gradient; ``ctx.refuse(why)`` raises the ParameterError naming the node.
- ``node`` is the forward ``onnx.NodeProto``; its input and output names can be read by the
  backward nodes (forward activations are available).
- ``grads[j]`` is the gradient tensor name of ``node.output[j]``, or None where none flows.

It returns one gradient name (or None) per node input. Extra context (DeepLIFT's reference
activations, say) comes in as new graph inputs: ``ctx.add_input(name, like=tensor)`` declares
one, the caller feeds it. Example, Guided Backprop::

    gradient(model, "input", rules={"Relu": guided_relu})

Why a rule table of our own rather than onnx-ad
-----------------------------------------------
``onnx-ad`` 0.3.0 (PyPI, pure Python, installs) does source-to-source reverse mode over ONNX
with a wide rule set, but it differentiates graph inputs only, needs static shapes, builds
the backward of the whole graph (no pruning to the wrt-output paths, which was its main
cost here), and lays seeds out with an extra seed axis. Explainers need intermediate tensors
as wrt, dynamic batch and sequence lengths, pruning, and per-call rule overrides (Guided
Backprop, DeepLIFT), so the rules are owned here; each is small and tested on its own.
"""

from .context import RuleContext
from .elementwise import guided_relu
from .engine import GRAD_SUFFIX, SEED_SUFFIX, gradient
from .registry import RULES, ZERO_GRADIENT

__all__ = ["GRAD_SUFFIX", "RULES", "SEED_SUFFIX", "ZERO_GRADIENT", "RuleContext", "gradient", "guided_relu"]
