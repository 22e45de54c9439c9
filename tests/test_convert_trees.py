"""XGBoost and LightGBM to ONNX: parity, names, explanations that agree with the native model, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("onnxmltools")
from sklearn.datasets import load_wine  # noqa: E402

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.errors import ConversionError, MissingDependencyError  # noqa: E402
from converters import read_metadata  # noqa: E402

FEATURES = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "flavanoids", "color_intensity", "proline"]


@pytest.fixture(scope="module")
def wine():
    data = load_wine(as_frame=True)
    return data.data[FEATURES].astype(np.float32), data.target.to_numpy()


def xgboost_classifier(frame, target):
    xgboost = pytest.importorskip("xgboost")
    return xgboost.XGBClassifier(n_estimators=25, max_depth=3, learning_rate=0.3, random_state=0).fit(frame, target)


def lightgbm_classifier(frame, target):
    lightgbm = pytest.importorskip("lightgbm")
    return lightgbm.LGBMClassifier(n_estimators=25, num_leaves=7, random_state=0, verbose=-1).fit(frame, target)


def convert(model, sample, **options):
    if type(model).__module__.startswith("xgboost"):
        from converters.xgboost import from_xgboost

        return from_xgboost(model, sample, **options)
    from converters.lightgbm import from_lightgbm

    return from_lightgbm(model, sample, **options)


@pytest.mark.parametrize("build", [xgboost_classifier, lightgbm_classifier], ids=["xgboost", "lightgbm"])
@pytest.mark.parametrize("task", ["multiclass", "binary"])
def test_classifier_parity_names_and_explanation(build, task, wine):
    frame, target = wine
    if task == "binary":
        target = (target == 1).astype(int)
    native = build(frame, target)
    proto = convert(native, frame)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    model = ae.load(proto, providers="cpu")
    assert model.label_names == tuple(str(label) for label in native.classes_)
    assert model.feature_names == tuple(FEATURES)
    assert model.output_spec().name == "probabilities"
    assert model.outputs[0].shape == ("batch", len(native.classes_))

    x, background = frame.to_numpy()[[5, 80, 160]], frame.to_numpy()[::25]
    wrapped = ae.CallableModel(lambda rows: native.predict_proba(pd.DataFrame(rows, columns=FEATURES)), batch_size=4096)
    target_rows = native.predict_proba(frame.iloc[[5, 80, 160]]).argmax(axis=1)
    ours = ae.KernelShap(proto, background=background, nsamples=126).explain(x, target=target_rows, random_state=0)
    theirs = ae.KernelShap(wrapped, background=background, nsamples=126).explain(x, target=target_rows, random_state=0)
    assert np.abs(ours.values).max() > 0.02
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    assert ours.feature_names == tuple(FEATURES)
    assert ours.target_names == [str(native.classes_[index]) for index in target_rows]


def test_xgboost_logistic_regression_base_score_is_repaired(wine):
    xgboost = pytest.importorskip("xgboost")
    frame, target = wine
    share = np.where(target == 1, 0.8, 0.1)  # reg:logistic: base_score is a probability, ~0.35 here
    native = xgboost.XGBRegressor(objective="reg:logistic", n_estimators=15, max_depth=3).fit(frame, share)
    proto = convert(native, frame)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    assert [node.op_type for node in proto.graph.node][-1] == "Sigmoid"
    predicted = ae.load(proto, providers="cpu").predict(frame.to_numpy())[:, 0]
    np.testing.assert_allclose(predicted, native.predict(frame), atol=1e-5)


def test_raw_boosters_and_native_files(wine, tmp_path):
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    from converters import lightgbm as lightgbm_converter, xgboost as xgboost_converter

    frame, target = wine
    x = frame.to_numpy()
    booster = xgboost.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
                            xgboost.DMatrix(frame, label=target), 10)
    assert read_metadata(xgboost_converter.from_xgboost(booster, x))["parity"]["max_abs"] <= 1e-4
    xgboost_classifier(frame, target).save_model(tmp_path / "wine.ubj")
    loaded = xgboost_converter.load_native(tmp_path / "wine.ubj")
    assert isinstance(loaded, xgboost.XGBClassifier) and list(loaded.classes_) == [0, 1, 2]
    xgboost.XGBRegressor(n_estimators=3).fit(x, target * 1.5).save_model(tmp_path / "regressor.json")
    assert isinstance(xgboost_converter.load_native(tmp_path / "regressor.json"), xgboost.XGBRegressor)

    # 'softmax' is LightGBM's alias of 'multiclass', which onnxmltools does not resolve itself
    booster = lightgbm.train({"objective": "softmax", "num_class": 3, "num_leaves": 7, "verbose": -1},
                             lightgbm.Dataset(frame, target), 10)
    booster.save_model(tmp_path / "wine.txt")
    loaded = lightgbm_converter.load_native(tmp_path / "wine.txt")
    proto = lightgbm_converter.from_lightgbm(loaded, x)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    assert ae.load(proto, providers="cpu").feature_names == tuple(FEATURES)
    assert booster.params["objective"] == "softmax"

    # onnxmltools takes bool classes for strings; the booster is converted instead
    flags = lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(x, target == 1)
    proto = lightgbm_converter.from_lightgbm(flags, x)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    assert ae.load(proto, providers="cpu").label_names == ("False", "True")

    regressor = lightgbm.LGBMRegressor(n_estimators=10, verbose=-1).fit(x, frame["proline"] / 100)
    proto = lightgbm_converter.from_lightgbm(regressor, x)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    assert [output.name for output in proto.graph.output] == ["variable"]


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_errors(framework, wine, tmp_path, monkeypatch):
    pytest.importorskip(framework)
    import importlib

    converter = importlib.import_module(f"converters.{framework}")
    frame, target = wine
    native = (xgboost_classifier if framework == "xgboost" else lightgbm_classifier)(frame, target)
    with pytest.raises(ConversionError, match=r"sample.*\(n_rows, 7\).*\(3, 4\)"):
        convert(native, frame.to_numpy()[:3, :4])
    with pytest.raises(ConversionError, match="model: expected"):
        getattr(converter, f"from_{framework}")(object(), frame)

    if framework == "xgboost":
        import xgboost

        unsupported = xgboost.XGBClassifier(objective="multi:softmax", n_estimators=3).fit(frame, target)
    else:
        import lightgbm

        unsupported = lightgbm.LGBMClassifier(objective="multiclassova", n_estimators=3, verbose=-1).fit(frame, target)
    with pytest.raises(ConversionError, match="objective 'multi(:softmax|classova)'"):
        convert(unsupported, frame)

    pickled = tmp_path / "model.pkl"
    pickled.write_bytes(b"not even read")
    with pytest.raises(ConversionError, match="--allow-pickle"):
        converter.load_native(pickled)
    with pytest.raises(ConversionError, match="not an? (XGBoost|LightGBM) model file"):
        converter.load_native(pickled.rename(tmp_path / "model.bin"))

    monkeypatch.setitem(sys.modules, "onnxmltools", None)
    with pytest.raises(MissingDependencyError, match=rf"agnostic-explain\[{framework}\]"):
        convert(native, frame)
