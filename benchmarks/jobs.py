"""Data-set jobs: rows per second of ``explain_dataset`` on one and two CPU workers (and a GPU).

The case: the embedded digits CNN (``agnostic_explain.data``), 2,000 digit images written as
8-bit PNG files (scikit-learn's 1,797 and 203 of them mirrored), chunks of 100 rows, two
methods: occlusion (2x2 windows, 17 model rows per image) and RISE (200 masks of 4x4 cells,
201 model rows per image). Each job starts afresh in an empty folder, and its wall time
includes everything a user waits for: loading one session per worker, reading and
preprocessing the PNG files, explaining, and committing each chunk (files and manifest
flushed to disk). For scale, the same method's single in-memory ``explain`` call on all
2,000 already-decoded images, with the model already loaded, is timed too.

Run: ``python benchmarks/jobs.py [--device cpu|cuda] [--images 2000] [--repeats 1]``.
It prints a markdown table and writes ``benchmarks/results/jobs-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae  # noqa: E402
from agnostic_explain import jobs  # noqa: E402
from agnostic_explain.data import DEFAULT_MODEL_PATH  # noqa: E402
from agnostic_explain.jobs.spec import build_explainer, normalize_spec  # noqa: E402
from benchmarks.common import cpu_count  # noqa: E402

CHUNK_SIZE = 100
METHODS = {
    "occlusion": {"method": "occlusion", "params": {"window": [1, 2, 2]}},
    "rise": {"method": "rise", "params": {"n_masks": 200, "cells": 4}},
}


def write_images(folder: Path, n: int) -> np.ndarray:
    """``n`` digit PNGs in ``folder``; returns the model inputs they read as (pixel / 255)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    raw = load_digits().images
    raw = np.concatenate([raw, raw[:, :, ::-1]])[:n]
    pixels = np.clip(np.round(raw * 16), 0, 255).astype(np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i:05d}.png")
    return (pixels.astype(np.float32) / 255)[:, None]


def worker_sets(device: str) -> list[tuple[str, list[str]]]:
    """(label, devices) of each configuration measured; CPU workers split the cores."""
    cores = cpu_count()
    sets = [
        (f"1 CPU worker, {cores} threads", ["cpu"]),
        (f"2 CPU workers, {max(1, cores // 2)} thread(s) each", ["cpu", "cpu"]),
    ]
    if device == "cuda":
        sets.append(("1 CUDA worker (cuda:0)", ["cuda:0"]))
    return sets


def time_job(folder: Path, spec: dict, devices: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            began = time.perf_counter()
            summary = jobs.explain_dataset(DEFAULT_MODEL_PATH, folder, spec, out=out, devices=devices,
                                           chunk_size=CHUNK_SIZE, random_state=0, progress=False)
            best = min(best, time.perf_counter() - began)
            if not summary.complete:
                raise RuntimeError("the job did not finish")
    return best


def time_direct(inputs: np.ndarray, spec: dict, device: str) -> float:
    model = ae.load(DEFAULT_MODEL_PATH, providers="cuda" if device == "cuda" else "cpu")
    explainer = build_explainer(model, normalize_spec(spec))
    explainer.explain(inputs[:CHUNK_SIZE], progress=False, random_state=0)  # warm: batch size, allocations
    began = time.perf_counter()
    explainer.explain(inputs, progress=False, random_state=0)
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per job")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as data:
        inputs = write_images(Path(data), args.images)
        for name, spec in METHODS.items():
            direct = time_direct(inputs, spec, args.device)
            rows.append({"method": name, "workers": "one in-memory explain call (no job)", "seconds": direct,
                         "rows_per_s": args.images / direct})
            for label, devices in worker_sets(args.device):
                seconds = time_job(Path(data), spec, devices, args.repeats)
                rows.append({"method": name, "workers": label, "devices": devices, "seconds": seconds,
                             "rows_per_s": args.images / seconds})
    record = {
        "case": f"explain_dataset digits CNN, {args.images} PNG images, chunks of {CHUNK_SIZE}",
        "methods": METHODS,
        "machine": f"{platform.machine()} {platform.processor() or ''} {cpu_count()} cores".strip(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"jobs-{args.device}.json").write_text(json.dumps(record, indent=2))
    print(markdown(record))
    return 0


def markdown(record: dict) -> str:
    lines = [f"{record['case']} ({record['machine']}, onnxruntime {record['onnxruntime']})", "",
             "| method | workers | seconds | rows/s |", "|---|---|---:|---:|"]
    lines += [f"| {row['method']} | {row['workers']} | {row['seconds']:.2f} | {row['rows_per_s']:.0f} |"
              for row in record["rows"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
