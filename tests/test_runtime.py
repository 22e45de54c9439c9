"""The runtime layer: loading, specs, batched predict, static batches, inputs, outputs, providers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import ModelExecutionError, OutOfMemoryError, ProviderError
from agnostic_explain.runtime.providers import CPU, CUDA, cuda_usable

F32 = {"rtol": 1e-5, "atol": 1e-5}


def linear_answer(case, x):
    return x.astype(np.float32) @ case.W + case.b


@pytest.fixture
def rows(rng):
    return rng.normal(size=(1000, 4)).astype(np.float32)


# -- loading ----------------------------------------------------------------------------------
def test_load_from_path_bytes_and_proto_give_the_same_model(linear, tmp_path, rng):
    path = tmp_path / "linear.onnx"
    onnx.save(linear.proto, str(path))
    x = rng.normal(size=(3, 4)).astype(np.float32)
    for source in (path, str(path), linear.proto.SerializeToString(), linear.proto):
        model = ae.load(source, providers="cpu")
        assert isinstance(model, ae.OnnxModel)
        np.testing.assert_allclose(model.predict(x), linear_answer(linear, x), **F32)
    assert ae.load(path, providers="cpu").path == path


def test_load_returns_a_loaded_model_as_is(linear):
    model = ae.load(linear.proto, providers="cpu")
    assert ae.load(model) is model


def test_load_wraps_a_function_in_a_callable_model(rng):
    model = ae.load(lambda x: 2 * x)
    assert isinstance(model, ae.CallableModel)
    x = rng.normal(size=(5, 2)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), 2 * x)


def test_load_leaves_the_proto_unchanged(linear_static):
    before = linear_static.proto.SerializeToString()
    ae.load(linear_static.proto, providers="cpu")
    assert linear_static.proto.SerializeToString() == before


# -- specs ------------------------------------------------------------------------------------
def test_specs_report_names_dtypes_and_symbolic_dims(linear, tokens, argmax_first):
    model = ae.load(linear.proto, providers="cpu")
    (x_spec,), (y_spec,) = model.inputs, model.outputs
    assert (x_spec.name, x_spec.dtype, x_spec.shape, x_spec.batch_axis) == ("x", np.float32, ("N", 4), 0)
    assert (y_spec.name, y_spec.dtype, y_spec.shape) == ("y", np.float32, ("N", 3))
    assert x_spec.describe() == "(N, 4)" and x_spec.row_shape() == (4,)
    ids = ae.load(tokens.proto, providers="cpu").inputs[0]
    assert (ids.name, ids.dtype, ids.shape) == ("ids", np.int64, ("N", 6))
    label, logits = ae.load(argmax_first.proto, providers="cpu").outputs
    assert (label.name, label.dtype, label.shape) == ("label", np.int64, ("N",))
    assert (logits.name, logits.dtype, logits.is_floating) == ("logits", np.float32, True)


def test_metadata_class_names_become_label_names(labelled_linear):
    model = ae.load(labelled_linear.proto, providers="cpu")
    assert model.label_names == ("cat", "dog", "eel")
    assert model.metadata["class_names"] == '["cat", "dog", "eel"]'


def test_metadata_class_names_as_a_dict(make_linear):
    case = make_linear(metadata={"class_names": '{"1": "dog", "0": "cat", "2": "eel"}'})
    assert ae.load(case.proto, providers="cpu").label_names == ("cat", "dog", "eel")


# -- batched predict ----------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [7, "auto", 1000, 4096])
def test_predict_in_batches_equals_one_shot(linear, rows, batch_size):
    model = ae.load(linear.proto, providers="cpu", batch_size=batch_size)
    predicted = model.predict(rows)
    assert predicted.shape == (1000, 3)
    np.testing.assert_allclose(predicted, linear_answer(linear, rows), **F32)


def test_predict_batch_size_argument_overrides_the_model(linear, rows):
    model = ae.load(linear.proto, providers="cpu", batch_size="auto")
    np.testing.assert_allclose(model.predict(rows, batch_size=7), linear_answer(linear, rows), **F32)


def test_static_batch_one_is_rewritten_as_dynamic(linear_static, rows):
    model = ae.load(linear_static.proto, providers="cpu")
    assert model.static_batch is None
    assert model.inputs[0].shape == ("batch", 4)
    assert model.outputs[0].shape == ("batch", 3)
    np.testing.assert_allclose(model.predict(rows, batch_size=7), linear_answer(linear_static, rows), **F32)


def test_batch_baked_into_a_reshape_falls_back_to_padding(reshape_static, rows):
    model = ae.load(reshape_static.proto, providers="cpu")
    assert model.static_batch == 1
    assert model.inputs[0].shape == (1, 4) and model.inputs[0].batch_axis == 0
    x = rows[:50]
    for batch_size in (7, "auto"):
        np.testing.assert_allclose(model.predict(x, batch_size=batch_size), linear_answer(reshape_static, x), **F32)


def test_static_batch_fallback_probe_prints_nothing(reshape_static, capfd):
    # the probe that finds the Reshape cannot take two rows is internal: the user should not
    # see ONNX Runtime's error log for it
    ae.load(reshape_static.proto, providers="cpu")
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_static_batch_of_three_pads_the_last_piece(reshape_static_three, rows):
    model = ae.load(reshape_static_three.proto, providers="cpu")
    assert model.static_batch == 3
    x = rows[:10]  # 10 rows: pieces of 3, 3, 3 and a padded 1
    for batch_size in (4, 7, 1, "auto"):
        np.testing.assert_allclose(
            model.predict(x, batch_size=batch_size), linear_answer(reshape_static_three, x), **F32
        )


def test_static_batch_model_with_a_scalar_input_is_rewritten(make_scaled, rows):
    # a rank-0 input (a temperature) has no batch axis: the model is still row-independent
    case = make_scaled(batch=1, baked=False)
    model = ae.load(case.proto, providers="cpu")
    assert model.static_batch is None
    x = rows[:5]
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"T": 2.0}), x @ case.W / 2, **F32)


def test_padded_static_batch_model_with_a_scalar_input(make_scaled, rows):
    case = make_scaled(batch=1, baked=True)
    model = ae.load(case.proto, providers="cpu")
    assert model.static_batch == 1
    assert model.inputs[1].batch_axis is None
    x = rows[:5]
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"T": 2.0}, batch_size=2), x @ case.W / 2, **F32)


def test_dynamic_model_with_a_scalar_input(make_scaled, rows):
    case = make_scaled(batch="N")
    model = ae.load(case.proto, providers="cpu")
    assert model.inputs[1].shape == () and model.inputs[1].batch_axis is None
    x = rows[:20]
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"T": 4.0}, batch_size=3), x @ case.W / 4, **F32)
    explanation = ae.Occlusion(model, window=(1,)).explain(x[:3], target=2, fixed_inputs={"T": 4.0})
    np.testing.assert_allclose(explanation.values, case.W[:, 2] * x[:3] / 4, **F32)


def test_output_with_its_batch_axis_second_comes_back_batch_first(make_onnx_model, rows):
    from onnx import helper

    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    proto = make_onnx_model(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Transpose", ["xw"], ["y"], perm=[1, 0])],
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [3, "N"])],
        [("W", w)],
    )
    model = ae.load(proto, providers="cpu")
    assert model.outputs[0].batch_axis == 1
    x = rows[:11]
    np.testing.assert_allclose(model.predict(x, batch_size=4), x @ w, **F32)
    explanation = ae.Occlusion(model, window=(1,)).explain(x[:2], target=1)
    np.testing.assert_allclose(explanation.values, w[:, 1] * x[:2], **F32)


def test_occlusion_on_a_padded_static_batch_model(reshape_static, rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    explanation = ae.Occlusion(reshape_static.proto, window=(1,)).explain(x, target=2)
    np.testing.assert_allclose(explanation.values, reshape_static.W[:, 2] * x, **F32)


def test_one_row_without_its_batch_axis(linear, rows):
    model = ae.load(linear.proto, providers="cpu")
    np.testing.assert_allclose(model.predict(rows[0]), linear_answer(linear, rows[:1]), **F32)


# -- several inputs -----------------------------------------------------------------------------
def test_fixed_input_broadcast_from_one_row(two_input, rng):
    model = ae.load(two_input.proto, providers="cpu")
    x = rng.normal(size=(20, 4)).astype(np.float32)
    z = rng.normal(size=(1, 4)).astype(np.float32)
    expected = (x * z) @ two_input.W
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"z": z}, batch_size=3), expected, **F32)
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"z": z[0]}, batch_size=3), expected, **F32)


def test_fixed_input_one_per_row_follows_its_row(two_input, rng):
    model = ae.load(two_input.proto, providers="cpu")
    x = rng.normal(size=(20, 4)).astype(np.float32)
    z = rng.normal(size=(20, 4)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict(x, fixed_inputs={"z": z}, batch_size=3), (x * z) @ two_input.W, **F32
    )


def test_occlusion_with_per_row_fixed_input(two_input, rng):
    x = rng.normal(size=(4, 4)).astype(np.float32)
    z = rng.normal(size=(4, 4)).astype(np.float32)
    explanation = ae.Occlusion(two_input.proto, window=(1,)).explain(x, target=0, fixed_inputs={"z": z})
    np.testing.assert_allclose(explanation.values, two_input.W[:, 0] * x * z, **F32)


def test_input_with_batch_axis_at_position_one(batch_axis_one, rng):
    model = ae.load(batch_axis_one.proto, providers="cpu")
    assert model.inputs[1].name == "t" and model.inputs[1].batch_axis == 1
    x = rng.normal(size=(9, 4)).astype(np.float32)
    t = rng.normal(size=(4, 9)).astype(np.float32)  # the model's layout: features first
    expected = (x + t.T) @ batch_axis_one.W
    np.testing.assert_allclose(model.predict(x, fixed_inputs={"t": t}, batch_size=2), expected, **F32)
    shared = t[:, :1]
    np.testing.assert_allclose(
        model.predict(x, fixed_inputs={"t": shared}, batch_size=2), (x + shared.T) @ batch_axis_one.W, **F32
    )
    # explaining t itself: rows come back batch first
    np.testing.assert_allclose(
        model.predict(t, input="t", fixed_inputs={"x": x}, batch_size=4), expected, **F32
    )


def test_occlusion_of_an_input_with_batch_axis_one(batch_axis_one, rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    t = rng.normal(size=(4, 3)).astype(np.float32)
    explanation = ae.Occlusion(batch_axis_one.proto, window=(1,)).explain(
        t, target=1, input="t", fixed_inputs={"x": x}
    )
    assert explanation.values.shape == (3, 4)
    np.testing.assert_array_equal(explanation.data, t.T)
    np.testing.assert_allclose(explanation.values, batch_axis_one.W[:, 1] * t.T, **F32)


# -- outputs ------------------------------------------------------------------------------------
def test_output_by_name_index_and_default(argmax_first, rng):
    model = ae.load(argmax_first.proto, providers="cpu")
    x = rng.normal(size=(10, 4)).astype(np.float32)
    logits = x @ argmax_first.W
    np.testing.assert_allclose(model.predict(x), logits, **F32)  # the first floating output
    np.testing.assert_allclose(model.predict(x, output="logits"), logits, **F32)
    np.testing.assert_allclose(model.predict(x, output=1), logits, **F32)
    labels = model.predict(x, output=0)
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    np.testing.assert_array_equal(model.predict(x, output="label"), logits.argmax(axis=1))


def test_run_returns_every_output_in_order(argmax_first, rng):
    model = ae.load(argmax_first.proto, providers="cpu")
    x = rng.normal(size=(2, 4)).astype(np.float32)
    label, logits = model.run({"x": x})
    np.testing.assert_array_equal(label, (x @ argmax_first.W).argmax(axis=1))
    np.testing.assert_allclose(logits, x @ argmax_first.W, **F32)


# -- out of memory ------------------------------------------------------------------------------
class SmallMemoryModel(ae.CallableModel):
    """A CallableModel that 'runs out of memory' on batches of more than ``limit`` rows."""

    def __init__(self, function, limit, **kwargs):
        super().__init__(function, **kwargs)
        self.limit = limit
        self.seen = []

    def _run(self, feeds, output_names):
        rows = feeds["input"]
        if len(rows) > self.limit:
            raise OutOfMemoryError(f"simulated: {len(rows)} rows do not fit")
        self.seen.append(rows.copy())
        return super()._run(feeds, output_names)


@pytest.mark.parametrize("batch_size", [64, 9, "auto"])
def test_out_of_memory_halves_the_batch_and_loses_nothing(batch_size):
    model = SmallMemoryModel(lambda x: x * 3, limit=8, batch_size=64)
    x = np.arange(203 * 2, dtype=np.float32).reshape(203, 2)
    predicted = model.predict(x, batch_size=batch_size)
    np.testing.assert_array_equal(predicted, x * 3)
    # every row ran exactly once, in order, and no batch exceeded the limit
    np.testing.assert_array_equal(np.concatenate(model.seen), x)
    assert max(len(rows) for rows in model.seen) <= 8


def test_out_of_memory_during_occlusion_keeps_results_exact(linear, rng):
    w, b = linear.W, linear.b
    model = SmallMemoryModel(lambda x: x @ w + b, limit=5, batch_size=64)
    x = rng.normal(size=(6, 4)).astype(np.float32)
    explanation = ae.Occlusion(model, window=(1,)).explain(x, target=1)
    np.testing.assert_allclose(explanation.values, w[:, 1] * x, **F32)
    assert sum(len(rows) for rows in model.seen) == explanation.n_evals == 6 + 6 * 4


def test_out_of_memory_on_a_single_row_is_raised():
    model = SmallMemoryModel(lambda x: x, limit=0, batch_size=16)
    with pytest.raises(OutOfMemoryError, match="one row"):
        model.predict(np.ones((3, 2), dtype=np.float32))


class _FailingSession:
    def __init__(self, message):
        self.message = message

    def run(self, output_names, feeds):
        raise RuntimeError(self.message)


def test_onnx_runtime_allocation_failure_becomes_out_of_memory(linear):
    model = ae.load(linear.proto, providers="cpu")
    model.session = _FailingSession("Failed to allocate memory for requested buffer of size 123")
    with pytest.raises(OutOfMemoryError) as raised:
        model.run({"x": np.ones((1, 4), np.float32)})
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert isinstance(raised.value, MemoryError)


def test_other_onnx_runtime_failures_become_model_execution_errors(linear):
    model = ae.load(linear.proto, providers="cpu")
    model.session = _FailingSession("some kernel failed")
    with pytest.raises(ModelExecutionError, match="some kernel failed") as raised:
        model.run({"x": np.ones((1, 4), np.float32)})
    assert not isinstance(raised.value, OutOfMemoryError)
    assert isinstance(raised.value.__cause__, RuntimeError)


def test_callable_failure_is_wrapped():
    def broken(x):
        raise ZeroDivisionError("boom")

    with pytest.raises(ModelExecutionError, match="ZeroDivisionError: boom") as raised:
        ae.CallableModel(broken).predict(np.ones((2, 2)))
    assert isinstance(raised.value.__cause__, ZeroDivisionError)


def test_callable_returning_the_wrong_number_of_rows():
    with pytest.raises(ModelExecutionError, match="one output row per input row"):
        ae.CallableModel(lambda x: x[:1]).predict(np.ones((4, 2)))


# -- providers ----------------------------------------------------------------------------------
def test_cpu_provider(linear, rng):
    model = ae.load(linear.proto, providers="cpu")
    assert model.providers == [CPU]
    assert not model.on_cuda
    x = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), linear_answer(linear, x), **F32)


def test_explicit_provider_list(linear):
    assert ae.load(linear.proto, providers=[CPU]).providers == [CPU]
    assert ae.load(linear.proto, providers=[(CPU, {})]).providers == [CPU]


def test_auto_provider_picks_what_is_usable_and_prints_nothing(linear, capfd):
    model = ae.load(linear.proto, providers="auto")
    expected = CUDA if cuda_usable() else CPU
    assert model.providers[0] == expected
    assert model.providers[-1] == CPU
    model.predict(np.ones((2, 4), np.float32))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_unknown_provider_raises_provider_error(linear):
    with pytest.raises(ProviderError, match="NoSuchExecutionProvider"):
        ae.load(linear.proto, providers="NoSuchExecutionProvider")
    with pytest.raises(ProviderError, match="NoSuchExecutionProvider"):
        ae.load(linear.proto, providers=["NoSuchExecutionProvider", CPU])


@pytest.mark.skipif(cuda_usable(), reason="a CUDA device is present")
def test_cuda_without_a_device_raises_provider_error(linear):
    with pytest.raises(ProviderError, match="CUDA"):
        ae.load(linear.proto, providers="cuda")

