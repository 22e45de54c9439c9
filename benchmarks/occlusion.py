"""Occlusion on a pretrained ImageNet CNN: agnostic-explain against the model-bound limit and Captum.

The case is the foundation issue's: EfficientNet-Lite0 (pretrained, exported from PyTorch),
one 1x3x224x224 image, window (3, 16, 16), stride (3, 8, 8), baseline 0, the predicted class
on raw logits: 729 perturbations. All figures come from one process and one run:

- model-bound time: the rows the explanation evaluates, run through plain ``session.run``
  at the batch size with the model's best ONNX Runtime throughput on the same provider
  (found by a sweep over batch sizes 1..128; on CUDA also over cuDNN's exhaustive and
  heuristic kernel search, TF32 off in both as in ours), inputs built in advance;
- agnostic-explain's wall time on one loaded model: the first call (cold: it also measures
  the automatic batch size) and the warm calls after it, whose median is compared with the
  model-bound time, itself measured warm;
- Captum's ``Occlusion`` on the PyTorch source model: its time, and the largest difference
  between the two attributions relative to the largest attribution;
- the process's peak resident memory.

Run: ``python benchmarks/occlusion.py [--provider cpu|cuda] [--repeats 3] [--no-captum]``.
It prints a table and writes ``benchmarks/results/occlusion-<provider>.json``.
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
from benchmarks.common import best_throughput, cpu_count, paired_runs, pretrained_image_case  # noqa: E402

WINDOW, STRIDE, BASELINE = (3, 16, 16), (3, 8, 8), 0.0


def run_captum(module, image: np.ndarray, target: int, per_eval: int):
    import torch
    from captum.attr import Occlusion

    occlusion = Occlusion(module)
    began = time.perf_counter()
    with torch.no_grad():
        values = occlusion.attribute(
            torch.from_numpy(image), sliding_window_shapes=WINDOW, strides=STRIDE,
            baselines=BASELINE, target=target, perturbations_per_eval=per_eval,
        )
    return values.numpy(), time.perf_counter() - began


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-captum", action="store_true", help="skip Captum (time and parity)")
    parser.add_argument("--captum-batch", type=int, default=32, help="Captum's perturbations_per_eval")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    path, image, target, module = pretrained_image_case()
    throughput, best_size, bound_model = best_throughput(path, args.provider, image, args.repeats)
    model = ae.load(path, providers=args.provider)
    explainer = ae.Occlusion(model, window=WINDOW, stride=STRIDE, baseline=BASELINE)
    explanation, cold, bounds, times = paired_runs(
        lambda repeat: explainer.explain(image, target=target, progress=False), bound_model, image, best_size, args.repeats
    )
    chosen = next(iter(model.tuned_batch_sizes.values()), None)
    ratios = [ours / bound for ours, bound in zip(times, bounds)]

    record = {
        "case": "occlusion efficientnet_lite0 1x3x224x224 window (3,16,16) stride (3,8,8) baseline 0",
        "provider": model.providers[0],
        "machine": f"{platform.machine()} {platform.processor() or ''} {cpu_count()} cores".strip(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "target": target,
        "perturbations": explanation.n_evals - 1,
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
    }
    if not args.no_captum:
        torch_values, captum_seconds = run_captum(module, image, target, args.captum_batch)
        scale = float(np.abs(torch_values).max())
        record["captum_s"] = captum_seconds
        record["captum_perturbations_per_eval"] = args.captum_batch
        record["max_abs_diff_vs_captum"] = float(np.abs(explanation.values - torch_values).max())
        record["max_rel_diff_vs_captum"] = record["max_abs_diff_vs_captum"] / scale
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"occlusion-{args.provider}.json").write_text(json.dumps(record, indent=2))
    _print(record)
    return 0


def _print(record: dict) -> None:
    print(f"case: {record['case']}  ({record['perturbations']} perturbations, {record['n_evals']} rows)")
    print(f"provider: {record['provider']}  machine: {record['machine']}  onnxruntime {record['onnxruntime']}")
    sizes = ", ".join(f"{size}: {value:.1f}" for size, value in record["throughput_rows_per_s"].items())
    print(f"model throughput (rows/s by batch size): {sizes}")
    print(
        f"model-bound time      {record['model_bound_median_s']:8.3f} s  median of {len(record['model_bound_s'])} runs of "
        f"{record['n_evals']} rows at the best batch {record['best_batch']} "
        f"(sweep estimate {record['model_bound_from_sweep_s']:.3f} s)"
    )
    print(
        f"agnostic-explain      {record['ours_median_s']:8.3f} s  median of {len(record['ours_s'])} warm calls, "
        f"best {record['ours_best_s']:.3f} s, auto batch {record['auto_batch']}"
    )
    print(f"  first call (cold)   {record['ours_cold_s']:8.3f} s  (includes measuring the batch size)")
    print(
        f"ratio to model bound  {record['ratio_median']:8.3f}    median of the paired runs "
        f"{', '.join(f'{ratio:.3f}' for ratio in record['ratios'])}"
    )
    if "captum_s" in record:
        print(
            f"captum (torch)        {record['captum_s']:8.3f} s  perturbations_per_eval="
            f"{record['captum_perturbations_per_eval']}"
        )
        print(
            f"parity vs captum      max |diff| {record['max_abs_diff_vs_captum']:.3g}, "
            f"relative to max |attribution| {record['max_rel_diff_vs_captum']:.3g}"
        )
    print(f"peak RSS              {record['peak_rss_mib']:8.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
