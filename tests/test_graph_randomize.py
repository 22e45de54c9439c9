"""graph.randomize and weight_layers: the model-randomization sanity check of Adebayo et al. (2018)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper, numpy_helper

import agnostic_explain as ae
from agnostic_explain.errors import ParameterError
from agnostic_explain.graph import expose, randomize, weight_layers
from conftest import float_input, make_model, weights

#: weight initializers by the node that owns them, input to output
OWNED = {"conv": ["W1", "B1"], "bn": ["scale", "shift"], "fc": ["Wfc"], "bias": ["bfc"]}
KEPT = ["mean", "var", "shape", "temperature"]  # statistics, an int64 shape, a scalar


def build_net():
    """y = (relu(bn(conv(x))) reshaped to (batch, 64)) @ Wfc + bfc, divided by a scalar temperature."""
    arrays = {
        "W1": weights(1, 4, 2, 3, 3), "B1": weights(2, 4), "scale": weights(3, 4), "shift": weights(4, 4),
        "mean": weights(5, 4), "var": (np.abs(weights(6, 4)) + 0.5).astype(np.float32),
        "Wfc": (0.3 + 0.05 * weights(7, 64, 300)).astype(np.float32), "bfc": weights(8, 300),
        "shape": np.array([0, -1], dtype=np.int64), "temperature": np.array([2.0], dtype=np.float32),
    }
    proto = make_model(
        [
            helper.make_node("Conv", ["x", "W1", "B1"], ["c"], name="conv"),
            helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn"),
            helper.make_node("Relu", ["n"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "shape"], ["f"], name="flatten"),
            helper.make_node("MatMul", ["f", "Wfc"], ["h"], name="fc"),
            helper.make_node("Add", ["h", "bfc"], ["logits"], name="bias"),
            helper.make_node("Div", ["logits", "temperature"], ["y"], name="soften"),
        ],
        [float_input("x", ["batch", 2, 6, 6])],
        [float_input("y", ["batch", 300])],
        list(arrays.items()),
    )
    return proto, arrays


@pytest.fixture(scope="module")
def net():
    return build_net()


def initializers(proto) -> dict:
    return {tensor.name: tensor for tensor in proto.graph.initializer}


def changed(original, edited) -> set[str]:
    """Names of the initializers whose serialized tensors differ."""
    before, after = initializers(original), initializers(edited)
    assert set(before) == set(after)
    return {name for name in before if before[name].SerializeToString() != after[name].SerializeToString()}


def test_weight_layers_go_from_the_output_to_the_input(net):
    assert weight_layers(net[0]) == ["bias", "fc", "bn", "conv"]


@pytest.mark.parametrize("layer, cascade, expected", [
    ("fc", True, ["fc", "bias"]),
    ("fc", False, ["fc"]),
    ("Wfc", True, ["fc", "bias"]),
    ("bn", True, ["bn", "fc", "bias"]),
    ("bn", False, ["bn"]),
    ("bias", True, ["bias"]),
    ("conv", True, ["conv", "bn", "fc", "bias"]),
    (["conv", "bias"], False, ["conv", "bias"]),
    (["bias", "bn"], True, ["bn", "fc", "bias"]),
])
def test_cascade_redraws_the_chosen_layer_and_those_after_it_only(net, layer, cascade, expected):
    proto, arrays = net
    edited = randomize(proto, layer, cascade=cascade, random_state=0)
    assert changed(proto, edited) == {weight for node in expected for weight in OWNED[node]}
    after = initializers(edited)
    for name, tensor in after.items():  # same shapes and dtypes, every one
        assert numpy_helper.to_array(tensor).shape == arrays[name].shape
        assert numpy_helper.to_array(tensor).dtype == arrays[name].dtype


def test_all_layers_by_default_but_never_statistics_shapes_or_scalars(net):
    proto, _ = net
    edited = randomize(proto, random_state=0)
    assert changed(proto, edited) == {weight for owned in OWNED.values() for weight in owned}
    assert not changed(proto, edited) & set(KEPT)


def test_randomized_model_computes_with_the_new_weights(net, rng):
    proto, arrays = net
    x = rng.normal(size=(3, 2, 6, 6)).astype(np.float32)
    model = ae.load(expose(proto, ["f"]), providers="cpu")
    f = model.run({"x": x}, ["f"])[0]
    edited = randomize(proto, "fc", cascade=False, random_state=3)
    new_w = numpy_helper.to_array(initializers(edited)["Wfc"])
    output = ae.load(edited, providers="cpu").run({"x": x})[0]
    np.testing.assert_allclose(output, (f @ new_w + arrays["bfc"]) / 2.0, rtol=1e-4, atol=1e-4)
    assert not np.allclose(output, model.run({"x": x}, ["y"])[0], atol=1e-2)


def test_same_random_state_same_proto_different_state_different_weights(net):
    proto, _ = net
    first = randomize(proto, "bn", random_state=7)
    assert first.SerializeToString() == randomize(proto, "bn", random_state=7).SerializeToString()
    assert first.SerializeToString() == randomize(proto, "bn", random_state=np.random.default_rng(7)).SerializeToString()
    other = randomize(proto, "bn", random_state=8)
    assert changed(first, other) == {"scale", "shift", "Wfc", "bfc"}


def test_normal_keeps_the_mean_and_std_of_a_large_tensor(net):
    proto, arrays = net
    old = arrays["Wfc"]
    new = numpy_helper.to_array(initializers(randomize(proto, "fc", cascade=False, random_state=0))["Wfc"])
    assert abs(new.mean() - old.mean()) < 5 * old.std() / np.sqrt(old.size)  # 5 standard errors
    assert abs(new.std() / old.std() - 1) < 0.03
    assert abs(np.corrcoef(new.ravel(), old.ravel())[0, 1]) < 0.05  # drawn afresh, not a perturbation


def test_permute_keeps_the_sorted_values_exactly(net):
    proto, arrays = net
    edited = initializers(randomize(proto, "bn", method="permute", random_state=0))
    for name in ("scale", "shift", "Wfc", "bfc"):
        new = numpy_helper.to_array(edited[name])
        np.testing.assert_array_equal(np.sort(new, axis=None), np.sort(arrays[name], axis=None))
        assert not np.array_equal(new, arrays[name])


def test_unknown_layer_and_bad_method_are_refused(net):
    proto, _ = net
    with pytest.raises(ParameterError, match=r"layers: 'fcc' is not a weight layer.*did you mean 'fc'"):
        randomize(proto, "fcc")
    with pytest.raises(ParameterError, match=r"layers: 'relu' is not a weight layer"):
        randomize(proto, "relu")
    with pytest.raises(ParameterError, match="layers: no layer names given"):
        randomize(proto, [])
    with pytest.raises(ParameterError, match="method must be one of"):
        randomize(proto, "fc", method="uniform")


def test_a_model_without_weights_is_refused():
    proto = make_model([helper.make_node("Relu", ["x"], ["y"])], [float_input("x", ["batch", 3])],
                       [float_input("y", ["batch", 3])])
    assert weight_layers(proto) == []
    with pytest.raises(ParameterError, match="no weight layers"):
        randomize(proto)
