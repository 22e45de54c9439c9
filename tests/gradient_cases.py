"""Helpers shared by the gradient tests: run an ONNX model on ONNX Runtime CPU, export a torch
module, compare a gradient graph with torch autograd. Not a test module itself."""

from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import torch

from agnostic_explain.graph import gradient

OPSET = 17


def session(proto: onnx.ModelProto, optimize: bool = True) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


def export(module, args, input_names, output_names, dynamic_axes=None, opset=OPSET) -> onnx.ModelProto:
    import torch

    buffer = io.BytesIO()
    module.eval()
    with torch.no_grad():
        torch.onnx.export(module, args, buffer, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def run_gradient(proto, feeds: dict, wrt, output=None, seeds=None, rules=None, rng=None):
    """Build the gradient graph, feed random seeds (or ``seeds``); return (seeds, {wrt: grad})."""
    rng = rng or np.random.default_rng(0)
    edited = gradient(proto, wrt, output=output, rules=rules)
    onnx.checker.check_model(edited)
    sess = session(edited)
    seed_names = [i.name for i in sess.get_inputs() if i.name.endswith("__seed")]
    if seeds is None:
        plain = session(proto).run(None, feeds)
        shapes = dict(zip([o.name for o in session(proto).get_outputs()], plain))
        seeds = {name: rng.standard_normal(shapes[name[: -len("__seed")]].shape).astype(np.float32)
                 for name in seed_names}
    outputs = sess.run(None, {**feeds, **seeds})
    names = [o.name for o in sess.get_outputs()]
    wrt_list = [wrt] if isinstance(wrt, str) else list(wrt)
    return seeds, {name: outputs[names.index(name + "__grad")] for name in wrt_list}


def assert_close(actual, expected, rtol=1e-4):
    """Equal within ``rtol`` relative to the largest expected gradient."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(np.abs(expected).max(), 1e-12)
    error = np.abs(actual - expected).max() / scale
    assert error <= rtol, f"max error {error:.3g} of the largest gradient {scale:.3g}"


def torch_vjp(module, inputs, seed):
    """Gradient of <seed, module(*inputs)> with respect to each input (torch autograd, float64 off)."""
    import torch

    tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
    output = module(*tensors)
    output.backward(torch.tensor(seed))
    return [t.grad.numpy() for t in tensors]


class Function(torch.nn.Module):
    """A torch module around a plain function, for export."""

    def __init__(self, function):
        super().__init__()
        self.function = function

    def forward(self, *inputs):
        return self.function(*inputs)


def check_two_batches(module, shape, rng, batches=(2, 5)):
    """Export ``module`` on rows of ``shape`` with a dynamic batch, then compare its input gradient
    with torch autograd at each of ``batches`` rows."""
    sample = rng.standard_normal((2, *shape)).astype(np.float32)
    proto = export(module, (torch.tensor(sample),), ["x"], ["out"], {"x": {0: "batch"}, "out": {0: "batch"}})
    for batch in batches:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        seeds, grads = run_gradient(proto, {"x": x}, "x")
        assert_close(grads["x"], torch_vjp(module, [x], seeds["out__seed"])[0])

