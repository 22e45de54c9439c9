"""Gradient-free CAMs on a pretrained ImageNet CNN: the split graph against its model-bound limit,
the full model once per channel, and Captum.

The case: EfficientNet-Lite0 (pretrained, exported from PyTorch), one 1x3x224x224 image, the
predicted class on raw logits, at two layers of C channels on a 7x7 grid:

- the head activation ``/_activation_1/Clip_output_0`` (C = 1280, the automatic layer; its
  tail is ReduceMean + Gemm);
- block 15's projection ``/_blocks.15/_project_conv/Conv_output_0`` (C = 320; its tail is the
  conv head, clip, pooling and the classifier).

Ablation-CAM and Score-CAM cost one row of the model with the layer exposed plus C tail rows.
All figures come from one process and one run:

- ours: ``ae.AblationCam`` and ``ae.ScoreCam`` wall time on one explainer (the first call is
  cold: it splits the graph, opens two sessions and measures the tail's batch size), then
  warm calls, each paired with a model-bound run beside it;
- the model-bound limit of the split approach: one full-model row at batch 1 plus C tail rows
  at the tail's best ONNX Runtime throughput (a sweep over batch sizes up to C);
- the naive approach, the full model once per channel (as pytorch-grad-cam's AblationCAM
  runs it): C full-model rows at the full model's best throughput, measured once;
- where our time goes: the head row, building the C edited activations, and the tail runs,
  each timed alone;
- Captum's ``LayerFeatureAblation`` on the PyTorch source, one mask group per channel (the
  full model per channel): its time, and the largest difference between its deltas divided
  by the target logit and our Ablation-CAM channel weights, and where each map peaks;
- the process's peak resident memory, before and after Captum.

Run: ``python benchmarks/cam.py [--repeats 3] [--no-captum] [--captum-batch 32 64]`` (CPU).
It prints a table and writes ``benchmarks/results/cam-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.explainers.unit_ablation import ablate  # noqa: E402
from benchmarks.common import (  # noqa: E402
    BATCH_SIZES, best_throughput, bound_run, cpu_count, model_throughput, pretrained_image_case,
)

LAYERS = ("/_activation_1/Clip_output_0", "/_blocks.15/_project_conv/Conv_output_0")
TAIL_SIZES = BATCH_SIZES + (256, 512, 1024)


def torch_layer(module, layer: str):
    """The PyTorch module whose output is the ONNX tensor ``layer``.

    The stem and the head share one ``_activation`` module, so a hook on it would fire twice;
    the head's call gets a module of its own (same function). The exporter folds each
    batch norm into the convolution before it, so the ONNX ``_project_conv`` output is the
    output of the block's ``_bn2``.
    """
    import torch

    if layer == LAYERS[0]:
        if not hasattr(module, "_head_activation"):
            module._head_activation = torch.nn.ReLU6()

            def forward(self, x):
                x = self._activation(self._bn0(self._conv_stem(x)))
                for block in self._blocks:
                    x = block(x)
                x = self._head_activation(self._bn1(self._conv_head(x)))
                return self._fc(x.mean(dim=(2, 3)))

            module.forward = types.MethodType(forward, module)
        return module._head_activation
    if layer == LAYERS[1]:
        return module._blocks[15]._bn2
    raise ValueError(f"no PyTorch module known for {layer!r}")


def torch_activation(module, layer_module, image: np.ndarray):
    """The layer's output and the logits of the PyTorch model on ``image``."""
    import torch

    seen = []
    handle = layer_module.register_forward_hook(lambda _, __, output: seen.append(output.detach().numpy()))
    try:
        with torch.no_grad():
            logits = module(torch.from_numpy(image)).numpy()
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(f"the layer ran {len(seen)} times in one forward pass; expected once")
    return seen[0], logits


def split_models(path: str, layer: str, image: np.ndarray):
    """The model with ``layer`` exposed, the tail after it, and the layer's activation row."""
    exposed = ae.load(ae.graph.expose(path, [layer]), providers="cpu")
    _, tail_proto = ae.graph.split(path, at=layer)
    tail = ae.load(tail_proto, providers="cpu")
    row = exposed.run({exposed.inputs[0].name: image}, [layer])[0]
    return exposed, tail, row


def split_bound(full, tail, image, row, n_channels: int, tail_size: int) -> float:
    """One full-model row at batch 1, plus ``n_channels`` tail rows at ``tail_size``."""
    return bound_run(full, image, 1, 1) + bound_run(tail, row, n_channels, tail_size)


def paired(explain, bound):
    """A cold call, then ``len(bound)`` pairs of (bound run, warm call)."""
    began = time.perf_counter()
    explanation = explain()
    cold = time.perf_counter() - began
    bounds, ours = [], []
    for run_bound in bound:
        bounds.append(run_bound())
        began = time.perf_counter()
        explanation = explain()
        ours.append(time.perf_counter() - began)
    return explanation, cold, bounds, ours


def breakdown(exposed, tail, image, layer: str, n_channels: int, batch: int) -> dict:
    """Seconds of each step of both methods run alone, in sequence, at the tail batch ``batch``.

    The edits are built as the explainers build them: a gather of the activation row, then
    ``ablate`` or the Score-CAM product written in place. The explainers overlap building with
    the tail runs.
    """
    output = exposed.outputs[0].name
    began = time.perf_counter()
    row = exposed.run({exposed.inputs[0].name: image}, [output, layer])[1]
    head = time.perf_counter() - began
    zero = np.zeros((), row.dtype)
    low = row.min(axis=(2, 3), keepdims=True)
    span = row.max(axis=(2, 3), keepdims=True) - low
    masks = np.where(span > 0, (row - low) / np.where(span > 0, span, 1), 0).astype(row.dtype)
    spans = [(np.zeros(stop - start, np.intp), np.arange(start, stop))
             for start, stop in ((start, min(n_channels, start + batch)) for start in range(0, n_channels, batch))]

    def score_edit(owners, units):
        rows = row[owners]
        return np.multiply(rows, masks[owners, units][:, None], out=rows)

    edits = {"ablation_cam": lambda owners, units: ablate(row[owners], units, 1, zero), "score_cam": score_edit}
    result = {"batch": batch, "head_s": head}
    for name, edit in edits.items():
        began = time.perf_counter()
        for owners, units in spans:  # each batch dropped before the next, as in the explainers
            edit(owners, units)
        result[f"{name}_edit_s"] = time.perf_counter() - began
        edited = [edit(owners, units) for owners, units in spans]
        began = time.perf_counter()
        for rows in edited:
            tail.run({layer: rows})
        result[f"{name}_tail_s"] = time.perf_counter() - began
    return result


def inside(explainer, explain) -> dict:
    """One warm call with the seconds of each session run inside it (the head row, each tail batch).

    Reads the model's private cache of split models: benchmark introspection only.
    """
    parts = explainer.model._layer_parts[(explainer.layer, explainer.needs_spatial)]
    calls = []
    for role in ("exposed", "tail"):
        session_model = getattr(parts, role)

        def timed(*args, _run=session_model.run, _role=role, **kwargs):
            began = time.perf_counter()
            try:
                return _run(*args, **kwargs)
            finally:
                calls.append((_role, time.perf_counter() - began))

        session_model.run = timed
    try:
        began = time.perf_counter()
        explain()
        total = time.perf_counter() - began
    finally:
        del parts.exposed.run, parts.tail.run
    tail = [seconds for role, seconds in calls if role == "tail"]
    return {"total_s": total, "head_s": sum(seconds for role, seconds in calls if role == "exposed"),
            "tail_s": sum(tail), "tail_calls_ms": [round(seconds * 1000, 1) for seconds in tail]}


def run_captum(module, layer_module, image: np.ndarray, target: int, n_channels: int, per_eval: int):
    import torch
    from captum.attr import LayerFeatureAblation

    ablation = LayerFeatureAblation(module, layer_module)
    mask = torch.arange(n_channels).view(1, n_channels, 1, 1)
    began = time.perf_counter()
    with torch.no_grad():
        values = ablation.attribute(
            torch.from_numpy(image), target=target, layer_mask=mask, perturbations_per_eval=per_eval,
        )
    return values[0, :, 0, 0].numpy().astype(np.float64), time.perf_counter() - began


def cam(weights: np.ndarray, activation: np.ndarray) -> np.ndarray:
    """ReLU(sum_k w_k A_k) of one activation row (C, h, w), the layer-level map."""
    return np.maximum(np.einsum("c,chw->hw", weights, activation.astype(np.float64)), 0.0)


def peak(values: np.ndarray) -> list:
    return [int(index) for index in np.unravel_index(np.argmax(values), values.shape)]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_layer(args, layer, path, image, target, module, full, full_best, full_throughput) -> dict:
    model = ae.load(path, providers="cpu")
    exposed, tail, row = split_models(path, layer, image)
    n_channels = row.shape[1]
    sizes = tuple(size for size in TAIL_SIZES if size <= n_channels)
    # The tail sweep is cheap, and its best-of is the bound: more repeats steady it on a busy machine.
    tail_throughput = model_throughput(tail, row, max(args.repeats, 5), sizes)
    tail_best = max(tail_throughput, key=tail_throughput.get)
    bound = [lambda: split_bound(full, tail, image, row, n_channels, tail_best)] * args.repeats

    record = {"layer": layer, "activation_shape": list(row.shape[1:]), "channels": n_channels,
              "tail_ops": [node.op_type for node in tail.proto.graph.node],
              "tail_throughput_rows_per_s": {str(size): round(value, 1) for size, value in tail_throughput.items()},
              "tail_best_batch": tail_best,
              "split_bound_from_sweep_s": 1 / full_throughput[1] + n_channels / tail_throughput[tail_best]}
    explanations = {}
    for name, kind in (("ablation_cam", ae.AblationCam), ("score_cam", ae.ScoreCam)):
        explainer = kind(model, layer=layer)
        explanation, cold, bounds, times = paired(
            lambda: explainer.explain(image, target=target, progress=False), bound,
        )
        parts = model._layer_parts[(layer, explainer.needs_spatial)]  # introspection only
        auto = next(iter(parts.tail.tuned_batch_sizes.values()), None)
        ratios = [ours / bound for ours, bound in zip(times, bounds)]
        timed_call = inside(explainer, lambda: explainer.explain(image, target=target, progress=False))
        record[name] = {
            "n_evals": explanation.n_evals, "n_evals_head": explanation.extras["n_evals_head"],
            "n_evals_tail": explanation.extras["n_evals_tail"], "auto_tail_batch": auto,
            "cold_s": cold, "ours_s": times, "ours_median_s": float(np.median(times)),
            "bound_s": bounds, "bound_median_s": float(np.median(bounds)),
            "ratios": ratios, "ratio_median": float(np.median(ratios)),
            "layer_map_peak": peak(explanation.extras["layer_map"][0]),
            "map_peak": peak(explanation.values[0, 0]),
            "inside_one_warm_call": timed_call,
        }
        explanations[name] = explanation
    auto = record["ablation_cam"]["auto_tail_batch"] or tail_best
    record["breakdown"] = breakdown(exposed, tail, image, layer, n_channels, auto)

    record["naive_full_model_s"] = bound_run(full, image, n_channels, full_best)
    record["naive_from_sweep_s"] = n_channels / full_throughput[full_best]
    ours = record["ablation_cam"]["ours_median_s"]
    record["speedup_vs_naive"] = record["naive_full_model_s"] / ours
    record["peak_rss_before_captum_mib"] = peak_rss_mib()

    layer_module = torch_layer(module, layer)
    activation, logits = torch_activation(module, layer_module, image)
    scale = float(np.abs(row).max())
    record["torch_layer_max_rel_error"] = float(np.abs(activation - row).max()) / scale
    onnx_logits = full.run({full.inputs[0].name: image})[0]
    record["torch_logits_max_rel_error"] = float(np.abs(logits - onnx_logits).max() / np.abs(onnx_logits).max())
    if not args.no_captum:
        base = float(logits[0, target])
        weights = explanations["ablation_cam"].extras["channel_weights"][0].astype(np.float64)
        record["captum"] = {}
        for per_eval in args.captum_batch:
            deltas, seconds = run_captum(module, layer_module, image, target, n_channels, per_eval)
            captum_weights = deltas / base
            record["captum"][str(per_eval)] = {
                "seconds": seconds, "speedup": seconds / ours,
                "max_rel_error_channel_weights": float(np.abs(weights - captum_weights).max()
                                                      / np.abs(captum_weights).max()),
                "layer_map_peak": peak(cam(captum_weights, activation[0])),
            }
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-captum", action="store_true", help="skip Captum (time and parity)")
    parser.add_argument("--captum-batch", type=int, nargs="+", default=[32, 64],
                        help="Captum's perturbations_per_eval, one run each")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)

    path, image, target, module = pretrained_image_case()
    full_throughput, full_best, full = best_throughput(path, "cpu", image, args.repeats)
    rss_after_sweep = peak_rss_mib()
    record = {
        "case": "ablation_cam and score_cam, efficientnet_lite0 1x3x224x224, two layers",
        "provider": full.providers[0],
        "machine": f"{platform.machine()} {platform.processor() or ''} {cpu_count()} cores".strip(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "torch": __import__("torch").__version__,
        "target": target,
        "full_throughput_rows_per_s": {str(size): round(value, 2) for size, value in full_throughput.items()},
        "full_best_batch": full_best,
        "layers": [],
        "peak_rss_after_full_sweep_mib": rss_after_sweep,
    }
    for layer in LAYERS:
        record["layers"].append(measure_layer(args, layer, path, image, target, module, full, full_best, full_throughput))
    record["peak_rss_mib"] = peak_rss_mib()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cam-cpu.json").write_text(json.dumps(record, indent=2))
    _print(record)
    return 0


def _print(record: dict) -> None:
    print(f"case: {record['case']}, target {record['target']}")
    print(f"provider: {record['provider']}  machine: {record['machine']}  onnxruntime {record['onnxruntime']}")
    sizes = ", ".join(f"{size}: {value:.1f}" for size, value in record["full_throughput_rows_per_s"].items())
    print(f"full model throughput (rows/s by batch size): {sizes}")
    for entry in record["layers"]:
        print(f"\nlayer {entry['layer']} {tuple(entry['activation_shape'])}, tail {' + '.join(entry['tail_ops'])}")
        sizes = ", ".join(f"{size}: {value:.0f}" for size, value in entry["tail_throughput_rows_per_s"].items())
        print(f"  tail throughput (rows/s by batch size): {sizes}")
        print(
            f"  torch module output vs ONNX tensor: max rel error {entry['torch_layer_max_rel_error']:.2g} "
            f"(logits {entry['torch_logits_max_rel_error']:.2g})"
        )
        for name in ("ablation_cam", "score_cam"):
            run = entry[name]
            print(
                f"  {name:13s} warm {run['ours_median_s']:7.3f} s  bound {run['bound_median_s']:7.3f} s  "
                f"ratio {run['ratio_median']:6.2f} ({', '.join(f'{r:.2f}' for r in run['ratios'])})  "
                f"cold {run['cold_s']:.3f} s  rows {run['n_evals_head']} head + {run['n_evals_tail']} tail "
                f"(batch {run['auto_tail_batch']})  peak {run['layer_map_peak']}"
            )
            call = run["inside_one_warm_call"]
            print(
                f"    one more warm call {call['total_s']:.3f} s: head run {call['head_s']:.3f} s, "
                f"{len(call['tail_calls_ms'])} tail runs {call['tail_s']:.3f} s "
                f"(ms: {' '.join(f'{ms:.0f}' for ms in call['tail_calls_ms'][:12])}"
                f"{' ...' if len(call['tail_calls_ms']) > 12 else ''}), "
                f"the rest {call['total_s'] - call['head_s'] - call['tail_s']:.3f} s"
            )
        parts = entry["breakdown"]
        print(f"  steps alone at batch {parts['batch']}: head row {parts['head_s']:.3f} s")
        for name in ("ablation_cam", "score_cam"):
            print(
                f"    {name:13s} edits {parts[name + '_edit_s']:.3f} s, "
                f"tail runs {parts[name + '_tail_s']:.3f} s"
            )
        print(
            f"  naive (full model x {entry['channels']}) {entry['naive_full_model_s']:7.3f} s "
            f"(sweep {entry['naive_from_sweep_s']:.3f} s): ablation_cam is {entry['speedup_vs_naive']:.0f}x faster"
        )
        for per_eval, run in entry.get("captum", {}).items():
            print(
                f"  captum LayerFeatureAblation (per_eval {per_eval}) {run['seconds']:7.3f} s: "
                f"ablation_cam is {run['speedup']:.0f}x faster; weights max rel error "
                f"{run['max_rel_error_channel_weights']:.2g}; peak {run['layer_map_peak']}"
            )
    print(f"\npeak RSS {record['peak_rss_mib']:.0f} MiB ({record['peak_rss_after_full_sweep_mib']:.0f} MiB "
          "after the full model's batch sweep)")


if __name__ == "__main__":
    sys.exit(main())
