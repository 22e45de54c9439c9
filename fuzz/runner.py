"""The parent side: draw cases, run them in a worker process with limits, count outcomes, keep failures."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import time
from collections import Counter
from pathlib import Path

from .mutators import mutate
from .seeds import seeds
from .worker import STEPS, serve

CASES_DIR = Path(__file__).resolve().parent.parent / "tests" / "fuzz_cases"
GOOD = "good"


class Worker:
    """A worker process fed cases through a pipe; restarted after a crash or a timeout."""

    def __init__(self, memory_bytes: int, timeout: float):
        self.memory_bytes, self.timeout = memory_bytes, timeout
        self.context = multiprocessing.get_context("spawn")
        self.process = None
        self.restarts = 0

    def _start(self):
        self.connection, child = self.context.Pipe()
        self.process = self.context.Process(target=serve, args=(child, self.memory_bytes), daemon=True)
        self.process.start()
        child.close()

    def run(self, case: dict) -> dict:
        """``{"outcomes": {step: outcome}, "errors": ...}`` or ``{"fatal": "crash ..." | "timeout"}``."""
        if self.process is None or not self.process.is_alive():
            if self.process is not None:
                self.restarts += 1
            self._start()
        self.connection.send(case)
        # The first case of a fresh worker also pays for its imports.
        if self.connection.poll(self.timeout):
            try:
                return self.connection.recv()
            except (EOFError, OSError):
                pass
            self.process.join(5)
            return {"fatal": f"crash (exit code {self.process.exitcode})"}
        if not self.process.is_alive():
            return {"fatal": f"crash (exit code {self.process.exitcode})"}
        self.process.kill()
        self.process.join(5)
        return {"fatal": "timeout"}

    def close(self):
        if self.process is not None and self.process.is_alive():
            try:
                self.connection.send(None)
                self.process.join(10)
            except OSError:
                pass
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5)


def classify(result: dict) -> str:
    """One word per case: "crash", "timeout", "other exception: T" or the first library error, else success."""
    if "fatal" in result:
        return result["fatal"].split(" ")[0]
    raws = [outcome for outcome in result["outcomes"].values() if outcome.startswith("raw:")]
    if raws:
        return f"other exception: {raws[0][4:]}"
    errors = [outcome for outcome in result["outcomes"].values() if outcome != "ok"]
    return errors[0] if errors else "success"


def is_bad(outcome: str) -> bool:
    return outcome in ("crash", "timeout") or outcome.startswith("other exception")


def save_case(case: dict, result: dict, outcome: str, folder: Path = CASES_DIR) -> Path:
    """Keep a failing input: model.onnx, the files beside it, and case.json saying what was run."""
    digest = hashlib.sha1(case["model"] + json.dumps(sorted(case.get("files", {}))).encode()).hexdigest()[:12]
    target = folder / digest
    target.mkdir(parents=True, exist_ok=True)
    (target / "model.onnx").write_bytes(case["model"])
    for name, data in case.get("files", {}).items():
        (target / name).write_bytes(data)
    record = {
        "seed": case.get("seed"), "mode": case.get("mode"), "external_dir": case.get("external_dir", True),
        "files": sorted(case.get("files", {})), "mutations": case.get("mutations", []), "outcome": outcome,
        "steps": result.get("outcomes"),
        "error": {step: text.strip().splitlines()[-1][:300] for step, text in result.get("errors", {}).items()},
    }
    (target / "case.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def load_case(folder: Path) -> dict:
    record = json.loads((folder / "case.json").read_text(encoding="utf-8"))
    return {
        "model": (folder / "model.onnx").read_bytes(),
        "files": {name: (folder / name).read_bytes() for name in record.get("files", [])},
        "mode": record.get("mode", "path"), "external_dir": record.get("external_dir", True),
        "seed": record.get("seed"), "mutations": record.get("mutations", []),
    }


def draw(rng: random.Random, pool) -> dict:
    seed = rng.choice(pool)
    model, mutations = mutate(rng, seed.model)
    return {
        "seed": seed.name, "model": model, "files": dict(seed.files), "mutations": mutations,
        "mode": rng.choice(("path", "path", "bytes", "proto")), "external_dir": rng.random() < 0.8,
    }


def fuzz(*, seconds: float | None = None, cases: int | None = None, seed: int = 0, save: Path | None = None,
         memory_mb: int = 3072, timeout: float = 30.0, report=None, per_signature: int = 2) -> dict:
    """Run mutated cases until ``seconds`` pass or ``cases`` are done; returns the counts.

    Failing inputs go to ``save`` (at most ``per_signature`` per outcome and step).
    """
    rng = random.Random(seed)
    pool = seeds()
    worker = Worker(memory_mb << 20, timeout)
    counts, steps, kept, signatures = Counter(), {step: Counter() for step in STEPS}, [], Counter()
    start = time.monotonic()
    done = 0
    try:
        while (seconds is None or time.monotonic() - start < seconds) and (cases is None or done < cases):
            case = draw(rng, pool)
            result = worker.run(case)
            outcome = classify(result)
            counts[outcome] += 1
            for step, value in result.get("outcomes", {}).items():
                steps[step][value] += 1
            done += 1
            if is_bad(outcome):
                failing = next((s for s, v in result.get("outcomes", {}).items() if v.startswith("raw:")), "-")
                signature = (outcome, failing)
                signatures[signature] += 1
                if save is not None and signatures[signature] <= per_signature:
                    kept.append(str(save_case(case, result, outcome, save)))
                if report:
                    report(f"case {done}: {outcome} at {failing} ({'; '.join(case['mutations'])})")
    finally:
        worker.close()
    return {"cases": done, "seconds": round(time.monotonic() - start, 1), "seed": seed, "counts": dict(counts),
            "steps": {step: dict(values) for step, values in steps.items()}, "restarts": worker.restarts,
            "kept": kept}


def replay(folders, *, memory_mb: int = 3072, timeout: float = 60.0) -> dict:
    """Run saved cases again; returns {folder: outcome}."""
    worker = Worker(memory_mb << 20, timeout)
    try:
        return {str(folder): classify(worker.run(load_case(Path(folder)))) for folder in folders}
    finally:
        worker.close()
