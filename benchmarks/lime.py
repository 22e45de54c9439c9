"""LIME against lime itself (marcotcr/lime) and the model-bound limit, in one run.

Two cases, each with lime's defaults on both sides and the same ONNX model function:

- tabular: a 30-feature MLP (scikit-learn ``MLPClassifier`` trained on a synthetic task,
  its weights turned into an onnx.helper Gemm/Relu/Softmax graph), 100 rows, 5000 samples
  per row, quartile discretization, ``num_features=10`` (feature selection "auto"), label 1.
  ``LimeTabular`` against ``LimeTabularExplainer.explain_instance`` row by row, whose
  ``predict_fn`` is the ONNX session's run;
- image: pretrained EfficientNet-Lite0 on one 1x3x224x224 image, quickshift superpixels
  (lime's parameters) computed once and given to both, ``hide_color=None``, 1000 samples,
  the predicted class. ``LimeImage`` against ``LimeImageExplainer.explain_instance`` whose
  ``classifier_fn`` runs the ONNX session (HWC batches transposed to the model's NCHW) at
  the best batch size; and against the model-bound time (the rows evaluated at the model's
  best throughput, ``bound_run`` paired with each of our runs).

Run: ``python benchmarks/lime.py [--provider cpu|cuda] [--repeats 3] [--skip-tabular|--skip-image]``.
It prints a table and writes ``benchmarks/results/lime-<provider>.json``.
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

# This file is named like the peer library: keep its folder off the path so `import lime` finds lime.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.explainers.lime import LimeImage, LimeTabular  # noqa: E402
from benchmarks.common import best_throughput, cpu_count, paired_runs, pretrained_image_case  # noqa: E402

N_FEATURES, N_ROWS, TABULAR_SAMPLES, IMAGE_SAMPLES = 30, 100, 5000, 1000


def tabular_mlp():
    """(onnx.ModelProto, training rows, explained rows): an sklearn MLP as a Gemm/Relu graph."""
    import warnings

    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier

    x, labels = make_classification(n_samples=2000, n_features=N_FEATURES, n_informative=12, random_state=0)
    x = x.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short fit: a realistic function is enough
        mlp = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=60, random_state=0).fit(x, labels)
    nodes, inits, current = [], [], "x"
    for layer, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{layer}"), numpy_helper.from_array(b.astype(np.float32), f"b{layer}")]
        nodes.append(helper.make_node("Gemm", [current, f"W{layer}", f"b{layer}"], [f"h{layer}"]))
        current = f"h{layer}"
        if layer < len(mlp.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [current], [f"r{layer}"]))
            current = f"r{layer}"
    # binary MLP: one logit -> [1 - sigmoid, sigmoid], as predict_proba
    nodes += [
        helper.make_node("Sigmoid", [current], ["p1"]),
        helper.make_node("Sub", ["one", "p1"], ["p0"]),
        helper.make_node("Concat", ["p0", "p1"], ["probabilities"], axis=1),
    ]
    inits.append(numpy_helper.from_array(np.ones((1, 1), np.float32), "one"))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])], initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    np.testing.assert_allclose(ae.load(proto, providers="cpu").predict(x[:5]), mlp.predict_proba(x[:5]), atol=1e-5)
    return proto, x[:1500], x[1500 : 1500 + N_ROWS]


def run_tabular(provider: str, repeats: int) -> dict:
    from lime.lime_tabular import LimeTabularExplainer

    proto, train, rows = tabular_mlp()
    model = ae.load(proto, providers=provider)
    explainer = LimeTabular(model, train, num_samples=TABULAR_SAMPLES)
    explainer.explain(rows[:2], target=1, random_state=0, progress=False)  # warm: batch size, session
    ours, theirs = [], []
    lime = LimeTabularExplainer(train, mode="classification", random_state=0)
    predict = lambda batch: model.predict(batch.astype(np.float32))  # noqa: E731
    for repeat in range(repeats):  # paired: ours then lime's, side by side
        began = time.perf_counter()
        explanation = explainer.explain(rows, target=1, random_state=repeat, progress=False)
        ours.append(time.perf_counter() - began)
        began = time.perf_counter()
        reference = np.zeros((N_ROWS, N_FEATURES))
        for index, row in enumerate(rows):
            exp = lime.explain_instance(row, predict, labels=(1,), num_features=10, num_samples=TABULAR_SAMPLES)
            for feature, weight in exp.as_map()[1]:
                reference[index, feature] = weight
        theirs.append(time.perf_counter() - began)
    agree = [np.corrcoef(a, b)[0, 1] for a, b in zip(explanation.values, reference)]
    chosen = [len(set(np.flatnonzero(a)) & set(np.flatnonzero(b))) / 10 for a, b in zip(explanation.values, reference)]
    return {
        "case": f"lime_tabular mlp {N_FEATURES} features, {N_ROWS} rows, num_samples={TABULAR_SAMPLES}, quartile, num_features=10",
        "n_evals": explanation.n_evals,
        "ours_s": ours, "ours_median_s": float(np.median(ours)),
        "lime_s": theirs, "lime_median_s": float(np.median(theirs)),
        "speedups": [b / a for a, b in zip(ours, theirs)],
        "speedup_median": float(np.median([b / a for a, b in zip(ours, theirs)])),
        "coef_correlation_median": float(np.median(agree)),
        "selected_overlap_median": float(np.median(chosen)),
        "score_median": float(np.median(explanation.extras["score"])),
    }


def run_image(provider: str, repeats: int) -> dict:
    from lime.lime_image import LimeImageExplainer

    from agnostic_explain import masks

    path, image, target, _ = pretrained_image_case()
    began = time.perf_counter()
    segments = masks.superpixels(image[0], "quickshift", channel_axis=0)
    segmentation_s = time.perf_counter() - began
    throughput, best_size, bound_model = best_throughput(path, provider, image, 2)
    model = ae.load(path, providers=provider)
    explainer = LimeImage(model, segmentation=segments, num_samples=IMAGE_SAMPLES)
    explanation, cold, bounds, ours = paired_runs(
        lambda repeat: explainer.explain(image, target=target, random_state=repeat + 1, progress=False),
        bound_model, image, best_size, repeats,
    )

    session_input = bound_model.inputs[0].name
    classifier = lambda batch: bound_model.run({session_input: np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)})[0]  # noqa: E731
    hwc = image[0].transpose(1, 2, 0).astype(np.float64)
    lime = LimeImageExplainer(random_state=0)
    began = time.perf_counter()
    theirs = lime.explain_instance(
        hwc, classifier, labels=(target,), top_labels=None, num_samples=IMAGE_SAMPLES, batch_size=best_size,
        segmentation_fn=lambda _: segments,
    )
    lime_s = time.perf_counter() - began
    lime_values = np.zeros(int(segments.max()) + 1)
    for feature, weight in theirs.local_exp[target]:
        lime_values[feature] = weight
    ours_values = explanation.extras["group_values"][0]
    top = lambda values: set(np.argsort(-values)[:10].tolist())  # noqa: E731
    ratios = [a / b for a, b in zip(ours, bounds)]
    return {
        "case": f"lime_image efficientnet_lite0 1x3x224x224 quickshift ({int(segments.max()) + 1} superpixels), hide_color=None, num_samples={IMAGE_SAMPLES}",
        "target": target,
        "n_evals": explanation.n_evals,
        "segmentation_s": segmentation_s,
        "throughput_rows_per_s": {str(size): round(value, 2) for size, value in throughput.items()},
        "best_batch": best_size,
        "auto_batch": next(iter(model.tuned_batch_sizes.values()), None),
        "ours_cold_s": cold,
        "ours_s": ours, "ours_median_s": float(np.median(ours)),
        "model_bound_s": bounds, "model_bound_median_s": float(np.median(bounds)),
        "ratios": ratios, "ratio_median": float(np.median(ratios)),
        "lime_s": lime_s, "lime_over_ours": lime_s / float(np.median(ours)),
        "top10_overlap_with_lime": len(top(ours_values) & top(lime_values)) / 10,
        "coef_correlation_with_lime": float(np.corrcoef(ours_values, lime_values)[0, 1]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-tabular", action="store_true")
    parser.add_argument("--skip-image", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    record = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {cpu_count()} cores".strip(),
        "onnxruntime": __import__("onnxruntime").__version__,
        "lime": __import__("lime").__version__ if hasattr(__import__("lime"), "__version__") else "installed",
    }
    if not args.skip_tabular:
        record["tabular"] = run_tabular(args.provider, args.repeats)
    if not args.skip_image:
        record["image"] = run_image(args.provider, args.repeats)
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lime-{args.provider}.json").write_text(json.dumps(record, indent=2))
    _print(record)
    return 0


def _print(record: dict) -> None:
    print(f"machine: {record['machine']}, onnxruntime {record['onnxruntime']}")
    if "tabular" in record:
        t = record["tabular"]
        print(f"\n{t['case']}")
        print(f"  {'ours (median)':<28}{t['ours_median_s']:>9.2f} s   runs {', '.join(f'{s:.2f}' for s in t['ours_s'])}")
        print(f"  {'lime LimeTabularExplainer':<28}{t['lime_median_s']:>9.2f} s   runs {', '.join(f'{s:.2f}' for s in t['lime_s'])}")
        print(f"  {'speedup (median of pairs)':<28}{t['speedup_median']:>9.1f} x")
        print(f"  agreement with lime: coef correlation {t['coef_correlation_median']:.3f}, top-10 overlap {t['selected_overlap_median']:.2f}")
    if "image" in record:
        i = record["image"]
        print(f"\n{i['case']}")
        print(f"  {'model-bound (median)':<28}{i['model_bound_median_s']:>9.2f} s   batch {i['best_batch']}")
        print(f"  {'ours (median)':<28}{i['ours_median_s']:>9.2f} s   ratio {i['ratio_median']:.2f} (pairs {', '.join(f'{r:.2f}' for r in i['ratios'])}), auto batch {i['auto_batch']}")
        print(f"  {'lime LimeImageExplainer':<28}{i['lime_s']:>9.2f} s   {i['lime_over_ours']:.2f}x ours")
        print(f"  agreement with lime: top-10 overlap {i['top10_overlap_with_lime']:.2f}, coef correlation {i['coef_correlation_with_lime']:.3f}")
    print(f"\npeak RSS {record['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
