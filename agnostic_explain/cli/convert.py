"""``agnostic-explain convert``: a saved framework model to ONNX, with the parity check."""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import ParameterError
from .options import integer, number

#: --framework value -> (converter module, its from_* function)
FRAMEWORKS = {
    "torch": ("pytorch", "from_torch"),
    "keras": ("keras", "from_keras"),
    "tensorflow": ("tensorflow", "from_tensorflow"),
    "sklearn": ("sklearn", "from_sklearn"),
    "xgboost": ("xgboost", "from_xgboost"),
    "lightgbm": ("lightgbm", "from_lightgbm"),
}
#: file suffixes that name one framework (.json and .pkl could be several)
_SUFFIXES = {
    ".pt2": "torch", ".ts": "torch", ".keras": "keras", ".h5": "keras", ".skops": "sklearn",
    ".ubj": "xgboost", ".txt": "lightgbm",
}


def register(commands, common) -> None:
    """Add ``convert`` to the ``agnostic-explain`` parser."""
    convert = commands.add_parser(
        "convert", parents=[common], help="convert a saved framework model to ONNX, checking parity"
    )
    add = convert.add_argument
    add("source", metavar="SOURCE", help="TorchScript/.pt2, .keras, SavedModel folder, .skops, XGBoost .json/.ubj, "
                                          "LightGBM .txt")
    add("--framework", choices=sorted(FRAMEWORKS), help="the source's framework (default: from the file)")
    add("--sample", required=True, help="sample inputs for the parity check: .npy, or .npz (one array per input)")
    add("--out", required=True, help="the .onnx file to write")
    add("--class-names", help="class names, comma-separated (default: what the model knows)")
    add("--feature-names", help="feature names, comma-separated (default: what the model knows)")
    add("--opset", help="ONNX opset (default: the converter's)")
    add("--atol", default="1e-4", help="parity tolerance, absolute (default 1e-4)")
    add("--rtol", default="1e-4", help="parity tolerance, relative to the output's scale (default 1e-4)")
    add("--allow-pickle", action="store_true",
        help="also load pickle-based files (.pkl, .joblib, pickled modules): unpickling can run arbitrary code")
    convert.set_defaults(run=_convert)


def framework_of(source: Path, given: str | None) -> str:
    """The framework named by ``--framework`` or, failing that, by the source's form."""
    if given:
        return given
    if source.is_dir():
        return "tensorflow"
    found = _SUFFIXES.get(source.suffix.lower())
    if found is None:
        raise ParameterError(
            f"--framework: cannot tell the framework of {source.name!r} from its suffix; pass one of "
            f"{sorted(FRAMEWORKS)}"
        )
    return found


def _convert(args) -> int:
    from ..io import read_array

    source = Path(args.source)
    if not source.exists():
        raise ParameterError(f"SOURCE: no such file or folder {str(source)!r}")
    framework = framework_of(source, args.framework)
    module_name, function_name = FRAMEWORKS[framework]
    module = importlib.import_module(f"converters.{module_name}")
    sample = _read_sample(args.sample, read_array)
    native = module.load_native(source, allow_pickle=args.allow_pickle)
    options = {
        "path": args.out,
        "atol": number(args.atol, "--atol"),
        "rtol": number(args.rtol, "--rtol"),
    }
    if args.class_names:
        options["class_names"] = [name.strip() for name in args.class_names.split(",")]
    if args.feature_names:
        options["feature_names"] = [name.strip() for name in args.feature_names.split(",")]
    if args.opset:
        options["opset"] = integer(args.opset, "--opset")
    proto = getattr(module, function_name)(native, sample, **options)
    _report(proto, args.out, framework)
    return 0


def _read_sample(path: str, read_array):
    """One array, or a tuple of them (an .npz with one array per model input, in file order)."""
    import numpy as np

    if Path(path).suffix.lower() == ".npz":
        if not Path(path).is_file():
            return read_array(path)  # its error names the file
        with np.load(path, allow_pickle=False) as archive:
            arrays = [archive[name] for name in archive.files]
        return arrays[0] if len(arrays) == 1 else tuple(arrays)
    return read_array(path)


def _report(proto, out: str, framework: str) -> None:
    from converters.metadata import read_metadata

    found = read_metadata(proto)
    parity = found.get("parity") or {}
    inputs = ", ".join(value.name for value in proto.graph.input
                       if value.name not in {tensor.name for tensor in proto.graph.initializer})
    outputs = ", ".join(value.name for value in proto.graph.output)
    print(f"wrote {out}: {framework} {found.get('source_framework_version', '')}".rstrip())
    print(f"  inputs {inputs}; outputs {outputs}")
    print(
        f"  parity on {parity.get('n_rows', '?')} sample rows: max abs difference {parity.get('max_abs', 0):.3g}, "
        f"max relative {parity.get('max_rel', 0):.3g} (tolerance atol {parity.get('atol')}, rtol {parity.get('rtol')})"
    )
    for key, label in (("class_names", "classes"), ("feature_names", "features")):
        names = found.get(key)
        if names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            print(f"  {label}: {shown}")
