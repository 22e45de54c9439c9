"""converters.from_keras and converters.from_tensorflow: parity, names, layouts, explanations, loading.

TensorFlow takes seconds to import, so Keras and TensorFlow share this one module and its
module-scoped models.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.errors import ConversionError, MissingDependencyError, ModelNotFoundError  # noqa: E402

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
pytest.importorskip("tf2onnx")
if keras.backend.backend() != "tensorflow":
    pytest.skip("the Keras converter needs the TensorFlow backend", allow_module_level=True)

from converters import read_metadata  # noqa: E402
from converters.keras import from_keras  # noqa: E402
from converters.keras import load_native as load_keras  # noqa: E402
from converters.tensorflow import from_tensorflow  # noqa: E402
from converters.tensorflow import load_native as load_saved_model  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras's own

CLASSES = ["red", "green", "blue"]
FEATURES = ["f0", "f1", "f2", "f3", "f4"]


def keras_numpy(model):
    return lambda rows: model(rows, training=False).numpy()


@pytest.fixture(scope="module")
def cnn():
    """A channels-last CNN trained to tell which colour channel is brightest."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(96, 8, 8, 3)).astype(np.float32)
    labels = images.mean(axis=(1, 2)).argmax(axis=1)
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(len(CLASSES)),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, epochs=4, batch_size=32, verbose=0)
    return model, images


@pytest.fixture(scope="module")
def cnn_onnx(cnn):
    model, images = cnn
    return from_keras(model, images[:6], class_names=CLASSES, preprocessing={"scale": 1 / 255})


def test_keras_cnn_parity_layout_and_names(cnn_onnx):
    metadata = read_metadata(cnn_onnx)
    assert metadata["parity"]["max_abs"] <= 1e-4 and metadata["source_framework"] == "keras"
    assert [value.name for value in cnn_onnx.graph.input] == ["input"]
    assert [value.name for value in cnn_onnx.graph.output] == ["output"]
    loaded = ae.load(cnn_onnx)
    assert loaded.label_names == tuple(CLASSES)
    assert loaded.preprocessing == {"layout": "nhwc", "scale": 1 / 255}  # the layout from Keras, scale kept


@pytest.mark.parametrize("batch", [1, 7])
def test_keras_dynamic_batch(cnn, cnn_onnx, batch):
    model, images = cnn
    rows = images[20:20 + batch]
    np.testing.assert_allclose(ae.load(cnn_onnx).predict(rows), keras_numpy(model)(rows), atol=1e-5)


def test_keras_occlusion_agrees_with_native(cnn, cnn_onnx):
    model, images = cnn
    explained = images[:2]
    onnx_explanation = ae.Occlusion(cnn_onnx, window=(2, 2, 3)).explain(explained, target="predicted")
    native = ae.CallableModel(keras_numpy(model), label_names=CLASSES)
    native_explanation = ae.Occlusion(native, window=(2, 2, 3)).explain(explained, target="predicted")
    np.testing.assert_array_equal(onnx_explanation.target, native_explanation.target)
    np.testing.assert_allclose(onnx_explanation.values, native_explanation.values, atol=1e-5)
    assert np.abs(onnx_explanation.values).max() > 1e-3
    assert onnx_explanation.label_names == tuple(CLASSES)
    assert onnx_explanation.preprocessing["layout"] == "nhwc"


def test_keras_two_inputs_two_outputs_keep_their_order():
    keras.utils.set_random_seed(1)
    first, second = keras.Input((6,)), keras.Input((2,))
    joined = keras.layers.Concatenate()([keras.layers.Dense(4)(first), second])
    model = keras.Model([first, second], [keras.layers.Dense(3)(joined), keras.layers.Dense(1)(joined)])
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 6)), rng.normal(size=(4, 2))  # float64: cast to the model's float32
    proto = from_keras(model, (a, b), input_names=["wide", "narrow"], output_names=["scores", "value"])
    assert [value.name for value in proto.graph.input] == ["wide", "narrow"]
    assert [value.name for value in proto.graph.output] == ["scores", "value"]
    assert {value.type.tensor_type.shape.dim[0].dim_param for value in proto.graph.output} == {"batch"}
    scores, value = ae.load(proto).run({"wide": a[:3].astype(np.float32), "narrow": b[:3].astype(np.float32)})
    expected = model([a[:3], b[:3]], training=False)
    np.testing.assert_allclose(scores, expected[0], atol=1e-5)
    np.testing.assert_allclose(value, expected[1], atol=1e-5)


class LogGamma(keras.layers.Layer):
    def call(self, x):
        return tf.math.lgamma(x)


def test_keras_unsupported_layer_is_named():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), LogGamma(name="log_gamma")])
    with pytest.raises(ConversionError, match=r"'Lgamma'.*layer 'log_gamma' \(LogGamma\).*opset"):
        from_keras(model, np.ones((2, 4), np.float32))


def test_keras_sample_that_does_not_fit(cnn):
    model, images = cnn
    with pytest.raises(ConversionError, match=r"sample: input 0 has shape \(2, 8, 8, 2\).*\(None, 8, 8, 3\)"):
        from_keras(model, images[:2, :, :, :2])
    with pytest.raises(ConversionError, match="2 arrays for a model with 1 inputs"):
        from_keras(model, (images[:2], images[:2]))


def test_keras_static_batch_when_asked(cnn):
    model, images = cnn
    proto = from_keras(model, images[:3], dynamic_batch=False)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 3


def test_keras_load_native(cnn, tmp_path):
    model, images = cnn
    for name in ("cnn.keras", "cnn.h5"):
        model.save(str(tmp_path / name))
        loaded = load_keras(tmp_path / name)
        np.testing.assert_allclose(keras_numpy(loaded)(images[:3]), keras_numpy(model)(images[:3]), atol=1e-6)
    with pytest.raises(ConversionError, match="SavedModel"):
        load_keras(tmp_path)
    with pytest.raises(ModelNotFoundError):
        load_keras(tmp_path / "absent.keras")


def test_keras_lambda_layer_needs_consent(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2.0)])
    path = tmp_path / "lambda.keras"
    model.save(str(path))
    with pytest.raises(ConversionError, match="allow-pickle"):
        load_keras(path)
    with pytest.warns(UserWarning, match="arbitrary code"):
        loaded = load_keras(path, allow_pickle=True)
    np.testing.assert_allclose(keras_numpy(loaded)(np.ones((2, 3), np.float32)), 2.0)


# -- TensorFlow ------------------------------------------------------------------------------


class Scorer(tf.Module):
    """A linear scorer with two named outputs, trained by a few gradient steps."""

    def __init__(self, rng):
        super().__init__()
        self.weights = tf.Variable(rng.normal(size=(len(FEATURES), len(CLASSES))).astype(np.float32) * 0.1)
        self.bias = tf.Variable(np.zeros(len(CLASSES), np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, len(FEATURES)], tf.float32, name="features")])
    def __call__(self, features):
        logits = tf.matmul(features, self.weights) + self.bias
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(64, len(FEATURES))).astype(np.float32)
    labels = np.digitize(rows[:, 0] - rows[:, 3], [-0.5, 0.5])
    scorer = Scorer(rng)
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, scorer(rows)["logits"]))
        for variable, gradient in zip([scorer.weights, scorer.bias], tape.gradient(loss, [scorer.weights, scorer.bias])):
            variable.assign_sub(0.5 * gradient)
    folder = tmp_path_factory.mktemp("saved") / "scorer"
    tf.saved_model.save(scorer, str(folder))
    return folder, rows, scorer


def test_saved_model_parity_names_and_batch(saved_model):
    folder, rows, _ = saved_model
    proto = from_tensorflow(folder, rows[:8].astype(np.float64), class_names=CLASSES, feature_names=FEATURES)
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    assert [value.name for value in proto.graph.input] == ["features"]
    assert [value.name for value in proto.graph.output] == ["logits", "probabilities"]
    loaded = ae.load(proto)
    assert loaded.label_names == tuple(CLASSES) and loaded.feature_names == tuple(FEATURES)
    signature = load_saved_model(folder).signatures["serving_default"]
    for batch in (1, 7):
        expected = signature(features=tf.constant(rows[10:10 + batch]))
        got = loaded.run({"features": rows[10:10 + batch]})
        np.testing.assert_allclose(got[0], expected["logits"], atol=1e-5)
        np.testing.assert_allclose(got[1], expected["probabilities"], atol=1e-6)


def test_module_before_saving_matches_the_saved_model(saved_model):
    folder, rows, scorer = saved_model
    from_module = ae.load(from_tensorflow(scorer, rows[:4])).run({"features": rows[:3]})
    from_folder = ae.load(from_tensorflow(folder, rows[:4])).run({"features": rows[:3]})
    np.testing.assert_allclose(from_module[0], from_folder[0], atol=1e-6)
    np.testing.assert_allclose(from_module[0], scorer(rows[:3])["logits"], atol=1e-5)


def test_saved_model_ablation_agrees_with_native(saved_model):
    folder, rows, _ = saved_model
    proto = from_tensorflow(folder, rows[:8], class_names=CLASSES, feature_names=FEATURES)
    signature = load_saved_model(folder).signatures["serving_default"]
    native = ae.CallableModel(lambda x: signature(features=tf.constant(x))["logits"].numpy(),
                              label_names=CLASSES, feature_names=FEATURES)
    onnx_explanation = ae.FeatureAblation(proto).explain(rows[:4], target=0, output="logits")
    native_explanation = ae.FeatureAblation(native).explain(rows[:4], target=0)
    np.testing.assert_allclose(onnx_explanation.values, native_explanation.values, atol=1e-5)
    assert np.abs(onnx_explanation.values).max() > 1e-2
    assert onnx_explanation.feature_names == tuple(FEATURES)
    assert onnx_explanation.label_names == tuple(CLASSES)


def test_keras_export_saved_model(cnn, tmp_path):
    model, images = cnn
    folder = tmp_path / "exported"
    model.export(str(folder), verbose=False)
    proto = from_tensorflow(str(folder), images[:5], input_names=["image"], output_names=["logits"])
    assert read_metadata(proto)["parity"]["max_abs"] <= 1e-4
    np.testing.assert_allclose(ae.load(proto).predict(images[30:37]), keras_numpy(model)(images[30:37]), atol=1e-5)


def test_tf_function_traced_on_the_sample():
    function = tf.function(lambda a, b: (a * 2.0, tf.reduce_sum(b, axis=1)))
    a, b = np.ones((3, 2), np.float32), np.arange(12, dtype=np.float32).reshape(3, 4)
    proto = from_tensorflow(function, (a, b))
    assert [value.name for value in proto.graph.input] == ["input_0", "input_1"]
    doubled, sums = ae.load(proto).run({"input_0": a[:1], "input_1": b[:1]})
    np.testing.assert_allclose(doubled, 2.0 * a[:1])
    np.testing.assert_allclose(sums, b[:1].sum(axis=1))


def test_tensorflow_errors(saved_model, cnn, tmp_path):
    folder, rows, _ = saved_model
    with pytest.raises(ConversionError, match=r"no signature 'predict'.*serving_default"):
        from_tensorflow(folder, rows[:2], signature="predict")
    with pytest.raises(ConversionError, match=r"sample: input 'features' has shape \(2, 4\)"):
        from_tensorflow(folder, rows[:2, :4])
    with pytest.raises(ConversionError, match="from_keras"):
        from_tensorflow(cnn[0], cnn[1][:2])
    with pytest.raises(ConversionError, match="'Lgamma'"):
        from_tensorflow(tf.function(lambda x: tf.math.lgamma(x)), np.ones((2, 3), np.float32))
    with pytest.raises(ConversionError, match="saved_model.pb"):
        load_saved_model(tmp_path)
    with pytest.raises(ModelNotFoundError):
        load_saved_model(tmp_path / "absent")


def test_missing_frameworks(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(MissingDependencyError, match=r"agnostic-explain\[tensorflow\]"):
        from_tensorflow("anything", np.zeros((1, 2)))
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "keras", None)
    with pytest.raises(MissingDependencyError, match=r"agnostic-explain\[keras\]"):
        from_keras(object(), np.zeros((1, 2)))
