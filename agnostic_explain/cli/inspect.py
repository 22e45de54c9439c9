"""``agnostic-explain inspect``: a model's inputs, outputs, graph facts, provenance and runtime."""

from __future__ import annotations

import json
from pathlib import Path

from .options import add_runtime_flags, load_model


def register(commands, common) -> None:
    """Add ``inspect`` to the ``agnostic-explain`` parser."""
    inspect = commands.add_parser("inspect", parents=[common], help="show a model's inputs, outputs and runtime")
    inspect.add_argument("model", metavar="MODEL", help="an .onnx file")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_runtime_flags(inspect)
    inspect.set_defaults(run=_inspect)


def _inspect(args) -> int:
    import onnxruntime as ort

    from ..runtime.providers import cuda_device_count

    model = load_model(args)
    proto = model.proto
    info = {
        "path": str(Path(args.model).resolve()),
        "producer": {"name": proto.producer_name, "version": proto.producer_version},
        "ir_version": proto.ir_version,
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in proto.opset_import},
        "node_count": len(proto.graph.node),
        "inputs": [_spec_dict(spec) for spec in model.inputs],
        "outputs": [_spec_dict(spec) for spec in model.outputs],
        "static_batch": model.static_batch,
        "metadata_keys": sorted(model.metadata),
        "class_names": list(model.label_names) if model.label_names else None,
        "feature_names": list(model.feature_names) if model.feature_names else None,
        "source_framework": model.metadata.get("source_framework"),
        "source_framework_version": model.metadata.get("source_framework_version"),
        "parity": _json_or_none(model.metadata.get("parity")),
        "providers_available": ort.get_available_providers(),
        "cuda_devices": cuda_device_count(),
        "providers": list(model.providers),
        "suggested_methods": suggested_methods(proto),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    producer = f"{proto.producer_name} {proto.producer_version}".strip() or "(not recorded)"
    opsets = ", ".join(f"{domain} {version}" for domain, version in info["opsets"].items())
    metadata = ", ".join(
        f"{key} ({len(model.label_names)} names)" if key == "class_names" and model.label_names else key
        for key in info["metadata_keys"]
    )
    lines = [
        ("model", info["path"]),
        ("producer", producer),
        ("opset", f"{opsets} (IR version {proto.ir_version})"),
        ("nodes", str(info["node_count"])),
        *_spec_lines("inputs", model.inputs),
        *_spec_lines("outputs", model.outputs),
        ("batch", f"static, {model.static_batch} (runs in padded batches)" if model.static_batch else "dynamic"),
        ("metadata", metadata or "(none)"),
        *_source_lines(model.metadata),
        ("providers", f"available {', '.join(info['providers_available'])}; {info['cuda_devices']} CUDA device(s)"),
        ("", f"session uses {', '.join(info['providers'])}"),
        *[("suggested", line) for line in _suggestion_lines(info["suggested_methods"])],
    ]
    for label, text in lines:
        print(f"{label:<10} {text}")
    return 0


def _json_or_none(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _source_lines(metadata: dict) -> list[tuple[str, str]]:
    """Where a converted model came from, and how closely it matched its source."""
    if "source_framework" not in metadata:
        return []
    source = f"{metadata['source_framework']} {metadata.get('source_framework_version', '')}".strip()
    parity = _json_or_none(metadata.get("parity"))
    if parity:
        source += (f"; parity max abs difference {parity.get('max_abs', 0):.3g}, "
                   f"relative {parity.get('max_rel', 0):.3g} on {parity.get('n_rows', '?')} rows")
    return [("source", source)]


def _spec_dict(spec) -> dict:
    return {"name": spec.name, "dtype": str(spec.dtype), "shape": list(spec.shape), "batch_axis": spec.batch_axis}


def _spec_lines(label: str, specs) -> list[tuple[str, str]]:
    width = max(len(spec.name) for spec in specs)
    return [(label if i == 0 else "", f"{s.name:<{width}}  {s.dtype}  {s.describe()}") for i, s in enumerate(specs)]


def suggested_methods(proto) -> list[str]:
    """Methods made for this kind of model: ``tree-shap`` for a tree ensemble (exact, no sampling)."""
    from ..graph.trees import TREE_OPS

    return ["tree-shap"] if any(node.op_type in TREE_OPS for node in proto.graph.node) else []


def _suggestion_lines(methods: list[str]) -> list[str]:
    return [f"--method {name}: exact Shapley values for this tree ensemble, no sampling" for name in methods]

