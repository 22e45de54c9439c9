"""``graph.with_explanation``: one ONNX model that outputs the prediction and its attribution map,
equal to the explainer's, on a plain ``onnxruntime.InferenceSession``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from conftest import export_torch
from gradient_cases import assert_close
from test_gradient_explainers import small_cnn

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.graph import with_explanation

torch = pytest.importorskip("torch")

LAYER = "/5/Relu_output_0"


@pytest.fixture(scope="module")
def cnn():
    net = small_cnn()
    proto = export_torch(net, torch.zeros(1, 3, 16, 16))
    images = np.random.default_rng(7).normal(size=(4, 3, 16, 16)).astype(np.float32)
    return proto, images


def run(proto, images):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [value.name for value in session.get_inputs()] == ["input"]  # no seed input
    return session.run(None, {"input": images})


@pytest.mark.parametrize("target", ["predicted", 2])
@pytest.mark.parametrize("method", ["saliency", "input_x_gradient", "integrated_gradients", "grad_cam"])
def test_the_map_equals_the_explainer(cnn, method, target):
    proto, images = cnn
    model = ae.load(proto, providers="cpu")
    options = {"layer": LAYER} if method == "grad_cam" else {"steps": 16} if method == "integrated_gradients" else {}
    logits, attribution = run(with_explanation(proto, method, target=target, **options), images)
    explainer = {
        "saliency": lambda: ae.Saliency(model),
        "input_x_gradient": lambda: ae.InputXGradient(model),
        "integrated_gradients": lambda: ae.IntegratedGradients(model, steps=16),
        "grad_cam": lambda: ae.GradCam(model, layer=LAYER),
    }[method]()
    explanation = explainer.explain(images, target=target)
    np.testing.assert_allclose(logits, model.predict(images), rtol=1e-5, atol=1e-5)
    expected = explanation.extras["layer_map"] if method == "grad_cam" else explanation.values
    assert_close(attribution, expected)


def test_integrated_gradients_baseline_and_batch_of_one(cnn):
    proto, images = cnn
    _, attribution = run(with_explanation(proto, "integrated_gradients", target=1, steps=8, baseline=0.3), images[:1])
    expected = ae.IntegratedGradients(ae.load(proto, providers="cpu"), baseline=0.3, steps=8).explain(
        images[:1], target=1)
    assert_close(attribution, expected.values)


def test_refusals(cnn):
    proto, _ = cnn
    with pytest.raises(ParameterError, match="method"):
        with_explanation(proto, "occlusion")
    with pytest.raises(ParameterError, match="target"):
        with_explanation(proto, target=-1)
    with pytest.raises(ParameterError, match="layer"):
        with_explanation(proto, "grad_cam")
    with pytest.raises(ParameterError, match="steps"):
        with_explanation(proto, "integrated_gradients", steps=0)
    with pytest.raises(ParameterError, match="rank"):
        with_explanation(_scalar_output(), "saliency")


def _scalar_output():
    """y = sum(x) per row, shape (N,): not a (batch, classes) output."""
    from conftest import float_input, make_model
    from onnx import helper

    return make_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                      [float_input("x", ["N", 3])], [float_input("y", ["N"])], [("axes", np.array([1], np.int64))])
