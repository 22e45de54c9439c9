"""Every bad input gets the documented exception class and a message that says what was expected."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import agnostic_explain as ae
from agnostic_explain import errors
from agnostic_explain.errors import (
    InputDtypeError,
    InputError,
    InputShapeError,
    ModelLoadError,
    ModelNotFoundError,
    NonFiniteInputError,
    ParameterError,
    ProviderError,
    TargetError,
)

PACKAGE = Path(ae.__file__).resolve().parent


@pytest.fixture(scope="module")
def model(linear):
    return ae.load(linear.proto, providers="cpu")


@pytest.fixture
def x():
    return np.ones((2, 4), dtype=np.float32)


def test_the_tree_matches_the_documentation():
    assert issubclass(errors.ModelNotFoundError, errors.ModelLoadError)
    assert issubclass(errors.ModelNotFoundError, FileNotFoundError)
    for name in ("ModelLoadError", "InputError", "TargetError", "ParameterError"):
        assert issubclass(getattr(errors, name), ValueError), name
    for name in ("InputShapeError", "InputDtypeError", "NonFiniteInputError"):
        assert issubclass(getattr(errors, name), errors.InputError), name
    for name in ("ProviderError", "ModelExecutionError"):
        assert issubclass(getattr(errors, name), RuntimeError), name
    assert issubclass(errors.OutOfMemoryError, errors.ModelExecutionError)
    assert issubclass(errors.OutOfMemoryError, MemoryError)
    assert issubclass(errors.MissingDependencyError, ImportError)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.AgnosticExplainError), name


def test_require_names_the_install_hint():
    with pytest.raises(errors.MissingDependencyError, match=r"pip install 'agnostic-explain\[nothing\]'"):
        errors.require("no_such_module_for_agnostic_explain", "agnostic-explain[nothing]")
    assert errors.require("json", "json").dumps([]) == "[]"


# -- loading ------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    missing = tmp_path / "absent.onnx"
    with pytest.raises(ModelNotFoundError, match="absent.onnx") as raised:
        ae.load(missing)
    assert isinstance(raised.value, FileNotFoundError) and isinstance(raised.value, ValueError)


def test_text_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a protobuf, just some text\n" * 20)
    with pytest.raises(ModelLoadError, match="notes.onnx") as raised:
        ae.load(path)
    assert not isinstance(raised.value, ModelNotFoundError)


def test_bytes_that_are_not_onnx():
    with pytest.raises(ModelLoadError, match="not a serialized ONNX model"):
        ae.load(b"\xff\xfe garbage")


def test_model_of_the_wrong_type():
    with pytest.raises(ModelLoadError, match="got int"):
        ae.load(42)


def _undefined_input_model():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["never_defined"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_model_failing_the_onnx_checker(tmp_path):
    model = _undefined_input_model()
    with pytest.raises(ModelLoadError, match="ONNX checker.*never_defined"):
        ae.load(model)
    path = tmp_path / "broken.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelLoadError, match="ONNX checker.*never_defined"):
        ae.load(path)


def test_empty_graph():
    graph = helper.make_graph([], "empty", [], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ModelLoadError, match="empty"):
        ae.load(model)


# -- inputs -------------------------------------------------------------------------------------
def test_input_rank_mismatch(model):
    with pytest.raises(InputShapeError, match=r"'x' expects 2 dimensions \(N, 4\).*\(2, 4, 1\)"):
        model.predict(np.ones((2, 4, 1)))


def test_input_static_dim_mismatch(model):
    with pytest.raises(InputShapeError, match=r"'x' expects shape \(N, 4\).*axis 1 is 5, expected 4"):
        model.predict(np.ones((2, 5)))


def test_input_shape_errors_through_explain(model):
    with pytest.raises(InputShapeError, match=r"^x: input 'x'"):
        ae.Occlusion(model, window=(1,)).explain(np.ones((2, 5)), target=0)


def test_no_rows(model):
    with pytest.raises(InputShapeError, match="no rows"):
        model.predict(np.ones((0, 4)))


def test_fractional_floats_for_an_int64_input(tokens):
    token_model = ae.load(tokens.proto, providers="cpu")
    with pytest.raises(InputDtypeError, match="'ids' expects dtype int64, got float64"):
        token_model.predict(np.full((1, 6), 1.5))
    with pytest.raises(InputDtypeError, match="'ids'"):
        ae.Occlusion(token_model, window=(1,)).explain(np.full((1, 6), 2.25), target=0)


def test_int_values_out_of_range_for_the_input_dtype(make_onnx_model):
    graph_input = helper.make_tensor_value_info("small", TensorProto.INT8, ["N", 2])
    proto = make_onnx_model(
        [helper.make_node("Cast", ["small"], ["y"], to=TensorProto.FLOAT)],
        [graph_input],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    with pytest.raises(InputDtypeError, match="do not fit"):
        ae.load(proto, providers="cpu").predict(np.array([[1, 300]], dtype=np.int64))


def test_strings_for_a_float_input(model):
    with pytest.raises(InputDtypeError, match="expects dtype float32"):
        model.predict(np.array([["a", "b", "c", "d"]]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(model, x, bad):
    x[1, 2] = bad
    with pytest.raises(NonFiniteInputError, match="x: 1 value"):
        ae.Occlusion(model, window=(1,)).explain(x, target=0)


def test_missing_fixed_input(two_input, x):
    with pytest.raises(InputError, match=r"needs input 'z' \(N, 4\).*fixed_inputs=\{'z': array\}"):
        ae.load(two_input.proto, providers="cpu").predict(x)


def test_unknown_fixed_input(two_input, x):
    with pytest.raises(ParameterError, match=r"fixed_inputs: model has no inputs \['q'\]"):
        ae.load(two_input.proto, providers="cpu").predict(x, fixed_inputs={"z": x, "q": x})


def test_explained_input_also_in_fixed_inputs(two_input, x):
    with pytest.raises(ParameterError, match="'x' is the explained input"):
        ae.load(two_input.proto, providers="cpu").predict(x, fixed_inputs={"x": x, "z": x})


def test_fixed_input_with_the_wrong_number_of_rows(two_input, x):
    with pytest.raises(InputShapeError, match=r"fixed_inputs\['z'\].*3 rows; expected 1 .* or 2"):
        ae.load(two_input.proto, providers="cpu").predict(x, fixed_inputs={"z": np.ones((3, 4))})


def test_fixed_input_with_the_wrong_shape(two_input, x):
    with pytest.raises(InputShapeError, match=r"fixed_inputs\['z'\]"):
        ae.load(two_input.proto, providers="cpu").predict(x, fixed_inputs={"z": np.ones((2, 5))})


def test_unknown_explained_input(model, x):
    with pytest.raises(ParameterError, match=r"no input 'image'.*\['x'\]"):
        model.predict(x, input="image")


def test_run_with_a_missing_feed(two_input, x):
    with pytest.raises(InputError, match=r"missing inputs \['z'\]"):
        ae.load(two_input.proto, providers="cpu").run({"x": x})


# -- outputs and targets ------------------------------------------------------------------------
def test_bad_output_name(model, x):
    with pytest.raises(ParameterError, match=r"output: model has no output 'probabilities'; outputs are \['y'\]"):
        model.predict(x, output="probabilities")
    with pytest.raises(ParameterError, match="no output 'probabilities'"):
        ae.Occlusion(model, window=(1,)).explain(x, target=0, output="probabilities")


@pytest.mark.parametrize("index", [1, -1])
def test_bad_output_index(model, x, index):
    with pytest.raises(ParameterError, match=rf"output: index {index} is out of range; the model has 1 outputs"):
        model.predict(x, output=index)


def test_target_out_of_range(model, x):
    with pytest.raises(TargetError, match=r"target 3 is out of range for output 'y'.*valid: 0\.\.2") as raised:
        ae.Occlusion(model, window=(1,)).explain(x, target=3)
    assert isinstance(raised.value, ValueError)


# -- occlusion parameters -----------------------------------------------------------------------
def test_window_larger_than_the_input(model, x):
    with pytest.raises(ParameterError, match=r"window \(5,\) is larger than the input row \(4,\)"):
        ae.Occlusion(model, window=(5,)).explain(x, target=0)


@pytest.mark.parametrize("window", [(1, 1), (2, 2, 2)])
def test_window_of_the_wrong_rank(model, x, window):
    with pytest.raises(ParameterError, match=rf"window .* has {len(window)} entries.*1 axes"):
        ae.Occlusion(model, window=window).explain(x, target=0)


def test_int_window_on_a_multi_axis_row(image_nchw):
    with pytest.raises(ParameterError, match=r"window=2 is an int.*3 axes.*tuple of 3 ints"):
        ae.Occlusion(image_nchw.proto, window=2).explain(np.ones((1, 3, 8, 8)), target=0)


@pytest.mark.parametrize("window", [(0,), ("a",), None])
def test_window_that_is_not_positive_ints(model, x, window):
    with pytest.raises(ParameterError, match="window"):
        ae.Occlusion(model, window=window).explain(x, target=0)


def test_stride_larger_than_the_window(model, x):
    with pytest.raises(ParameterError, match=r"stride \(3,\) exceeds window \(2,\)"):
        ae.Occlusion(model, window=(2,), stride=(3,)).explain(x, target=0)


def test_bad_baseline_string(model, x):
    with pytest.raises(ParameterError, match=r"baseline must be a number, an array, 'mean' or 'blur', got 'zeros'"):
        ae.Occlusion(model, window=(1,), baseline="zeros").explain(x, target=0)


def test_non_broadcastable_baseline(model, x):
    with pytest.raises(ParameterError, match=r"baseline of shape \(3,\) cannot broadcast to one input row \(4,\) or to the rows \(2, 4\)"):
        ae.Occlusion(model, window=(1,), baseline=np.ones(3)).explain(x, target=0)
    with pytest.raises(ParameterError, match="baseline"):
        ae.Occlusion(model, window=(1,), baseline=np.ones((3, 4))).explain(x, target=0)


def test_non_numeric_baseline(model, x):
    with pytest.raises(ParameterError, match="baseline must be numeric"):
        ae.Occlusion(model, window=(1,), baseline=np.array(["a"] * 4)).explain(x, target=0)


def test_parameter_errors_come_before_any_model_call(x):
    calls = []

    def function(rows):
        calls.append(len(rows))
        return rows

    with pytest.raises(ParameterError):
        ae.Occlusion(function, window=(9,)).explain(x, target=0)
    assert calls == []


@pytest.mark.parametrize("transform", ["relu", "Softmax", 1])
def test_bad_output_transform(model, x, transform):
    with pytest.raises(ParameterError, match=r"output_transform must be one of \(None, 'softmax', 'sigmoid'\)"):
        ae.Occlusion(model, window=(1,)).explain(x, target=0, output_transform=transform)


# -- runtime parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [0, -3, "big", 2.5, True])
def test_bad_batch_size(linear, x, batch_size):
    with pytest.raises(ParameterError, match=rf"batch_size must be a positive int or 'auto', got {batch_size!r}"):
        ae.load(linear.proto, providers="cpu", batch_size=batch_size)
    model = ae.load(linear.proto, providers="cpu")
    with pytest.raises(ParameterError, match="batch_size must be a positive int"):
        model.predict(x, batch_size=batch_size)


@pytest.mark.parametrize("batch_size", [0, "auto", 1.5])
def test_bad_callable_batch_size(batch_size):
    with pytest.raises(ParameterError, match="batch_size must be a positive int"):
        ae.CallableModel(lambda rows: rows, batch_size=batch_size)


def test_callable_model_of_something_not_callable():
    with pytest.raises(ParameterError, match="function must be callable, got int"):
        ae.CallableModel(3)


@pytest.mark.parametrize("threads", [0, "two"])
def test_bad_threads(linear, threads):
    with pytest.raises(ParameterError, match="threads must be a positive int"):
        ae.load(linear.proto, providers="cpu", threads=threads)


@pytest.mark.parametrize("device_id", [-1, "0"])
def test_bad_device_id(linear, device_id):
    with pytest.raises(ParameterError, match="device_id must be a non-negative int"):
        ae.load(linear.proto, providers="cpu", device_id=device_id)


@pytest.mark.parametrize("providers", [[], 3, [("CPUExecutionProvider", "not options")]])
def test_malformed_providers(linear, providers):
    with pytest.raises(ParameterError, match="providers"):
        ae.load(linear.proto, providers=providers)


def test_unknown_provider(linear):
    with pytest.raises(ProviderError, match="'TPUExecutionProvider' is not available"):
        ae.load(linear.proto, providers="TPUExecutionProvider")


# -- the package itself -------------------------------------------------------------------------
def test_no_assert_statements_in_the_package():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offenders += [f"{path.relative_to(PACKAGE)}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    assert offenders == [], f"assert statements validate nothing under python -O: {offenders}"


#: bare built-in errors the package may raise, by module and enclosing function, with the reason
BARE_RAISES_ALLOWED = {
    "explanation.py:Explanation.__getitem__": "IndexError: the sequence protocol (a row index out of range)",
    "plot/tabular.py:row_index": "IndexError: a row out of range, as Explanation[index] raises it",
    "tables.py:NamedRows.__getitem__": "KeyError: the mapping protocol (no row of that name)",
    "jobs/sources.py:_header_shape": "ValueError: caught at once by its caller (READ_ERRORS) and recorded as an unreadable input",
    "jobs/reading.py:_read_table_chunk": "ValueError: caught at once by its caller (_DAMAGE) and raised as a JobError",
}
BARE = {"ValueError", "IndexError", "KeyError"}


def _bare_raises(tree: ast.AST) -> list[tuple[str, int]]:
    """(enclosing qualified name, line) of every ``raise ValueError/IndexError/KeyError``."""
    found = []

    def visit(node, names):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, names + [child.name])
                continue
            if isinstance(child, ast.Raise) and child.exc is not None:
                raised = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
                if isinstance(raised, ast.Name) and raised.id in BARE:
                    found.append((".".join(names) or "<module>", child.lineno))
            visit(child, names)

    visit(tree, [])
    return found


def test_no_bare_value_index_or_key_errors_escape_the_package():
    """Validation raises the library's own errors (they subclass ValueError etc. where that fits)."""
    offenders, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for where, line in _bare_raises(tree):
            key = f"{path.relative_to(PACKAGE).as_posix()}:{where}"
            if key in BARE_RAISES_ALLOWED:
                used.add(key)
            else:
                offenders.append(f"{key} (line {line})")
    assert offenders == [], f"raise an error from agnostic_explain.errors instead, or list it with a reason: {offenders}"
    assert used == set(BARE_RAISES_ALLOWED), f"allowed but no longer raised: {set(BARE_RAISES_ALLOWED) - used}"


def test_the_bare_raise_check_sees_nested_functions():
    tree = ast.parse("class A:\n    def f(self):\n        def g():\n            raise KeyError('x')\n")
    assert _bare_raises(tree) == [("A.f.g", 4)]
