"""Flag values that several commands take, parsed one way: numbers, lists, targets, method
parameters, and the runtime flags that load a model."""

from __future__ import annotations

import argparse
import json

from ..errors import ParameterError

__all__ = [
    "add_runtime_flags", "baseline", "integer", "load_model", "method_params", "number", "numbers", "param",
    "target",
]


def integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"{flag}: expected an integer, got {text!r}") from None


def number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"{flag}: expected a number, got {text!r}") from None


def numbers(text: str, flag: str, kind, count: int | None = None) -> tuple:
    try:
        values = tuple(kind(item) for item in text.split(","))
    except ValueError:
        raise ParameterError(f"{flag}: expected comma-separated {kind.__name__}s such as 1,2,2, got {text!r}") from None
    if count is not None and len(values) != count:
        raise ParameterError(f"{flag}: expected {count} values, got {text!r}")
    return values


def baseline(text: str):
    return text if text in ("mean", "blur") else number(text, "--baseline")


def target(text: str):
    """'predicted', one class index, or one per row (``3,5``)."""
    if text == "predicted":
        return text
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        raise ParameterError(f"--target: expected 'predicted' or class indices such as 3 or 3,5, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def param(item: str) -> tuple[str, object]:
    """One ``--param KEY=VALUE``: a JSON value, ``@FILE`` for an array file, else the bare word."""
    key, separator, text = item.partition("=")
    if not separator or not key:
        raise ParameterError(f"--param: expected KEY=VALUE such as window=[1,2,2], got {item!r}")
    if text.startswith("@"):
        from ..io import read_array

        return key, read_array(text[1:])
    try:
        return key, json.loads(text)
    except ValueError:
        return key, text  # a bare word, such as a segmentation name


def method_params(items: list[str]) -> dict:
    """Every ``--param`` of a command, as a dict; a key given twice is refused."""
    found = {}
    for item in items:
        key, value = param(item)
        if key in found:
            raise ParameterError(f"--param: {key!r} is given twice")
        found[key] = value
    return found


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--provider", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--device-id", default="0", help="CUDA device ordinal, or several (0,1) to shard across")
    parser.add_argument("--batch-size", default="auto", help="rows per model call, or auto")
    parser.add_argument("--fuse", choices=["auto", "on", "off"], default="auto",
                        help="compose perturbations inside the graph (auto: on CUDA)")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32", help="fp16 runs a half-precision copy")
    parser.add_argument("--cuda-graph", action="store_true", help="capture and replay CUDA graphs")
    parser.add_argument("--batch-axis", action="append", default=[], metavar="INPUT=AXIS",
                        help="the batch axis of an input whose batch the model does not show (AXIS or none)")


def load_model(args):
    """The model of ``args.model`` with the runtime flags of :func:`add_runtime_flags`."""
    from ..runtime import load

    ids = [integer(part, "--device-id") for part in args.device_id.split(",")]
    return load(
        args.model,
        providers=args.provider,
        device_id=ids[0] if len(ids) == 1 else ids,
        batch_size="auto" if args.batch_size == "auto" else integer(args.batch_size, "--batch-size"),
        fuse={"auto": "auto", "on": True, "off": False}[args.fuse],
        precision=args.precision,
        cuda_graph=args.cuda_graph,
        batch_axes=batch_axes(args.batch_axis) or None,
    )


def batch_axes(items: list[str]) -> dict:
    """``--batch-axis state=1`` (or ``state=none``) flags as ``load``'s ``batch_axes``."""
    found = {}
    for item in items:
        name, separator, text = item.partition("=")
        if not separator or not name:
            raise ParameterError(f"--batch-axis: expected INPUT=AXIS such as state=1, got {item!r}")
        found[name] = None if text.lower() == "none" else integer(text, "--batch-axis")
    return found
