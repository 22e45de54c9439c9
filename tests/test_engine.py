"""The performance engine: fused perturbation graphs, IO binding, sharding, fp16, CUDA-graph plumbing.

Fused and unfused runs must give the same attributions (1e-5, relative to the largest), for
every method that describes its perturbations compactly, on CNNs, token models, multi-input
models and every target kind. The CUDA code paths run here on the CPU through the same
IO-binding abstractions.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import agnostic_explain as ae
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.errors import ParameterError
from agnostic_explain.graph import fuse_perturbation
from agnostic_explain.runtime.binding import Resident, StaticBinding, run_bound
from agnostic_explain.runtime.providers import with_cuda_graph, without_cuda_graph

from conftest import build_image_linear, build_tokens, build_two_input


def _relative(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def _both(model, make, x, **explain):
    """The explanation on an unfused and a fused load of ``model``."""
    results = []
    for fuse in (False, True):
        loaded = ae.load(model, providers="cpu", fuse=fuse)
        results.append(make(loaded).explain(x, **explain))
    return results


@pytest.fixture(scope="module")
def digits():
    images, labels = load_samples()
    return images, labels


IMAGE_METHODS = {
    "occlusion": lambda m: ae.Occlusion(m, window=(1, 3, 3), stride=(1, 2, 2)),
    "occlusion_blur": lambda m: ae.Occlusion(m, window=(1, 2, 2), baseline="blur"),
    "ablation": lambda m: ae.FeatureAblation(m, feature_mask=ae.masks.grid((8, 8), 4), baseline=0.5),
    "ablation_per_row": lambda m: ae.FeatureAblation(
        m, feature_mask=np.stack([ae.masks.grid((8, 8), c)[None] for c in (2, 4, 8)]), baseline="mean"),
    "rise": lambda m: ae.Rise(m, n_masks=300, cells=4),
    "rise_mean": lambda m: ae.Rise(m, n_masks=300, cells=3, baseline="mean"),
    "lime": lambda m: ae.LimeImage(m, num_samples=300, segmentation=ae.masks.grid((8, 8), 4)),
    "kernel_shap": lambda m: ae.KernelShap(m, background=load_samples()[0][5:8], feature_mask=ae.masks.grid((8, 8), 4)),
    "shapley_sampling": lambda m: ae.ShapleySampling(m, n_permutations=4, baseline=0.0, feature_mask=ae.masks.grid((8, 8), 2)),
}


@pytest.mark.parametrize("method", sorted(IMAGE_METHODS))
@pytest.mark.parametrize("target", ["predicted", "softmax", "callable"])
def test_fused_equals_unfused_on_the_digits_cnn(digits, method, target):
    images, _ = digits
    explain = {"random_state": 3}
    if target == "softmax":
        explain["output_transform"] = "softmax"
    if target == "callable":
        explain["target"] = lambda outputs: outputs[:, 2] - outputs[:, 7]
    plain, fused = _both(DEFAULT_MODEL_PATH, IMAGE_METHODS[method], images[:3], **explain)
    assert plain.params["fused"] is False and fused.params["fused"] is True
    assert fused.n_evals == plain.n_evals
    np.testing.assert_array_equal(fused.target if fused.target is not None else 0, plain.target if plain.target is not None else 0)
    assert _relative(plain.values, fused.values) < 1e-5
    np.testing.assert_allclose(fused.base_values, plain.base_values, rtol=1e-6)


def test_fused_rise_on_a_channels_last_rgb_model():
    case = build_image_linear(channels=3, height=16, width=12, layout="NHWC")
    x = np.random.default_rng(0).normal(size=(2, 16, 12, 3)).astype(np.float32)
    plain, fused = _both(case.proto, lambda m: ae.Rise(m, n_masks=200, cells=5, baseline=0.25), x, target=1, random_state=0)
    assert fused.params["fused"] and _relative(plain.values, fused.values) < 1e-5


def test_fused_occlusion_on_a_pytorch_cnn_matches_captum(torch_cnn):
    captum = pytest.importorskip("captum.attr")
    torch = pytest.importorskip("torch")
    net, onnx_bytes = torch_cnn
    x = np.random.default_rng(1).normal(size=(2, 3, 12, 12)).astype(np.float32)
    model = ae.load(onnx_bytes, providers="cpu", fuse=True)
    ours = ae.Occlusion(model, window=(3, 4, 4), stride=(3, 2, 2)).explain(x, target=3)
    theirs = captum.Occlusion(net).attribute(
        torch.from_numpy(x), sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), target=3
    ).numpy()
    assert ours.params["fused"]
    assert _relative(theirs, ours.values) < 1e-5


def test_fused_ablation_of_integer_tokens():
    case = build_tokens(vocabulary=10, length=6)
    ids = np.array([[1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5, 4]], dtype=np.int64)
    plain, fused = _both(case.proto, lambda m: ae.FeatureAblation(m, baseline=0), ids, target=[0, 2])
    assert fused.params["fused"]
    np.testing.assert_allclose(fused.values, plain.values, rtol=1e-6, atol=1e-6)
    # analytic: dropping token t to id 0 changes y[c] by E[t, c] - E[0, c]
    expected = case.E[ids, [[0], [2]]] - case.E[0, [[0], [2]]]
    np.testing.assert_allclose(fused.values, expected, rtol=1e-5, atol=1e-6)


def test_fused_keeps_the_other_inputs_per_row():
    case = build_two_input()
    rng = np.random.default_rng(2)
    x, z = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    plain, fused = _both(case.proto, lambda m: ae.FeatureAblation(m), x, fixed_inputs={"z": z})
    assert fused.params["fused"]
    np.testing.assert_allclose(fused.values, plain.values, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fused.values, x * z * case.W[:, fused.target].T, rtol=1e-5, atol=1e-6)


def test_fusion_is_skipped_where_it_cannot_apply(batch_axis_one, digits):
    rng = np.random.default_rng(3)
    x, t = rng.normal(size=(2, 4)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    explanation = ae.FeatureAblation(ae.load(batch_axis_one.proto, providers="cpu", fuse=True)).explain(
        x, fixed_inputs={"t": t}, target=0)
    assert explanation.params["fused"] is True  # the explained input's batch axis is first
    old = build_image_linear(channels=1).proto
    old.opset_import[0].version = 11
    with pytest.warns(RuntimeWarning, match="opset"):
        explanation = ae.Occlusion(ae.load(old, providers="cpu", fuse=True), window=(1, 4, 4)).explain(digits[0][:1])
    assert explanation.params["fused"] is False
    default = ae.Occlusion(DEFAULT_MODEL_PATH, window=(1, 4, 4)).explain(digits[0][:1])
    assert default.params["fused"] is False  # "auto" fuses on CUDA only


def test_fuse_perturbation_is_pure_and_checked():
    proto = onnx.load(DEFAULT_MODEL_PATH)
    before = proto.SerializeToString()
    fused = fuse_perturbation(proto, input="image", output="logits", blend="groups_per_row", output_transform="softmax")
    assert proto.SerializeToString() == before
    onnx.checker.check_model(fused)
    names = [value.name for value in fused.graph.input]
    assert names == ["ae_rows", "ae_fill", "ae_owner", "ae_fill_index", "ae_keep", "ae_segments",
                     "ae_segment_index", "ae_position"]
    with pytest.raises(ParameterError, match="blend"):
        fuse_perturbation(proto, input="image", output="logits", blend="boxes")
    with pytest.raises(ParameterError, match="no input 'pixels'"):
        fuse_perturbation(proto, input="pixels", output="logits", blend="groups")
    with pytest.raises(ParameterError, match="floating-point input; 'ids' has dtype INT64"):
        fuse_perturbation(build_tokens().proto, input="ids", output="y", blend="separable")
    with pytest.raises(ParameterError, match="two spatial axes"):
        fuse_perturbation(build_two_input().proto, input="x", output="y", blend="separable")


def test_fused_graph_composes_rows_as_documented():
    """Run the fused graph by hand: where(keep[segments], rows[owner], fill[fill_index])."""
    identity = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 2, 3])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2, 3])]),
        opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    fused = fuse_perturbation(identity, input="x", output="y", blend="groups", select=False)
    session = ort.InferenceSession(fused.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    fill = -np.ones((1, 2, 3), dtype=np.float32)
    segments = np.array([[0, 0, 1], [2, 2, 1]], dtype=np.int64)
    keep = np.array([[True, False, True], [False, True, True]])
    out = session.run(None, {"ae_rows": rows, "ae_fill": fill, "ae_owner": np.array([1, 0]),
                             "ae_fill_index": np.array([0, 0]), "ae_keep": keep, "ae_segments": segments})[0]
    expected = np.where(keep[:, segments], rows[[1, 0]], fill[[0, 0]])
    np.testing.assert_array_equal(out, expected)


# -- IO binding, static buffers, providers ---------------------------------------------------
def test_io_binding_paths_equal_session_run(digits):
    images, _ = digits
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    expected = model.session.run(["logits"], {"image": images})[0]
    resident = Resident(images)
    bound = run_bound(model.session, {"image": resident}, ["logits"], "cpu", 0)[0]
    again = run_bound(model.session, {"image": resident}, ["logits"], "cpu", 0)[0]
    np.testing.assert_array_equal(bound, expected)
    np.testing.assert_array_equal(again, expected)
    static = StaticBinding(model.session, "cpu", 0, graph_ids=True)
    for rows in (images[:4], images[4:8], images[:3], images[5:9]):  # two shapes, buffers refilled
        np.testing.assert_array_equal(static.run({"image": rows}, ["logits"])[0],
                                      model.session.run(["logits"], {"image": rows})[0])
    assert len(static._slots) == 2


def test_cuda_graph_options_are_added_and_removed():
    entries = [("CUDAExecutionProvider", {"device_id": 1}), ("CPUExecutionProvider", {})]
    on = with_cuda_graph(entries)
    assert on[0][1] == {"device_id": 1, "enable_cuda_graph": "1"} and on[1][1] == {}
    assert without_cuda_graph(on) == entries
    assert entries[0][1] == {"device_id": 1}  # pure
    # on a machine without CUDA the flag changes nothing
    model = ae.load(DEFAULT_MODEL_PATH, providers="cpu", cuda_graph=True)
    assert model._static is None


def test_bad_engine_settings_are_refused():
    with pytest.raises(ParameterError, match="fuse must be"):
        ae.load(DEFAULT_MODEL_PATH, providers="cpu", fuse="yes")
    with pytest.raises(ParameterError, match="precision must be"):
        ae.load(DEFAULT_MODEL_PATH, providers="cpu", precision="int8")
    with pytest.raises(ParameterError, match="cuda_graph"):
        ae.load(DEFAULT_MODEL_PATH, providers="cpu", cuda_graph="on")
    with pytest.raises(ParameterError, match="twice"):
        ae.load(DEFAULT_MODEL_PATH, providers="cpu", device_id=[0, 0])
    with pytest.raises(ParameterError, match="non-empty list"):
        ae.load(DEFAULT_MODEL_PATH, providers="cpu", device_id=[])


# -- several devices ---------------------------------------------------------------------------
def test_sharded_model_splits_batches_and_gives_the_same_attributions(digits):
    images, _ = digits
    single = ae.load(DEFAULT_MODEL_PATH, providers="cpu")
    sharded = ae.load(DEFAULT_MODEL_PATH, providers="cpu", device_id=[0, 1, 2])
    assert [shard.session for shard in sharded.shards][0] is not sharded.shards[1].session
    np.testing.assert_allclose(sharded.predict(images), single.predict(images), rtol=1e-6, atol=1e-6)
    for fuse in (False, True):
        sharded.shards[0].fuse = sharded.shards[1].fuse = sharded.shards[2].fuse = fuse
        a = ae.Rise(single, n_masks=100, cells=4).explain(images[:2], random_state=1)
        b = ae.Rise(sharded, n_masks=100, cells=4).explain(images[:2], random_state=1)
        assert b.params["fused"] is fuse
        assert _relative(a.values, b.values) < 1e-5
    calls = []
    for shard in sharded.shards:
        original = shard._run
        shard._run = lambda feeds, names, original=original: calls.append(len(next(iter(feeds.values())))) or original(feeds, names)
    sharded.predict(images[:9], batch_size=9)
    assert sorted(calls) == [3, 3, 3]


# -- half precision ----------------------------------------------------------------------------
def test_fp16_keeps_float32_io_and_attributions_close(torch_cnn):
    pytest.importorskip("onnxconverter_common")
    _, onnx_bytes = torch_cnn
    x = np.random.default_rng(4).normal(size=(2, 3, 12, 12)).astype(np.float32)
    full = ae.load(onnx_bytes, providers="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = ae.load(onnx_bytes, providers="cpu", precision="fp16")
    assert half.inputs[0].dtype == np.float32 and half.outputs[0].dtype == np.float32
    assert any(node.op_type == "Cast" for node in half.proto.graph.node)
    reference = ae.Occlusion(full, window=(3, 4, 4)).explain(x, target=1)
    approximate = ae.Occlusion(half, window=(3, 4, 4)).explain(x, target=1)
    assert approximate.params["precision"] == "fp16" and "precision" not in reference.params
    assert ae.AblationCam(half).explain(x, target=1).params["precision"] == "fp16"  # split parts stay fp16
    error = _relative(reference.values, approximate.values)
    assert 0 < error < 2e-2  # fp16 really ran (not identical), and stays close


# -- batch sizes remembered on disk ------------------------------------------------------------
def test_auto_batch_size_is_remembered_across_loads(tmp_path, monkeypatch):
    from agnostic_explain.runtime.tuning import CACHE_ENV, cache_file

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    proto = build_image_linear(channels=3, height=32, width=32).proto  # 12 KiB rows: the sizer starts at 64
    rows = np.random.default_rng(5).normal(size=(6000, 3, 32, 32)).astype(np.float32)
    first = ae.load(proto, providers="cpu", threads=1)
    first.predict(rows)
    (key, size), = first.tuned_batch_sizes.items()
    assert cache_file() == tmp_path / "batch-sizes.json" and cache_file().is_file()
    # a fresh load starts at the remembered size: one row is not enough to measure anything
    second = ae.load(proto, providers="cpu", threads=1)
    second.predict(rows[:1])
    assert second.tuned_batch_sizes == {key: size}
    # another thread count is another entry; "off" keeps nothing
    other = ae.load(proto, providers="cpu", threads=2)
    other.predict(rows[:1])
    assert other.tuned_batch_sizes == {}
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_file() is None
    third = ae.load(proto, providers="cpu", threads=1)
    third.predict(rows[:1])
    assert third.tuned_batch_sizes == {}
    (tmp_path / "batch-sizes.json").write_text("not json")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    ae.load(proto, providers="cpu", threads=1).predict(rows[:10])  # a broken file is ignored


# -- the CLI's engine flags ----------------------------------------------------------------------
def test_cli_engine_flags(capsys, tmp_path, digits):
    from agnostic_explain.cli import main
    from agnostic_explain.explanation import Explanation

    np.save(tmp_path / "x.npy", digits[0][:2])
    base = ["explain", str(DEFAULT_MODEL_PATH), str(tmp_path / "x.npy"), "--provider", "cpu", "--no-report",
            "--window", "1,2,2", "--target", "4"]
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0
    assert main(base + ["--out", str(tmp_path / "fused"), "--fuse", "on", "--device-id", "0,1"]) == 0
    plain = Explanation.load(tmp_path / "plain" / "explanation.npz")
    fused = Explanation.load(tmp_path / "fused" / "explanation.npz")
    assert fused.params["fused"] is True and plain.params["fused"] is False
    assert _relative(plain.values, fused.values) < 1e-5
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "bad"), "--device-id", "0,x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device-id" in err


def test_short_calls_go_on_measuring_until_the_batch_size_settles():
    proto = build_image_linear(channels=3, height=32, width=32).proto  # 12 KiB rows: growth starts at 64
    rows = np.random.default_rng(6).normal(size=(150, 3, 32, 32)).astype(np.float32)
    model = ae.load(proto, providers="cpu", threads=1)
    expected = rows.reshape(150, -1) @ build_image_linear(channels=3, height=32, width=32).W
    calls = 0
    while not model.tuned_batch_sizes and calls < 40:
        np.testing.assert_allclose(model.predict(rows), expected, rtol=1e-4, atol=1e-4)
        calls += 1
    # one call of 150 rows cannot time two sizes (three full batches each); a few calls do
    assert model.tuned_batch_sizes and 2 <= calls < 40
    (size,) = model.tuned_batch_sizes.values()
    assert size >= 64 and model.cache.batch_growth == {}


def test_fuse_true_warns_whatever_keeps_a_problem_unfused():
    """Every reason a forced fusion falls back (here a static batch, before any graph edit) warns."""
    from conftest import build_reshape_static

    case = build_reshape_static(batch=2)
    model = ae.load(case.proto, providers="cpu", fuse=True)
    assert model.static_batch == 2
    x = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match="batch size is fixed at 2"):
        explanation = ae.FeatureAblation(model).explain(x, target=0)
    assert explanation.params["fused"] is False
    quiet = ae.FeatureAblation(ae.load(case.proto, providers="cpu")).explain(x, target=0)
    np.testing.assert_array_equal(explanation.values, quiet.values)
