"""scikit-learn to ONNX: parity, names, explanations that agree with the native model, errors."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")
pd = pytest.importorskip("pandas")

from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.datasets import load_wine  # noqa: E402
from sklearn.ensemble import (  # noqa: E402
    GradientBoostingClassifier, GradientBoostingRegressor, HistGradientBoostingClassifier,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.errors import ConversionError, MissingDependencyError  # noqa: E402
from converters import read_metadata  # noqa: E402
from converters.sklearn import from_sklearn, load_native  # noqa: E402

NUMERIC = ["alcohol", "malic_acid", "ash", "flavanoids", "proline"]
COLUMNS = NUMERIC + ["color_band"]


@pytest.fixture(scope="module")
def wine():
    """Five numeric wine features and one integer-coded categorical column (color intensity in 3 bands)."""
    data = load_wine(as_frame=True)
    frame = data.data[NUMERIC].astype(np.float32)
    frame["color_band"] = np.digitize(data.data["color_intensity"], [3.5, 6.0]).astype(np.float32)
    return frame, np.asarray(data.target_names)[data.target]


def scaled_one_hot(model):
    """StandardScaler on the numeric columns, OneHotEncoder on the categorical one, selected by index."""
    columns = ColumnTransformer([
        ("numeric", StandardScaler(), list(range(len(NUMERIC)))),
        ("category", OneHotEncoder(handle_unknown="ignore"), [len(NUMERIC)]),
    ])
    return make_pipeline(columns, model)


@pytest.fixture(scope="module")
def pipeline(wine):
    frame, target = wine
    return scaled_one_hot(GradientBoostingClassifier(n_estimators=30, max_depth=2, random_state=0)).fit(frame, target)


@pytest.fixture(scope="module")
def converted(pipeline, wine):
    return from_sklearn(pipeline, wine[0])


def test_pipeline_converts_with_parity_and_names(pipeline, converted, wine):
    parity = read_metadata(converted)["parity"]
    assert parity["max_abs"] <= 1e-4 and parity["n_rows"] == len(wine[0])
    model = ae.load(converted, providers="cpu")
    assert model.label_names == ("class_0", "class_1", "class_2") == tuple(pipeline.classes_)
    assert model.feature_names == tuple(COLUMNS) == tuple(pipeline.feature_names_in_)
    assert [spec.name for spec in model.outputs] == ["probabilities", "label"]
    assert model.output_spec().name == "probabilities" and model.outputs[0].shape == ("batch", 3)
    assert model.inputs[0].name == "input" and model.inputs[0].shape == ("batch", len(COLUMNS))
    rows = wine[0].to_numpy()[::17]
    np.testing.assert_allclose(model.predict(rows), pipeline.predict_proba(wine[0].iloc[::17]), atol=1e-5)


def test_kernel_shap_agrees_between_onnx_and_native(pipeline, converted, wine):
    frame = wine[0]
    x, background = frame.to_numpy()[[3, 70, 150]], frame.to_numpy()[::20]
    native = ae.CallableModel(lambda rows: pipeline.predict_proba(pd.DataFrame(rows, columns=COLUMNS)), batch_size=4096)
    target = pipeline.predict_proba(frame.iloc[[3, 70, 150]]).argmax(axis=1)
    ours = ae.KernelShap(converted, background=background).explain(x, target=target, random_state=0)
    theirs = ae.KernelShap(native, background=background).explain(x, target=target, random_state=0)
    assert np.abs(ours.values).max() > 0.05
    np.testing.assert_allclose(ours.values, theirs.values, atol=1e-5)
    assert ours.feature_names == tuple(COLUMNS)
    assert ours.label_names == ("class_0", "class_1", "class_2")
    assert ours.target_names == list(pipeline.classes_[target])


def test_columns_selected_by_name_and_hist_gradient_boosting(wine, tmp_path):
    frame, target = wine
    columns = ColumnTransformer([
        ("numeric", StandardScaler(), NUMERIC[:3]), ("category", OneHotEncoder(), ["color_band"]),
    ], remainder="passthrough")
    fitted = make_pipeline(columns, HistGradientBoostingClassifier(max_iter=15, random_state=0)).fit(frame, target)
    proto = from_sklearn(fitted, frame, path=tmp_path / "wine.onnx")
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    model = ae.load(tmp_path / "wine.onnx", providers="cpu")
    assert model.feature_names == tuple(COLUMNS) and model.label_names == tuple(fitted.classes_)


def test_regressor_has_one_output_and_given_names(wine):
    frame, target = wine
    x = frame.to_numpy()
    fitted = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(x, frame["proline"].to_numpy() / 100)
    names = [f"x{i}" for i in range(x.shape[1])]
    proto = from_sklearn(fitted, x, feature_names=names)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    model = ae.load(proto, providers="cpu")
    assert [spec.name for spec in model.outputs] == ["variable"] and model.label_names is None
    assert model.feature_names == tuple(names)
    np.testing.assert_allclose(model.predict(x[:5])[:, 0], fitted.predict(x[:5]), rtol=1e-5)


class Unconvertible(ClassifierMixin, BaseEstimator):
    def fit(self, x, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, x):
        return np.full((len(x), len(self.classes_)), 1 / len(self.classes_))


def test_unsupported_estimator_is_named(wine):
    fitted = make_pipeline(StandardScaler(), Unconvertible()).fit(*wine)
    with pytest.raises(ConversionError, match="Unconvertible.*supported_converters"):
        from_sklearn(fitted, wine[0])


def test_sample_errors(pipeline, wine):
    with pytest.raises(ConversionError, match=r"sample.*\(n_rows, 6\).*\(4, 5\)"):
        from_sklearn(pipeline, wine[0].to_numpy()[:4, :5])
    text = wine[0].assign(color_band="red")
    with pytest.raises(ConversionError, match="color_band.*not numeric"):
        from_sklearn(pipeline, text)
    with pytest.raises(ConversionError, match="not a fitted"):
        from_sklearn(make_pipeline(StandardScaler(), LogisticRegression()), wine[0])


def test_missing_framework(monkeypatch, pipeline, wine):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)
    with pytest.raises(MissingDependencyError, match=r"agnostic-explain\[sklearn\]"):
        from_sklearn(pipeline, wine[0])


def test_pickle_needs_allow_pickle(pipeline, wine, tmp_path):
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(pipeline, path)
    with pytest.raises(ConversionError, match="--allow-pickle"):
        load_native(path)
    with pytest.warns(UserWarning, match="arbitrary code"):
        loaded = load_native(path, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict(wine[0]), pipeline.predict(wine[0]))
    with pytest.raises(ConversionError, match=r"\.skops"):
        load_native(path.rename(tmp_path / "model.bin"))


def test_skops_trusts_only_with_allow_pickle(pipeline, wine, tmp_path):
    skops_io = pytest.importorskip("skops.io")
    trees = tmp_path / "trees.skops"
    skops_io.dump(pipeline, trees)
    with pytest.raises(ConversionError, match=r"sklearn\.tree\._tree\.Tree.*--allow-pickle"):
        load_native(trees)
    with pytest.warns(UserWarning, match="trusting"):
        loaded = load_native(trees, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict_proba(wine[0]), pipeline.predict_proba(wine[0]))

    linear = tmp_path / "linear.skops"
    fitted = make_pipeline(StandardScaler(), LogisticRegression()).fit(*wine)
    skops_io.dump(fitted, linear)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_native(linear)  # only default-trusted types: no flag, no warning
    assert read_metadata(from_sklearn(loaded, wine[0]))["parity"]["max_abs"] <= 1e-4
