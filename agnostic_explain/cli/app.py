"""The ``agnostic-explain`` command: inspect a model, explain an input file, run the demo.

Errors the user can fix (a missing file, a bad flag value, an input that does not fit the
model) print one line, ``agnostic-explain: error: ...``, and exit with status 1; argparse
usage errors exit with 2. ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import AgnosticExplainError, ParameterError
from ..explainers.registry import build, explainer_class, method_names
from .inspect import register as register_inspect
from .inspect import suggested_methods
from .options import add_runtime_flags, baseline, load_model, method_params, number, numbers, target

PROG = "agnostic-explain"
_MAX_PANELS = 16  # heatmap.png shows at most this many rows
#: methods that estimate what TreeShap computes exactly on a tree ensemble
_SAMPLED = ("kernel-shap", "shapley-sampling", "lime-tabular", "feature-ablation", "occlusion")
#: flags that are shortcuts for a method parameter (--window 1,2,2 is --param window=[1,2,2])
_SHORTCUTS = ("window", "stride", "baseline", "layer")


def main(argv=None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if isinstance(getattr(args, "out", None), str) and not args.out.strip():
            # Path("") is the working directory: every command would write its files there.
            raise ParameterError("--out: expected a file or folder name, got an empty string")
        return args.run(args)
    except BrokenPipeError:  # the reader left (`layers | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (AgnosticExplainError, OSError) as error:
        if args.verbose:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    parser = argparse.ArgumentParser(prog=PROG, description="Explain any model through its ONNX export.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--verbose", action="store_true", default=False, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    register_inspect(commands, common)

    explain = commands.add_parser("explain", parents=[common], help="explain an input file (.npy, .npz, image)")
    explain.add_argument("model", metavar="MODEL", help="an .onnx file")
    explain.add_argument("input_file", metavar="INPUT", help=".npy, .npz, or an image (png, jpg, ...)")
    methods = method_names()
    explain.add_argument("--method", choices=methods, default="occlusion", metavar="METHOD",
                         help=f"attribution method (default occlusion): {', '.join(methods)}")
    explain.add_argument("--out", required=True, help="output folder (created)")
    add = explain.add_argument
    add("--target", default="predicted", help="class index, one per row (3,5), or 'predicted' (default)")
    add("--param", action="append", default=[], metavar="KEY=VALUE",
        help="a method parameter: a JSON value, or @FILE.npy for an array (e.g. --param background=@bg.npy)")
    add("--window", help="occlusion window per row axis, e.g. 1,2,2 (default: about 1/8 of each side)")
    add("--stride", help="step per axis (default: the window)")
    add("--baseline", help="0, mean, blur or any number (default 0)")
    add("--layer", help="layer methods: the layer's tensor name (default: chosen automatically)")
    add("--input", dest="input_name", metavar="NAME", help="the explained input of a multi-input model")
    add("--output", metavar="NAME_OR_INDEX", help="the explained output (default: first floating one)")
    add("--output-transform", choices=["softmax", "sigmoid"], help="explain probabilities, not raw outputs")
    add("--fixed", action="append", default=[], metavar="NAME=FILE.npy", help="another input, held fixed")
    add("--key", help="array name inside an .npz (default: the model input's name, else the first)")
    add("--resize", metavar="H,W", help="image size (default: the model's static size)")
    add("--scale", help="multiply pixels by this first (images: 1/255 unless the model's metadata says)")
    add("--mean", metavar="A,B,C", help="per-channel mean subtracted after scaling")
    add("--std", metavar="A,B,C", help="per-channel std divided by after the mean")
    add("--layout", choices=["nchw", "nhwc"], help="image layout the model wants (default: from its shape)")
    add("--no-report", action="store_true", help="do not write report.html (the HTML report)")
    add_runtime_flags(explain)
    explain.set_defaults(run=_explain)

    from .convert import register as register_convert
    from .graph import register
    from .jobs import register as register_jobs

    register(commands, common)
    register_convert(commands, common)
    register_jobs(commands, common)

    demo = commands.add_parser("demo", parents=[common], help="explain samples with the embedded digits CNN")
    demo.add_argument("--out", default="demo-output", help="output folder (default: demo-output)")
    demo.set_defaults(run=_demo)
    return parser


# -- explain ----------------------------------------------------------------------------
def _explain(args) -> int:
    out = Path(args.out)
    if not args.out.strip():
        raise ParameterError("--out: expected a folder name, got an empty string")
    existed = out.exists()
    out.mkdir(parents=True, exist_ok=True)  # fail before the work, not after
    try:
        return _explain_into(args, out)
    except BaseException:
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed run leaves no empty folder behind
        raise


def _explain_into(args, out: Path) -> int:
    from ..io import TABLES, read_array, read_input, read_table
    from ..layout import infer_layout

    model = load_model(args)
    spec = model.input_spec(args.input_name)
    defaults = dict(model.preprocessing or {})
    is_array = Path(args.input_file).suffix.lower() in (".npy", ".npz")
    layout = args.layout or defaults.get("layout") or infer_layout(spec.row_shape())
    given = {name: getattr(args, name) for name in ("scale", "mean", "std")}
    settings = {
        "scale": number(given["scale"], "--scale") if given["scale"] else None,
        "mean": numbers(given["mean"], "--mean", float) if given["mean"] else None,
        "std": numbers(given["std"], "--std", float) if given["std"] else None,
    }
    if not is_array:  # arrays are model-ready unless flags say otherwise; images get the model's defaults
        settings = {name: defaults.get(name) if value is None else value for name, value in settings.items()}
        # The metadata's scale describes the training data's raw range (0..16 for the digits);
        # image files are 8-bit.
        settings["scale"] = settings["scale"] if given["scale"] else 1 / 255
    feature_names = None
    if Path(args.input_file).suffix.lower() in TABLES:
        x, feature_names = read_table(args.input_file, spec, feature_names=model.feature_names)
    else:
        x = read_input(
            args.input_file, spec, key=args.key, layout=layout if layout in ("nchw", "nhwc") else None,
            resize=numbers(args.resize, "--resize", int, count=2) if args.resize else None, **settings,
        )
    fixed = {}
    for item in args.fixed:
        name, separator, file = item.partition("=")
        if not separator or not name or not file:
            raise ParameterError(f"--fixed: expected NAME=FILE.npy, got {item!r}")
        fixed[name] = read_array(file, prefer=name)
    params = _method_params(args)
    if args.method in _SAMPLED and "tree-shap" in suggested_methods(model.proto):
        print(f"hint: this model is a tree ensemble; --method tree-shap gives exact Shapley values, faster than {args.method}")
    explainer = build(args.method, model, params, parameter="--param")
    explanation = explainer.explain(
        x,
        target=_class_target(args.target, model.label_names),
        output=int(args.output) if args.output and args.output.isdigit() else args.output,
        input=args.input_name,
        fixed_inputs=fixed or None,
        output_transform=args.output_transform,
    )
    if "window" in explanation.params and explanation.method == "occlusion":
        window = tuple(explanation.params["window"]) if np.ndim(explanation.params["window"]) else (explanation.params["window"],)
        stride = tuple(explanation.params["stride"]) if explanation.params.get("stride") else window
        print(f"window {window}, stride {stride}{'' if 'window' in params else ' (default)'}")
    if "layer" in explanation.params:
        how = " (chosen automatically)" if explanation.params.get("layer_chosen_automatically") else ""
        print(f"layer {explanation.params['layer']}{how}")
    display = {"layout": layout, **{name: settings[name] or defaults.get(name) for name in ("mean", "std")}}
    explanation = replace(explanation, preprocessing={**defaults, **display})
    if feature_names is not None:
        explanation = replace(explanation, feature_names=feature_names, preprocessing=None)
    written = _write(explanation, out, report=not args.no_report, model=model)
    if explanation.target is None:
        labels = ["custom"]
    else:
        labels = explanation.target_names or [str(np.asarray(target).tolist()) for target in explanation.target]
    bases = [f"{value:.4g}" for value in explanation.base_values]
    print("\n".join(written))
    print(
        f"{explanation.method}: {_count(len(explanation), 'row')}, target {_listing(labels)}, base value {_listing(bases)}, "
        f"{explanation.n_evals} evaluations in {explanation.seconds:.2f} s on {', '.join(explanation.providers)}"
    )
    return 0


def _class_target(text: str, label_names):
    """``--target``: 'predicted', class indices, or class names from the model's metadata."""
    try:
        return target(text)
    except ParameterError:
        if not label_names:
            raise
    names = [item.strip() for item in text.split(",")]
    unknown = [name for name in names if name not in label_names]
    if unknown:
        shown = ", ".join(label_names[:12]) + (", ..." if len(label_names) > 12 else "")
        raise ParameterError(f"--target: the model has no class {unknown[0]!r}; its classes are {shown}") from None
    indices = [label_names.index(name) for name in names]
    return indices[0] if len(indices) == 1 else indices


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _method_params(args) -> dict:
    """The ``--param`` values of ``--method``, with the shortcut flags folded in."""
    params = method_params(args.param)
    shortcuts = {
        "window": lambda text: numbers(text, "--window", int),
        "stride": lambda text: numbers(text, "--stride", int),
        "baseline": baseline,
        "layer": str,
    }
    for flag, parse in shortcuts.items():
        text = getattr(args, flag)
        if text is None:
            continue
        if flag in params:
            raise ParameterError(f"--{flag}: given twice, as --{flag} and as --param {flag}=...")
        if flag not in _accepted(args.method):
            raise ParameterError(f"--{flag}: only {_takers(flag)} take it, not {args.method}")
        params[flag] = parse(text)
    return params


def _takers(flag: str) -> str:
    """The methods whose constructor takes parameter ``flag``, as a phrase."""
    names = [name for name in method_names() if flag in _accepted(name)]
    if flag == "layer":
        return f"the CAM methods and the other layer methods ({', '.join(names)})"
    return ", ".join(names)


def _accepted(method: str) -> list[str]:
    import inspect

    return list(inspect.signature(explainer_class(method).__init__).parameters)[2:]


def _write(explanation, out: Path, *, report=False, model=None) -> list[str]:
    """Save the explanation, its figures (by kind of rows) and the HTML report."""
    from ..report.summary import explanation_kind

    out.mkdir(parents=True, exist_ok=True)
    lines = [f"wrote {explanation.save(out / 'explanation.npz')}"]
    kind = explanation_kind(explanation)
    if explanation.values.shape[1:] != explanation.data.shape[1:]:
        lines.append(f"no figure: the values, shape {explanation.values.shape[1:]}, are not shaped like the rows")
    elif kind == "tabular":
        lines += _tabular_figures(explanation, out)
    elif kind == "text":
        from ..plot import text_html

        shown = min(len(explanation), _MAX_PANELS)
        page = "".join(f"<p>{text_html(explanation, index)}</p>" for index in range(shown))
        (out / "tokens.html").write_text(f"<!doctype html><meta charset='utf-8'><body>{page}</body>", encoding="utf-8")
        lines.append(f"wrote {out / 'tokens.html'}")
    elif not 1 <= explanation.values.ndim - 1 <= 3:
        lines.append(f"no heatmap: rows of shape {explanation.values.shape[1:]} are not images")
    else:
        from ..plot.image import TOP_K, image_grid

        shown = min(len(explanation), _MAX_PANELS)
        image_grid(explanation, indices=range(shown), top_k=TOP_K).savefig(out / "heatmap.png", dpi=120)
        more = f" (the first {shown} of {len(explanation)} rows)" if shown < len(explanation) else ""
        lines.append(f"wrote {out / 'heatmap.png'}{more}")
    if report:
        from ..report.html import write_report

        lines.append(f"wrote {write_report(explanation, out / 'report.html', model=model)}")
    return lines


def _tabular_figures(explanation, out: Path) -> list[str]:
    """bar.png and waterfall.png of the first row; beeswarm.png over the rows of one target."""
    from ..plot import bar, beeswarm, waterfall

    lines = []
    for name, draw in (("bar", bar), ("waterfall", waterfall)):
        draw(explanation, 0).figure.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        lines.append(f"wrote {out / f'{name}.png'} (row 0)")
    if len(explanation) > 1:
        try:
            beeswarm(explanation).figure.savefig(out / "beeswarm.png", dpi=120, bbox_inches="tight")
            lines.append(f"wrote {out / 'beeswarm.png'}")
        except ParameterError as error:  # rows of several targets: a beeswarm explains one
            lines.append(f"no beeswarm: {error}")
    return lines


# -- demo -------------------------------------------------------------------------------
def _demo(args) -> int:
    from ..data import DEFAULT_MODEL_PATH, load_samples
    from ..explainers import Occlusion
    from ..runtime import load

    images, labels = load_samples()
    picks = [0, 3, 7, 9]
    model = load(DEFAULT_MODEL_PATH)
    explanation = Occlusion(model, window=(1, 2, 2), stride=(1, 1, 1)).explain(images[picks])
    written = _write(explanation, Path(args.out), report=True, model=model)
    print(f"explained {len(picks)} digits with the embedded CNN ({DEFAULT_MODEL_PATH.name}), occlusion 2x2, stride 1")
    for label, predicted, base in zip(labels[picks], explanation.target_names, explanation.base_values):
        print(f"  digit {label}: predicted {predicted} (logit {base:.2f})")
    print(f"{explanation.n_evals} evaluations in {explanation.seconds:.2f} s on {', '.join(explanation.providers)}")
    print("\n".join(written))
    return 0


def _listing(items: list[str], shown: int = 4) -> str:
    return ", ".join(items[:shown]) + (f", ... ({len(items)} in all)" if len(items) > shown else "")


if __name__ == "__main__":
    sys.exit(main())
