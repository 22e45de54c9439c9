"""The ``explain-dataset`` command of ``agnostic-explain``: a resumable job over a whole data set."""

from __future__ import annotations

import sys

from ..errors import ParameterError
from ..explainers.registry import method_names
from .options import integer, method_params

_EPILOG = (
    "Rerun the same command after a crash or Ctrl-C to resume: finished chunks are kept. "
    "Method parameters go in --param, e.g. --param window=[1,2,2] --param n_masks=500, "
    "or --param background=@background.npy for an array."
)


def register(commands, common) -> None:
    """Add ``explain-dataset`` to the ``agnostic-explain`` parser."""
    methods = method_names()
    job = commands.add_parser(
        "explain-dataset", parents=[common], help="explain every input of a data set into a resumable folder",
        epilog=_EPILOG,
    )
    add = job.add_argument
    add("model", metavar="MODEL", help="an .onnx file")
    add("data", metavar="DATA", help="a folder of images or .npy/.npz files, one such file, or a .parquet/.csv table")
    add("--out", required=True, help="output folder (created; a rerun resumes it)")
    add("--method", choices=methods, default="occlusion", metavar="METHOD",
        help=f"attribution method (default occlusion): {', '.join(methods)}")
    add("--param", action="append", default=[], metavar="KEY=VALUE", help="a method parameter (JSON value)")
    add("--target", default="predicted", help="a class index, or 'predicted' (default)")
    add("--output", metavar="NAME_OR_INDEX", help="the explained output (default: first floating one)")
    add("--output-transform", choices=["softmax", "sigmoid"], help="explain probabilities, not raw outputs")
    add("--devices", help="workers, comma-separated: cpu, cpu,cpu, cuda:0,cuda:1 (default: every GPU, else cpu)")
    add("--backend", choices=["local", "ray"], default="local")
    add("--chunk-size", default="256", help="rows per chunk (default 256)")
    add("--seed", help="the job's random seed (default: drawn, and kept for resuming)")
    add("--on-error", choices=["fail", "skip"], default="fail", help="unreadable inputs: stop, or skip and record")
    add("--no-resume", action="store_true", help="delete the folder's finished chunks and start afresh")
    add("--threads", help="ONNX Runtime threads per CPU worker")
    add("--batch-size", default="auto", help="rows per model call, or auto")
    add("--columns", help="feature columns of a table, comma-separated (default: the model's, else all)")
    add("--no-progress", action="store_true", help="no progress bar")
    add("--verify", action="store_true",
        help="only check the folder's finished chunks against their checksums, run nothing")
    job.set_defaults(run=_explain_dataset)


def _explain_dataset(args) -> int:
    from ..jobs import explain_dataset, verify_results

    if args.verify:
        found = verify_results(args.out)  # raises JobError naming damaged chunks
        state = "complete" if found.complete else "not complete yet"
        print(f"verified {found.n_files} files of {found.n_chunks} chunks in {args.out}: no damage; the job is {state}")
        return 0

    params = method_params(args.param)
    if args.method == "occlusion" and "window" not in params:
        # The job spec records the window, so that a resumed job uses the same one.
        params["window"] = _default_window(args.model)
        print(f"window {params['window']} (default)")
    spec = {"method": args.method, "params": params, "output_transform": args.output_transform,
            "target": args.target if args.target == "predicted" else integer(args.target, "--target")}
    if args.output is not None:
        spec["output"] = int(args.output) if args.output.isdigit() else args.output
    try:
        summary = explain_dataset(
            args.model, args.data, spec, out=args.out, devices=args.devices, backend=args.backend,
            resume=not args.no_resume, chunk_size=integer(args.chunk_size, "--chunk-size"),
            random_state=None if args.seed is None else integer(args.seed, "--seed"), on_error=args.on_error,
            progress=False if args.no_progress else None,
            threads=None if args.threads is None else integer(args.threads, "--threads"),
            batch_size="auto" if args.batch_size == "auto" else integer(args.batch_size, "--batch-size"),
            columns=[name.strip() for name in args.columns.split(",")] if args.columns else None,
        )
    except KeyboardInterrupt:
        print(f"interrupted; finished chunks are kept in {args.out}; run the same command to resume", file=sys.stderr)
        return 130
    resumed = f", {summary.chunks_resumed} found finished" if summary.chunks_resumed else ""
    print(f"explained {summary.n_rows} row{'' if summary.n_rows == 1 else 's'} in {summary.n_chunks} chunks ({summary.chunks_run} run now{resumed}) "
          f"in {summary.seconds:.1f} s")
    if summary.skipped:
        shown = ", ".join(item["key"] for item in summary.skipped[:3])
        print(f"skipped {len(summary.skipped)} unreadable input(s): {shown}{', ...' if len(summary.skipped) > 3 else ''}")
    print(f"wrote {summary.manifest_path} and the chunks in {summary.out / 'chunks'}")
    return 0


def _default_window(model) -> list[int]:
    from ..explainers.occlusion import default_window
    from ..runtime import load

    probe = load(model, providers="cpu", threads=1)
    row = tuple(probe.input_spec().row_shape() or ())
    if not all(isinstance(size, int) for size in row):
        raise ParameterError(f"--param window=...: the model's rows {row} are not of static size; give the window")
    return list(default_window(row, probe.layout))
