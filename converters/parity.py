"""The parity check every conversion ends with: ONNX Runtime against the source framework."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from agnostic_explain.errors import ConversionError, ParityError

__all__ = ["DEFAULT_ATOL", "DEFAULT_RTOL", "Parity", "check_parity"]

#: a converted model may differ from its source by this much (absolute, and relative to the
#: largest magnitude of the output): float32 kernels differ between frameworks
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4


@dataclass(frozen=True)
class Parity:
    """How closely ONNX Runtime reproduced the source framework on the sample.

    Attributes
    ----------
    max_abs : float
        The largest ``|onnx - source|`` over all compared outputs.
    max_rel : float
        The largest of ``max |onnx - source| / max |source|`` per output.
    outputs : dict of str to dict
        ``{"max_abs": ..., "max_rel": ..., "worst_index": [...]}`` per compared output.
    n_rows : int
        Sample rows compared.
    atol, rtol : float
        The tolerances: an output passes when its ``max_abs <= atol`` or ``max_rel <= rtol``.
    """

    max_abs: float
    max_rel: float
    outputs: dict
    n_rows: int
    atol: float
    rtol: float

    def as_dict(self) -> dict:
        return asdict(self)


def check_parity(proto, feeds: dict, expected: dict, *, atol=DEFAULT_ATOL, rtol=DEFAULT_RTOL, model=None) -> Parity:
    """Run ``proto`` on ONNX Runtime (CPU) and compare its outputs with the source's.

    Parameters
    ----------
    proto : onnx.ModelProto
    feeds : dict of str to ndarray
        The sample, by ONNX input name.
    expected : dict of str to ndarray
        The source framework's outputs on the same sample, by ONNX output name.
    atol, rtol : float
        Tolerances; see :class:`Parity`.
    model : OnnxModel, optional
        ``proto`` already loaded on the CPU, so that a converter opens one session only.

    Returns
    -------
    Parity

    Raises
    ------
    ParityError
        An output differs beyond both tolerances; the message names the output, the worst
        element and both values.
    """
    from agnostic_explain.runtime import load

    for name, value in (("atol", atol), ("rtol", rtol)):
        if not isinstance(value, (int, float)) or not value >= 0:
            raise ConversionError(f"{name} must be a non-negative number, got {value!r}")
    model = model if model is not None else load(proto, providers="cpu")
    names = list(expected)
    got = dict(zip(names, model.run(feeds, names)))
    rows = len(next(iter(feeds.values()))) if feeds else 0
    outputs, failures = {}, []
    for name in names:
        ours, theirs = np.asarray(got[name]), np.asarray(expected[name])
        if ours.shape != theirs.shape:
            if ours.size != theirs.size:
                raise ParityError(
                    f"parity: output {name!r} has shape {ours.shape} in ONNX Runtime but {theirs.shape} "
                    "in the source framework"
                )
            ours = ours.reshape(theirs.shape)
        difference = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
        if difference.size == 0:
            continue
        worst = np.unravel_index(int(np.argmax(difference)), difference.shape)
        max_abs = float(difference[worst])
        scale = float(np.abs(theirs).max())
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
        outputs[name] = {"max_abs": max_abs, "max_rel": max_rel, "worst_index": [int(i) for i in worst]}
        if max_abs > atol and max_rel > rtol:
            failures.append(
                f"output {name!r} element {tuple(int(i) for i in worst)}: ONNX Runtime gives "
                f"{float(ours[worst]):.7g}, the source {float(theirs[worst]):.7g} (max abs difference "
                f"{max_abs:.3g}, relative {max_rel:.3g})"
            )
    if failures:
        raise ParityError(
            f"parity: the converted model differs from the source beyond atol={atol:g} and rtol={rtol:g}: "
            + "; ".join(failures)
            + ". Check the sample is representative, try another opset, or loosen the tolerance."
        )
    return Parity(
        max_abs=max((entry["max_abs"] for entry in outputs.values()), default=0.0),
        max_rel=max((entry["max_rel"] for entry in outputs.values()), default=0.0),
        outputs=outputs, n_rows=rows, atol=float(atol), rtol=float(rtol),
    )
