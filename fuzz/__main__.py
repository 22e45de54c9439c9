"""``python -m fuzz [--seconds N] [--cases N] [--seed S] [--save DIR]``: run the fuzz harness, print counts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .runner import CASES_DIR, fuzz, is_bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (default 60)")
    parser.add_argument("--cases", type=int, help="stop after this many cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=str(CASES_DIR), help="where failing inputs are kept ('' keeps none)")
    parser.add_argument("--memory-mb", type=int, default=3072, help="the worker's address-space limit")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds one case may take")
    parser.add_argument("--json", help="also write the counts to this file")
    args = parser.parse_args(argv)
    found = fuzz(seconds=args.seconds, cases=args.cases, seed=args.seed, save=Path(args.save) if args.save else None,
                 memory_mb=args.memory_mb, timeout=args.timeout, report=lambda line: print(line, flush=True))
    print(json.dumps({key: value for key, value in found.items() if key != "kept"}, indent=2))
    if found["kept"]:
        print(f"kept {len(found['kept'])} failing case(s) under {args.save}")
    if args.json:
        Path(args.json).write_text(json.dumps(found, indent=2) + "\n", encoding="utf-8")
    return 1 if any(is_bad(outcome) for outcome in found["counts"]) else 0


if __name__ == "__main__":
    sys.exit(main())
