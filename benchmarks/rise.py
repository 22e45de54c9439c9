"""RISE on a pretrained ImageNet CNN: agnostic-explain against the model-bound limit.

The case: EfficientNet-Lite0 (pretrained, exported from PyTorch), one 1x3x224x224 image,
1000 masks of 8x8 cells with p_keep 0.5, baseline 0, the predicted class on raw logits:
1001 model rows. All figures come from one process and one run:

- model-bound time: the rows the explanation evaluates, run through plain ``session.run``
  at the batch size with the model's best ONNX Runtime throughput on the same provider
  (a sweep over batch sizes 1..128), inputs built in advance, measured right before each
  warm explanation (see :mod:`benchmarks.occlusion` for why the runs are paired);
- agnostic-explain's wall time on one loaded model: the first call (cold: it also measures
  the automatic batch size) and the warm calls after it;
- the method's own work without the model: drawing and upsampling the 1000 masks, building
  the 1000 masked rows and summing the saliency, timed alone;
- the process's peak resident memory.

Captum has no RISE, so there is no peer here.

Run: ``python benchmarks/rise.py [--provider cpu|cuda] [--repeats 2] [--masks 1000]``.
It prints a table and writes ``benchmarks/results/rise-<provider>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.explainers.rise import Rise, draw_masks, upsample  # noqa: E402
from benchmarks.common import best_throughput, cpu_count, paired_runs, pretrained_image_case  # noqa: E402

CELLS, P_KEEP = 8, 0.5


def method_work(image: np.ndarray, n_masks: int, batch: int) -> float:
    """Seconds of the method's own numpy work for one row: masks, masked rows, saliency sum."""
    began = time.perf_counter()
    plane = image.shape[2:]
    grids, shifts = draw_masks(np.random.default_rng(0), n_masks, CELLS, P_KEEP, plane)
    for start in range(0, n_masks, batch):
        masks = upsample(grids[start : start + batch], shifts[start : start + batch], plane)
        rows = image[np.zeros(len(masks), dtype=np.intp)]
        rows *= masks[:, None]
    scores = np.ones((1, n_masks))
    chunk = max(1, (64 << 20) // (8 * int(np.prod(plane))))
    for start in range(0, n_masks, chunk):
        masks = upsample(grids[start : start + chunk], shifts[start : start + chunk], plane)
        scores[:, start : start + chunk] @ masks.reshape(len(masks), -1).astype(np.float64)
    return time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--masks", type=int, default=1000, help="RISE's n_masks")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    path, image, target, _ = pretrained_image_case()
    throughput, best_size, bound_model = best_throughput(path, args.provider, image, args.repeats)
    model = ae.load(path, providers=args.provider)
    explainer = Rise(model, n_masks=args.masks, cells=CELLS, p_keep=P_KEEP)
    explanation, cold, bounds, times = paired_runs(
        lambda repeat: explainer.explain(image, target=target, progress=False, random_state=repeat + 1),
        bound_model, image, best_size, args.repeats,
    )
    chosen = next(iter(model.tuned_batch_sizes.values()), None)
    ratios = [ours / bound for ours, bound in zip(times, bounds)]
    saliency = explanation.values[0, 0]
    half = saliency.shape[0] // 2

    record = {
        "case": (
            f"rise efficientnet_lite0 1x3x224x224 n_masks {args.masks} cells {CELLS} p_keep {P_KEEP} baseline 0"
        ),
        "provider": model.providers[0],
        "machine": f"{platform.machine()} {platform.processor() or ''} {cpu_count()} cores".strip(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "target": target,
        "n_masks": args.masks,
        "n_evals": explanation.n_evals,
        "throughput_rows_per_s": {str(size): round(value, 2) for size, value in throughput.items()},
        "best_batch": best_size,
        "auto_batch": chosen,
        "model_bound_from_sweep_s": explanation.n_evals / throughput[best_size],
        "model_bound_s": bounds,
        "model_bound_median_s": float(np.median(bounds)),
        "ours_cold_s": cold,
        "ours_s": times,
        "ours_best_s": min(times),
        "ours_median_s": float(np.median(times)),
        "ratios": ratios,
        "ratio_median": float(np.median(ratios)),
        "ratio_best": min(ratios),
        "method_work_s": method_work(image, args.masks, chosen or best_size),
        "saliency_quadrant_means": [
            float(saliency[rows, cols].mean())
            for rows in (slice(0, half), slice(half, None))
            for cols in (slice(0, half), slice(half, None))
        ],
    }
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rise-{args.provider}.json").write_text(json.dumps(record, indent=2))
    _print(record)
    return 0


def _print(record: dict) -> None:
    print(f"case: {record['case']}  ({record['n_evals']} rows)")
    print(f"provider: {record['provider']}  machine: {record['machine']}  onnxruntime {record['onnxruntime']}")
    sizes = ", ".join(f"{size}: {value:.1f}" for size, value in record["throughput_rows_per_s"].items())
    print(f"model throughput (rows/s by batch size): {sizes}")
    print(
        f"model-bound time      {record['model_bound_median_s']:8.3f} s  "
        f"median of {len(record['model_bound_s'])} runs of "
        f"{record['n_evals']} rows at the best batch {record['best_batch']} "
        f"(sweep estimate {record['model_bound_from_sweep_s']:.3f} s)"
    )
    print(
        f"agnostic-explain      {record['ours_median_s']:8.3f} s  median of {len(record['ours_s'])} warm calls, "
        f"best {record['ours_best_s']:.3f} s, auto batch {record['auto_batch']}"
    )
    print(f"  first call (cold)   {record['ours_cold_s']:8.3f} s  (includes measuring the batch size)")
    print(f"  method's own work   {record['method_work_s']:8.3f} s  (masks, masked rows, saliency sum; no model)")
    print(
        f"ratio to model bound  {record['ratio_median']:8.3f}    median of the paired runs "
        f"{', '.join(f'{ratio:.3f}' for ratio in record['ratios'])}"
    )
    print(f"peak RSS              {record['peak_rss_mib']:8.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
