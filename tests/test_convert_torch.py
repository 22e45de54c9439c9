"""converters.from_torch: a two-input LSTM and a CNN, parity, dynamic batch, explanations, loading."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import onnx
import pytest

import agnostic_explain as ae
from agnostic_explain.errors import ConversionError, MissingDependencyError, ModelNotFoundError

torch = pytest.importorskip("torch")
from converters import read_metadata  # noqa: E402
from converters.pytorch import from_torch, load_native  # noqa: E402

STEPS, FEATURES, STATIC = 6, 3, 4
CLASSES = ["low", "mid", "high"]
STATIC_NAMES = ["age", "height", "weight", "score"]


class SequenceAndStatic(torch.nn.Module):
    """An LSTM over (batch, T, F) sequences, its last state joined to (batch, D) static features."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(FEATURES, 8, batch_first=True)
        self.head = torch.nn.Linear(8 + STATIC, len(CLASSES))

    def forward(self, sequence, static):
        _, (state, _) = self.lstm(sequence)
        return self.head(torch.cat([state[-1], static], dim=1))


def trained(net, inputs, labels, steps=40):
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(*inputs), labels)
        loss.backward()
        optimizer.step()
    return net.eval()


@pytest.fixture(scope="module")
def lstm_data():
    rng = np.random.default_rng(0)
    sequence = rng.normal(size=(32, STEPS, FEATURES)).astype(np.float32)
    static = rng.normal(size=(32, STATIC)).astype(np.float32)
    labels = np.digitize(sequence[:, -1, 0] + static[:, 0], [-0.7, 0.7])
    torch.manual_seed(0)
    net = trained(SequenceAndStatic(), (torch.from_numpy(sequence), torch.from_numpy(static)),
                  torch.from_numpy(labels))
    return net, sequence, static


@pytest.fixture(scope="module")
def lstm_onnx(lstm_data):
    net, sequence, static = lstm_data
    return from_torch(net, (sequence[:5], static[:5]), input_names=["sequence", "static"],
                      class_names=CLASSES, feature_names=STATIC_NAMES)


def native(net, *arrays):
    with torch.no_grad():
        return net(*(torch.from_numpy(np.asarray(array, np.float32)) for array in arrays)).numpy()


def test_lstm_two_inputs_parity_and_names(lstm_onnx):
    parity = read_metadata(lstm_onnx)["parity"]
    assert parity["max_abs"] <= 1e-4 and parity["n_rows"] == 5
    assert [value.name for value in lstm_onnx.graph.input] == ["sequence", "static"]
    assert [value.name for value in lstm_onnx.graph.output] == ["output"]
    model = ae.load(lstm_onnx)
    assert model.label_names == tuple(CLASSES) and model.feature_names == tuple(STATIC_NAMES)
    assert read_metadata(lstm_onnx)["source_framework"] == "torch"


@pytest.mark.parametrize("batch", [1, 7])
def test_lstm_dynamic_batch(lstm_data, lstm_onnx, batch):
    net, sequence, static = lstm_data
    got = ae.load(lstm_onnx).run({"sequence": sequence[10:10 + batch], "static": static[10:10 + batch]})[0]
    assert got.shape == (batch, len(CLASSES))
    np.testing.assert_allclose(got, native(net, sequence[10:10 + batch], static[10:10 + batch]), atol=1e-5)


def test_lstm_ablation_agrees_with_native(lstm_data, lstm_onnx):
    net, sequence, static = lstm_data
    for row in (0, 3):
        held = sequence[row:row + 1]
        onnx_explanation = ae.FeatureAblation(lstm_onnx).explain(
            static[row:row + 1], target=2, input="static", fixed_inputs={"sequence": held})
        wrapped = ae.CallableModel(lambda rows: native(net, np.repeat(held, len(rows), axis=0), rows),
                                   label_names=CLASSES, feature_names=STATIC_NAMES)
        native_explanation = ae.FeatureAblation(wrapped).explain(static[row:row + 1], target=2)
        np.testing.assert_allclose(onnx_explanation.values, native_explanation.values, atol=1e-5)
        assert np.abs(onnx_explanation.values).max() > 1e-3  # the static features do matter
        assert onnx_explanation.label_names == tuple(CLASSES)
        assert onnx_explanation.feature_names == tuple(STATIC_NAMES)


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2),
    )
    images = np.random.default_rng(1).uniform(size=(4, 3, 8, 8)).astype(np.float32)
    return net, images


def test_cnn_metadata_read_back(cnn, tmp_path):
    net, images = cnn
    preprocessing = {"layout": "nchw", "scale": 1 / 255, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    target = tmp_path / "cnn.onnx"
    net.train()
    proto = from_torch(net, images, class_names=["cat", "dog"], preprocessing=preprocessing, path=target)
    assert net.training  # the caller's mode comes back
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    loaded = ae.load(str(target))
    assert loaded.label_names == ("cat", "dog")
    assert loaded.preprocessing == preprocessing
    occlusion = ae.Occlusion(loaded, window=(3, 4, 4)).explain(images[:2], target=1)
    wrapped = ae.CallableModel(lambda rows: native(net.eval(), rows))
    reference = ae.Occlusion(wrapped, window=(3, 4, 4)).explain(images[:2], target=1)
    np.testing.assert_allclose(occlusion.values, reference.values, atol=1e-5)
    assert occlusion.label_names == ("cat", "dog") and occlusion.preprocessing == preprocessing


class TwoHeads(torch.nn.Module):
    def forward(self, x):
        return x.sum(dim=1), (x * 2, x.mean(dim=0))


def test_outputs_flattened_and_batch_only_where_there_is_one():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    proto = from_torch(TwoHeads(), x.astype(np.float64))  # NumPy's default: cast to float32
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [value.name for value in proto.graph.output] == ["output_0", "output_1", "output_2"]
    first_dims = [value.type.tensor_type.shape.dim[0] for value in proto.graph.output]
    assert [dim.dim_param for dim in first_dims] == ["batch", "batch", ""]  # a column mean has no batch axis
    assert first_dims[2].dim_value == 3
    np.testing.assert_allclose(ae.load(proto).run({"input": x})[2], x.mean(axis=0))


def test_static_batch_when_asked(cnn):
    net, images = cnn
    proto = from_torch(net, images[:2], dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2


class BakedBatch(torch.nn.Module):
    def forward(self, x):
        rows = int(x.shape[0])  # the trace records the number, not the shape
        return x.reshape(rows, -1).sum(dim=1, keepdim=True)


def test_batch_size_baked_by_the_trace_is_caught():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    with pytest.raises(ConversionError, match="dynamic_batch=False"):
        from_torch(BakedBatch(), x)
    fixed = from_torch(BakedBatch(), x, dynamic_batch=False)
    np.testing.assert_allclose(ae.load(fixed).run({"input": x})[0], x.sum(axis=1, keepdims=True))


class Fold(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.fold(x, (4, 4), 2)


def test_unsupported_operator_names_op_and_opset():
    x = np.random.default_rng(0).normal(size=(2, 4, 9)).astype(np.float32)
    with pytest.raises(ConversionError, match=r"aten::col2im.*opset=18") as raised:
        from_torch(Fold(), x, opset=17)
    assert raised.value.__cause__ is not None
    assert read_metadata(from_torch(Fold(), x, opset=18))["parity"]["max_abs"] <= 1e-4


def test_sample_that_does_not_fit(lstm_data):
    net, sequence, static = lstm_data
    with pytest.raises(ConversionError, match=r"example_inputs.*\(2, 3\)"):
        from_torch(net, (sequence[:2], static[:2, :3]))
    with pytest.raises(ConversionError, match="input_names"):
        from_torch(net, (sequence[:2], static[:2]), input_names=["only_one"])


def test_missing_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"agnostic-explain\[torch\]"):
        from_torch(object(), np.zeros((1, 2), np.float32))


def test_load_native_torchscript_is_safe(cnn, tmp_path):
    net, images = cnn
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.trace(net.eval(), torch.from_numpy(images)), str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no unpickling warning: TorchScript is the safe format
        loaded = load_native(path)
    proto = from_torch(loaded, images)
    np.testing.assert_allclose(ae.load(proto).predict(images[:3]), native(net, images[:3]), atol=1e-5)


def test_load_native_pickle_needs_consent(cnn, tmp_path):
    net, images = cnn
    path = tmp_path / "whole.pth"
    torch.save(net, str(path))
    with pytest.raises(ConversionError, match="allow-pickle"):
        load_native(path)
    with pytest.warns(UserWarning, match="arbitrary code"):
        loaded = load_native(path, allow_pickle=True)
    np.testing.assert_allclose(native(loaded, images), native(net, images), atol=1e-6)
    weights = tmp_path / "weights.pth"
    torch.save(net.state_dict(), str(weights))
    with pytest.raises(ConversionError, match="state_dict"):
        load_native(weights, allow_pickle=True)
    with pytest.raises(ModelNotFoundError):
        load_native(tmp_path / "absent.pt")


def test_load_native_exported_program(tmp_path):
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()
    x = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
    batch = torch.export.Dim("batch")
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.from_numpy(x),), dynamic_shapes=({0: batch},)), str(path))
    with pytest.raises(ConversionError, match="allow-pickle"):
        load_native(path)
    with pytest.warns(UserWarning, match="arbitrary code"):
        program = load_native(path, allow_pickle=True)
    proto = from_torch(program, x)
    assert isinstance(proto, onnx.ModelProto) and read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    rows = np.random.default_rng(3).normal(size=(7, 4)).astype(np.float32)
    np.testing.assert_allclose(ae.load(proto).predict(rows), native(net, rows), atol=1e-5)
