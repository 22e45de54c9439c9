"""``agnostic-explain convert`` end to end: saved framework files in, a checked ONNX model out."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import agnostic_explain as ae
from agnostic_explain.cli import main
from converters import read_metadata


def run_cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def wine():
    from sklearn.datasets import load_wine

    data = load_wine()
    return data.data.astype(np.float32), data.target, list(data.feature_names)


def _check(capsys, tmp_path, source, sample, *extra, framework=None):
    out = tmp_path / "model.onnx"
    argv = ["convert", source, "--sample", sample, "--out", out, *extra]
    if framework:
        argv += ["--framework", framework]
    code, printed, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "parity on" in printed and "max abs difference" in printed
    parity = read_metadata(__import__("onnx").load(str(out)))["parity"]
    assert parity["max_abs"] <= 1e-4 or parity["max_rel"] <= 1e-4
    return ae.load(str(out)), printed


def test_convert_xgboost_json(capsys, tmp_path, wine):
    xgboost = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x, y, _ = wine
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3).fit(x, y)
    model.save_model(tmp_path / "wine.json")
    np.save(tmp_path / "x.npy", x[:20])
    loaded, _ = _check(capsys, tmp_path, tmp_path / "wine.json", tmp_path / "x.npy", framework="xgboost")
    np.testing.assert_allclose(loaded.predict(x[:5]), model.predict_proba(x[:5]), atol=1e-5)


def test_convert_lightgbm_text_with_names(capsys, tmp_path, wine):
    lightgbm = pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    x, y, names = wine
    model = lightgbm.LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1).fit(x, y)
    model.booster_.save_model(str(tmp_path / "wine.txt"))
    np.save(tmp_path / "x.npy", x[:20])
    loaded, printed = _check(capsys, tmp_path, tmp_path / "wine.txt", tmp_path / "x.npy",
                             "--class-names", "barolo,grignolino,barbera", "--feature-names", ",".join(names))
    assert loaded.label_names == ("barolo", "grignolino", "barbera")
    assert loaded.feature_names[0] == names[0] and "classes: barolo" in printed


def test_convert_torchscript(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    torch.jit.save(torch.jit.trace(net, torch.zeros(2, 6)), str(tmp_path / "net.ts"))
    x = np.random.default_rng(0).normal(size=(9, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    loaded, _ = _check(capsys, tmp_path, tmp_path / "net.ts", tmp_path / "x.npy")
    with torch.no_grad():
        np.testing.assert_allclose(loaded.predict(x), net(torch.from_numpy(x)).numpy(), atol=1e-5)


def test_convert_refuses_pickles_without_allow_pickle(capsys, tmp_path, wine):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, _ = wine
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    np.save(tmp_path / "x.npy", x[:10])
    code, _, err = run_cli(capsys, "convert", tmp_path / "model.pkl", "--framework", "sklearn",
                           "--sample", tmp_path / "x.npy", "--out", tmp_path / "m.onnx")
    assert code == 1 and "--allow-pickle" in err and err.count("\n") == 1
    assert not (tmp_path / "m.onnx").exists()
    pytest.importorskip("skl2onnx")
    with pytest.warns(UserWarning, match="arbitrary code"):
        loaded, _ = _check(capsys, tmp_path, tmp_path / "model.pkl", tmp_path / "x.npy", "--allow-pickle",
                           framework="sklearn")
    np.testing.assert_allclose(loaded.predict(x[:5]), model.predict_proba(x[:5]), atol=1e-4)


def test_convert_reports_a_sample_that_does_not_fit(capsys, tmp_path, wine):
    xgboost = pytest.importorskip("xgboost")
    pytest.importorskip("onnxmltools")
    x, y, _ = wine
    xgboost.XGBClassifier(n_estimators=2).fit(x, y).save_model(tmp_path / "wine.ubj")
    np.save(tmp_path / "x.npy", x[:5, :4])
    code, _, err = run_cli(capsys, "convert", tmp_path / "wine.ubj", "--sample", tmp_path / "x.npy",
                           "--out", tmp_path / "m.onnx")
    assert code == 1 and "sample" in err and err.count("\n") == 1
