"""``python -m benchmarks run``: one benchmark run, each case in its own process.

Examples::

    python -m benchmarks run                                  # quick suite on the CPU (seconds)
    python -m benchmarks run --device cpu --suite full        # the full suite (10-20 minutes on 2 cores)
    python -m benchmarks run --suite full --only occlusion,rise --no-peers
    python -m benchmarks list --suite full                    # the case names
    python -m benchmarks render                               # RESULTS.md and plots again from results.json

Results go to ``benchmarks/results/<device>-<suite>/`` unless ``--out`` says otherwise:
results.json, RESULTS.md and the plots.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a suite and write its results")
    listing = commands.add_parser("list", help="print the case names of a suite")
    render = commands.add_parser("render", help="write RESULTS.md and the plots again from results.json")
    render.add_argument("folders", nargs="*", help="results folders (default: every folder in benchmarks/results)")
    for sub in (run, listing):
        sub.add_argument("--suite", choices=["quick", "full"], default="quick")
        sub.add_argument("--only", help="comma-separated name patterns (fnmatch; plain words match substrings)")
    run.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    run.add_argument("--out", help="results folder (default benchmarks/results/<device>-<suite>)")
    run.add_argument("--repeats", type=int, default=None, help="warm calls per case (default 3 full, 2 quick)")
    run.add_argument("--fuse", choices=["auto", "on", "off"], default="auto",
                     help="fused perturbation graphs (passed to ae.load only when not auto)")
    run.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                     help="model precision (passed to ae.load only when not fp32)")
    run.add_argument("--no-peers", action="store_true", help="skip Captum, lime, shap and DIANNA")
    run.add_argument("--timeout", type=float, default=1800, help="seconds one case may take")
    args = parser.parse_args(argv)
    if args.command == "render":
        from benchmarks.output import render

        folders = args.folders or sorted(path.parent for path in RESULTS.glob("*/results.json"))
        for folder in folders:
            for path in render(Path(folder)):
                print(f"wrote {path}")
        return 0

    from benchmarks.cases import suite

    cases = suite(args.suite, args.only)
    if args.command == "list":
        for case in cases:
            print(f"{case.name:44s} {case.describe()}  peers: {', '.join(case.peers) or '-'}")
        return 0
    if not cases:
        print(f"no case of the {args.suite} suite matches {args.only!r}", file=sys.stderr)
        return 2
    if args.repeats is not None and args.repeats < 1:
        print(f"--repeats must be at least 1, got {args.repeats}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else RESULTS / f"{args.device}-{args.suite}"
    return run_suite(cases, args, out)


def run_suite(cases, args, out: Path) -> int:
    from agnostic_explain.data import DEFAULT_MODEL_PATH
    from benchmarks.common import describe_machine
    from benchmarks.harness import Options, check_load_options, options_dict, run_cases
    from benchmarks.output import write_results

    repeats = args.repeats or (3 if args.suite == "full" else 2)
    cache = tempfile.mkdtemp(prefix="agnostic-explain-bench-")
    options = Options(device=args.device, suite=args.suite, repeats=repeats, fuse=args.fuse,
                      precision=args.precision, peers=not args.no_peers, cache=cache)
    try:
        problem = check_load_options(options, DEFAULT_MODEL_PATH)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        print(f"{len(cases)} cases, {args.suite} suite on {args.device}, {repeats} warm calls each; results to {out}")
        machine = describe_machine(args.device)  # before the cases: the commit they ran on
        began = time.perf_counter()
        records = run_cases(cases, options, out, timeout=args.timeout)
        results = {"machine": machine, "options": options_dict(options),
                   "wall_seconds": time.perf_counter() - began, "cases": records}
        for path in write_results(results, out):
            print(f"wrote {path}")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 1 if any("error" in record for record in records) else 0


if __name__ == "__main__":
    sys.exit(main())
