"""One fuzz case through the library, and the worker loop that runs cases fed through a pipe.

A case is a dict: ``model`` (bytes), ``files`` (name -> bytes, written beside the model),
``mode`` ("path", "bytes" or "proto": how the model is handed to the library), ``seed`` and
``mutations`` (for the record). Its steps are ``load``, ``layers``, ``split`` and ``explain``
(Occlusion with a window of half of each side, one row). Each step ends "ok", in the name of a
library error class, or in "raw:<exception type>": the last is a finding.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

STEPS = ("load", "layers", "split", "explain")
MAX_ELEMENTS = 1 << 16  # the harness never builds a larger input itself


def run_case(case: dict, folder: Path) -> dict:
    """Run ``case`` with its files in ``folder`` (emptied first); returns per-step outcomes."""
    import numpy as np
    import onnx

    import agnostic_explain as ae
    from agnostic_explain.errors import AgnosticExplainError

    if case.get("self_test") == "crash":  # the harness's own check that a signal is caught
        os.kill(os.getpid(), 9)
    if case.get("self_test") == "hang":
        time.sleep(3600)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    path.write_bytes(case["model"])
    for name, data in case.get("files", {}).items():
        (folder / name).write_bytes(data)
    mode = case.get("mode", "path")
    given = case["model"] if mode == "bytes" else path
    if mode == "proto":
        try:
            given = onnx.load_from_string(case["model"])
        except Exception:
            given = case["model"]
    external = folder if (mode != "path" and case.get("files") and case.get("external_dir", True)) else None

    outcomes, errors = {}, {}

    def step(name, function):
        try:
            result = function()
            outcomes[name] = "ok"
            return result
        except AgnosticExplainError as error:
            outcomes[name] = type(error).__name__
        except BaseException as error:  # every other exception is the finding
            if isinstance(error, KeyboardInterrupt):
                raise
            outcomes[name] = f"raw:{type(error).__name__}"
            errors[name] = "".join(traceback.format_exception(error, limit=-6))[-3000:]
        return None

    model = step("load", lambda: ae.load(given, providers="cpu", threads=1, batch_size=8, external_data_dir=external))
    step("layers", lambda: ae.graph.layers(given))
    at = next((name for node in _nodes(given) for name in node.output if name), "y")
    step("split", lambda: ae.graph.split(given, at))
    if model is not None:
        def explain():
            feeds = {spec.name: _array(np, spec) for spec in model.inputs}
            spec = model.inputs[0]
            row = spec.row_shape() or ()
            window = tuple(max(1, math.ceil(size / 2)) for size in row) if row and all(
                isinstance(size, int) and size > 0 for size in row) else "auto"
            explainer = ae.Occlusion(model, window=window)
            rest = {name: value for name, value in feeds.items() if name != spec.name}
            return explainer.explain(feeds[spec.name], input=spec.name, fixed_inputs=rest or None)

        step("explain", explain)
    return {"outcomes": outcomes, "errors": errors}


def _nodes(given):
    import onnx

    if isinstance(given, onnx.ModelProto):
        return list(given.graph.node)
    try:
        proto = onnx.load_from_string(given) if isinstance(given, bytes) else onnx.load(str(given), load_external_data=False)
        return list(proto.graph.node)
    except Exception:
        return []


def _array(np, spec):
    """One row for input ``spec``: symbolic dims become 2, and no array over MAX_ELEMENTS is built."""
    shape = []
    for axis, size in enumerate(spec.shape or ()):
        if axis == spec.batch_axis:
            shape.append(1)
        else:
            shape.append(size if isinstance(size, int) and 0 <= size <= MAX_ELEMENTS else 2)
    if math.prod(shape) > MAX_ELEMENTS:
        shape = [min(size, 2) for size in shape]
    try:
        dtype = np.dtype(spec.dtype)
    except TypeError:
        dtype = np.dtype(np.float32)
    if dtype.kind == "f":
        return np.random.default_rng(0).random(shape).astype(dtype)
    if dtype.kind in "OUS":
        return np.full(shape, "a", dtype=object)
    return np.zeros(shape, dtype=dtype)


def serve(connection, memory_bytes: int | None, quiet: bool = True) -> None:
    """The worker loop: receive cases until ``None``, send back their outcomes."""
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    if quiet:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
    warnings.simplefilter("ignore")
    os.environ.setdefault("AGNOSTIC_EXPLAIN_CACHE_DIR", "off")
    root = Path(tempfile.mkdtemp(prefix="ae-fuzz-"))
    # The working directory holds decoy weight files: nothing may read them.
    work = root / "cwd"
    work.mkdir()
    for name in ("weights.bin", "w.bin", "missing.bin"):
        (work / name).write_bytes(os.urandom(4096))
    os.chdir(work)
    import agnostic_explain  # noqa: F401 - imported once, before the first case is timed

    try:
        while True:
            case = connection.recv()
            if case is None:
                break
            connection.send(run_case(case, root / "case"))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
