"""``agnostic-explain explain`` offers every registered method, on images, tabular rows and token ids.

The methods come from the registry: a new one is covered here as soon as it is registered.
Parameters that take a data set get a ``--param NAME=@FILE.npy``; the test passes nothing else.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import onnx
import pytest
from conftest import build_linear, build_tokens

from agnostic_explain.cli import main
from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
from agnostic_explain.explainers.registry import explainers

#: settings a method cannot do without that are not data sets (LimeText's mask token)
SETTINGS = {"mask_token_id": 0}


def _run(capsys, *argv):
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _params(cls, data_file) -> list[str]:
    flags = []
    for name, parameter in list(inspect.signature(cls.__init__).parameters.items())[2:]:
        if parameter.default is not inspect.Parameter.empty and name not in SETTINGS:
            continue
        value = f"@{data_file}" if name in cls.data_params else json.dumps(SETTINGS[name])
        flags += ["--param", f"{name}={value}"]
    return flags


def _methods(kind, family="any"):
    return sorted(name.replace("_", "-") for name, cls in explainers().items()
                  if kind in cls.row_kinds and cls.model_family == family)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular")
    names = ["age", "dose", "weight", "height"]
    model = build_linear(metadata={"feature_names": json.dumps(names), "class_names": json.dumps(["a", "b", "c"])})
    onnx.save(model.proto, folder / "model.onnx")
    rows = np.random.default_rng(0).normal(size=(6, 4))
    # the header names the model's features in another order: columns are read by name
    order = [2, 0, 3, 1]
    lines = [",".join(names[i] for i in order)] + [",".join(f"{row[i]:.6f}" for i in order) for row in rows]
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    np.save(folder / "train.npy", np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32))
    return folder, model, rows.astype(np.float32)


@pytest.mark.parametrize("method", _methods("tabular"))
def test_every_tabular_method_explains_a_csv(capsys, tmp_path, tabular, method):
    folder, model, rows = tabular
    cls = explainers()[method.replace("-", "_")]
    out = tmp_path / "out"
    code, text, err = _run(capsys, "explain", folder / "model.onnx", folder / "rows.csv", "--method", method,
                           "--out", out, "--no-report", *_params(cls, folder / "train.npy"))
    assert code == 0, err
    saved = np.load(out / "explanation.npz")
    assert saved["values"].shape == (6, 4)
    np.testing.assert_allclose(saved["data"], rows, rtol=1e-5, atol=1e-6)  # columns put in the model's order
    assert (out / "bar.png").is_file() and (out / "waterfall.png").is_file() and not (out / "heatmap.png").exists()
    assert "6 rows" in text


def test_target_takes_a_class_name_and_a_wrong_one_lists_them(capsys, tmp_path, tabular):
    folder, model, rows = tabular
    code, text, err = _run(capsys, "explain", folder / "model.onnx", folder / "rows.csv", "--target", "b",
                           "--out", tmp_path / "named", "--no-report")
    assert code == 0, err
    assert np.load(tmp_path / "named" / "explanation.npz")["target"].tolist() == [1] * 6
    assert (tmp_path / "named" / "beeswarm.png").is_file()  # one target over all rows
    code, _, err = _run(capsys, "explain", folder / "model.onnx", folder / "rows.csv", "--target", "bee",
                        "--out", tmp_path / "wrong")
    assert code == 1 and "no class 'bee'" in err and "a, b, c" in err
    assert not (tmp_path / "wrong").exists()  # a failed run leaves no empty folder behind


def test_a_missing_data_parameter_says_which_param_to_pass(capsys, tmp_path, tabular):
    folder, _, _ = tabular
    code, _, err = _run(capsys, "explain", folder / "model.onnx", folder / "rows.csv", "--method", "lime-tabular",
                        "--out", tmp_path / "o")
    assert code == 1 and "--param training_data=@FILE.npy" in err


def test_a_misspelled_param_suggests_the_right_one(capsys, tmp_path):
    code, _, err = _run(capsys, "explain", DEFAULT_MODEL_PATH, _digit(tmp_path), "--method", "rise",
                        "--param", "n_mask=50", "--out", tmp_path / "o")
    assert code == 1 and "did you mean 'n_masks'?" in err


def _digit(folder):
    images, _ = load_samples()
    np.save(folder / "digit.npy", images[:2])
    return folder / "digit.npy"


@pytest.mark.parametrize("method", _methods("image"))
def test_every_image_method_explains_images(capsys, tmp_path, method):
    cls = explainers()[method.replace("-", "_")]
    images, _ = load_samples()
    np.save(tmp_path / "background.npy", images[2:7])
    code, text, err = _run(capsys, "explain", DEFAULT_MODEL_PATH, _digit(tmp_path), "--method", method,
                           "--out", tmp_path / "out", "--no-report", *_params(cls, tmp_path / "background.npy"))
    assert code == 0, err
    saved = np.load(tmp_path / "out" / "explanation.npz")
    assert len(saved["values"]) == 2 and np.isfinite(saved["values"]).all()
    if cls.values_like_rows:
        assert (tmp_path / "out" / "heatmap.png").is_file()


@pytest.mark.parametrize("method", _methods("tokens"))
def test_every_token_method_explains_token_ids(capsys, tmp_path, method):
    cls = explainers()[method.replace("-", "_")]
    case = build_tokens()
    onnx.save(case.proto, tmp_path / "text.onnx")
    ids = np.random.default_rng(0).integers(1, 10, size=(3, 6))
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "data.npy", ids)
    code, text, err = _run(capsys, "explain", tmp_path / "text.onnx", tmp_path / "ids.npy", "--method", method,
                           "--out", tmp_path / "out", "--no-report", *_params(cls, tmp_path / "data.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "out" / "explanation.npz")["values"].shape == (3, 6)
    assert (tmp_path / "out" / "tokens.html").is_file()


def test_a_parquet_table_and_a_npy_of_rows_explain_like_the_csv(capsys, tmp_path, tabular):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder, model, rows = tabular
    names = ["age", "dose", "weight", "height"]
    pq.write_table(pa.table({name: rows[:, i] for i, name in enumerate(names)}), tmp_path / "rows.parquet")
    np.save(tmp_path / "rows.npy", rows)
    results = {}
    for suffix in ("parquet", "npy", "csv"):
        source = folder / "rows.csv" if suffix == "csv" else tmp_path / f"rows.{suffix}"
        code, _, err = _run(capsys, "explain", folder / "model.onnx", source, "--target", "0",
                            "--out", tmp_path / suffix, "--no-report")
        assert code == 0, err
        results[suffix] = np.load(tmp_path / suffix / "explanation.npz")["values"]
        assert (tmp_path / suffix / "waterfall.png").is_file()
    np.testing.assert_allclose(results["parquet"], results["npy"], rtol=1e-6)
    np.testing.assert_allclose(results["csv"], results["npy"], rtol=1e-4, atol=1e-5)


def test_the_api_reads_inputs_as_the_command_line_does(tmp_path):
    import agnostic_explain as ae
    from PIL import Image

    pixels = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    model = ae.load(DEFAULT_MODEL_PATH)
    x = ae.read_input(tmp_path / "digit.png", model.input_spec(), scale=1 / 255)
    assert x.shape == (1, 1, 8, 8) and np.isclose(x.max(), 252 / 255)


@pytest.mark.parametrize("method", _methods("tabular", "trees"))
def test_every_tree_method_explains_a_csv_of_a_tree_ensemble(capsys, tmp_path, method):
    from sklearn.ensemble import GradientBoostingRegressor

    from converters.sklearn import from_sklearn

    rows = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    native = GradientBoostingRegressor(n_estimators=8, max_depth=3, random_state=0).fit(rows, rows[:, 0] * rows[:, 1])
    onnx.save(from_sklearn(native, rows[:10], feature_names=["a", "b", "c"]), tmp_path / "trees.onnx")
    (tmp_path / "rows.csv").write_text("a,b,c\n" + "\n".join(",".join(f"{v:.5f}" for v in row) for row in rows[:5]))
    np.save(tmp_path / "background.npy", rows[:20])
    cls = explainers()[method.replace("-", "_")]
    code, text, err = _run(capsys, "explain", tmp_path / "trees.onnx", tmp_path / "rows.csv", "--method", method,
                           "--out", tmp_path / "out", "--no-report", *_params(cls, tmp_path / "background.npy"))
    assert code == 0, err
    assert np.load(tmp_path / "out" / "explanation.npz")["values"].shape == (5, 3)
    assert (tmp_path / "out" / "waterfall.png").is_file()
    code, text, _ = _run(capsys, "inspect", tmp_path / "trees.onnx")
    assert code == 0 and "--method tree-shap: exact Shapley values" in text
    code, text, _ = _run(capsys, "explain", tmp_path / "trees.onnx", tmp_path / "rows.csv", "--method", "kernel-shap",
                         "--param", f"background=@{tmp_path / 'background.npy'}", "--out", tmp_path / "k", "--no-report")
    assert code == 0 and "hint: this model is a tree ensemble; --method tree-shap" in text

