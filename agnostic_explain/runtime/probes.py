"""Probes that run a model to learn what its graph does not say: the types of tensors that
shape inference misses. The graph layer asks for them through
:func:`agnostic_explain.graph.inspect.use_type_filler`; it never runs a model itself.
"""

from __future__ import annotations

import math

import numpy as np
import onnx

from ..errors import ModelExecutionError
from ..graph.expose import with_outputs
from ..graph.source import ModelSource
from .session import input_specs, open_session

__all__ = ["fill_types"]

#: the most a made-up sample input may take; past it the caller is asked for ``sample=``
SAMPLE_BYTES = 256 << 20


def fill_types(source: ModelSource, names: list[str], sample) -> dict[str, tuple]:
    """Dtype and shape of ``names`` from one run of the model with them exposed."""
    # Outputs without dtype and rank fail the ONNX checker; ONNX Runtime infers them, so the
    # exposed copy runs on a bare session (one session, no checker).
    exposed = with_outputs(source.proto, [onnx.helper.make_empty_tensor_value_info(name) for name in names])
    session = open_session(exposed, providers=["CPUExecutionProvider"], external_data_dir=source.base_dir)
    specs = input_specs(session)
    feeds = _sample_feeds(specs, sample)
    batch = len(next(iter(feeds.values())))
    symbol = next((spec.shape[spec.batch_axis] for spec in specs if spec.batch_axis is not None), None)
    try:
        values = session.run(names, feeds)
    except Exception as error:
        raise ModelExecutionError(
            f"sample: the run that finds the shapes of {names} (which shape inference misses) failed; "
            f"pass sample= inputs the model accepts ({error})"
        ) from error
    result = {}
    for name, value in zip(names, values):
        shape = tuple(value.shape)
        if isinstance(symbol, str) and shape and shape[0] == batch:
            shape = (symbol,) + shape[1:]
        result[name] = (value.dtype, shape)
    return result


def _sample_feeds(specs, sample) -> dict:
    if isinstance(sample, dict):
        return {name: np.asarray(value) for name, value in sample.items()}
    generator = np.random.default_rng(0)
    feeds = {}
    rows = 2
    for index, spec in enumerate(specs):
        if index == 0 and sample is not None:
            feeds[spec.name] = np.asarray(sample, dtype=spec.dtype)
            rows = feeds[spec.name].shape[spec.batch_axis] if spec.batch_axis is not None else rows
            continue
        shape = [rows if axis == spec.batch_axis else (dim if isinstance(dim, int) else 1) for axis, dim in enumerate(spec.shape)]
        size = math.prod(shape) * spec.dtype.itemsize
        if size > SAMPLE_BYTES:
            raise ModelExecutionError(
                f"sample: a made-up input {spec.name!r} of shape {tuple(shape)} would take {size / 2**20:.0f} MiB, "
                f"over {SAMPLE_BYTES >> 20} MiB; pass sample= inputs to find the shapes shape inference misses"
            )
        feeds[spec.name] = (generator.random(shape, dtype=np.float32).astype(spec.dtype, copy=False)
                            if np.issubdtype(spec.dtype, np.floating) else np.zeros(shape, spec.dtype))
    return feeds
