"""The graph commands of ``agnostic-explain``: ``layers`` (a Netron-like table), ``weights``,
``topology`` (a drawing) and ``split``."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ParameterError


def register(commands, common) -> None:
    """Add the graph subcommands to the ``agnostic-explain`` parser."""
    layers = commands.add_parser("layers", parents=[common], help="list a model's nodes with shapes and parameters")
    layers.add_argument("model", metavar="MODEL", help="an .onnx file")
    layers.add_argument("--json", action="store_true", help="print JSON instead of a table")
    layers.set_defaults(run=_layers)

    weights = commands.add_parser("weights", parents=[common], help="list a model's weights with statistics")
    weights.add_argument("model", metavar="MODEL", help="an .onnx file")
    weights.set_defaults(run=_weights)

    drawing = commands.add_parser("topology", parents=[common], help="draw the graph to an image file")
    drawing.add_argument("model", metavar="MODEL", help="an .onnx file")
    drawing.add_argument("--out", required=True, help="image file to write (.png, .svg, .pdf)")
    drawing.add_argument("--highlight", help="node or tensor name(s) to colour, comma-separated")
    drawing.set_defaults(run=_topology)

    split = commands.add_parser("split", parents=[common], help="cut a model in two at tensors: head.onnx, tail.onnx")
    split.add_argument("model", metavar="MODEL", help="an .onnx file")
    split.add_argument("--at", required=True, help="tensor name(s) to cut at, comma-separated")
    split.add_argument("--out", required=True, help="output folder (created)")
    split.set_defaults(run=_split)


def _layers(args) -> int:
    from ..graph import layers

    table = layers(args.model)
    if not args.json:
        print(table)
        return 0
    rows = [
        {
            "index": layer.index, "name": layer.name, "op_type": layer.op_type,
            "inputs": list(layer.inputs), "outputs": list(layer.outputs),
            "input_shapes": [_shape(shape) for shape in layer.input_shapes],
            "output_shapes": [_shape(shape) for shape in layer.output_shapes],
            "n_params": layer.n_params,
        }
        for layer in table
    ]
    print(json.dumps({"layers": rows, "n_params": table.n_params}, indent=2))
    return 0


def _weights(args) -> int:
    from ..graph import weights

    print(weights(args.model))
    return 0


def _topology(args) -> int:
    from matplotlib.figure import Figure

    from ..plot import topology

    formats = Figure().canvas.get_supported_filetypes()
    suffix = Path(args.out).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise ParameterError(f"--out: {args.out!r} needs an image suffix such as .png, .svg or .pdf; got {suffix!r}")
    highlight = [name.strip() for name in args.highlight.split(",")] if args.highlight else None
    axes = topology(args.model, highlight=highlight)
    axes.figure.savefig(args.out, dpi=110, bbox_inches="tight")
    print(f"wrote {args.out}")
    return 0


def _shape(shape):
    return None if shape is None else list(shape)


def _split(args) -> int:
    import onnx

    from ..graph import open_model, split

    names = [name.strip() for name in args.at.split(",") if name.strip()]
    if not names:
        raise ParameterError(f"--at: expected tensor names, got {args.at!r}")
    source = open_model(args.model)
    head, tail = split(source, names)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for label, part in (("head", head), ("tail", tail)):
        path = out / f"{label}.onnx"
        if source.has_external_data:
            # The parts name weight files relative to the original folder; write their own.
            onnx.external_data_helper.load_external_data_for_model(part, str(source.base_dir))
            onnx.save(part, str(path), save_as_external_data=True, location=f"{label}.onnx.data")
        else:
            onnx.save(part, str(path))
        inputs = ", ".join(value.name for value in part.graph.input)
        outputs = ", ".join(value.name for value in part.graph.output)
        print(f"wrote {path}: {len(part.graph.node)} nodes, inputs {inputs}; outputs {outputs}")
    return 0
