"""KernelSHAP on a 30-feature tabular ONNX MLP: agnostic-explain against shap.KernelExplainer.

The case is issue 3's: scikit-learn's breast-cancer data (30 features, standardised), an
``MLPClassifier`` (30-32-16-2, trained here) written by hand as an ONNX graph
(Gemm/Relu/Gemm/Relu/Gemm/Softmax, no skl2onnx), 100 explained rows, ``nsamples=2048``, a
background of the first 10 training rows, the probability of class 1. Both explainers use
the same background and budget; shap runs the same ONNX Runtime session's ``run`` as its
model function, with ``l1_reg=False`` (shap 0.51's ``shap_values`` otherwise keeps only 10
features, which ours never does) and ``silent=True``.

shap is slow, so it explains the first ``--shap-rows`` rows (10 by default) and its time is
extrapolated per row to 100; ours explains all 100. Runs alternate (ours, shap) ``--repeats``
times so that both see the same machine, and medians are reported. The model-bound time is
the rows ours evaluates run through plain ``session.run`` at the best batch size. Per-row
Pearson correlation is taken between the two on the rows shap explained.

Run: ``python benchmarks/kernel_shap.py [--repeats 3] [--shap-rows 10]``.
It prints a table and writes ``benchmarks/results/kernel_shap-cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae  # noqa: E402
from agnostic_explain.explainers.kernel_shap import KernelShap  # noqa: E402
from benchmarks.common import BATCH_SIZES, bound_run, cpu_count, model_throughput  # noqa: E402

ROWS, NSAMPLES, BACKGROUND = 100, 2048, 10
#: an explicit batch size for comparison: the automatic choice stops at 128 rows
LARGE_BATCH = 4096


def trained_mlp():
    """Breast-cancer MLP as ONNX bytes, with the standardised training and explained rows."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.datasets import load_breast_cancer
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    features, labels = load_breast_cancer(return_X_y=True)
    features = StandardScaler().fit_transform(features).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(features))
    train, test = order[:400], order[400:]
    net = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=1000, random_state=0).fit(features[train], labels[train])
    # a binary MLPClassifier has one logistic output: expand it to two softmax logits (0, z)
    last_w, last_b = net.coefs_[-1], net.intercepts_[-1]
    layers = list(zip(net.coefs_[:-1], net.intercepts_[:-1])) + [
        (np.hstack([np.zeros_like(last_w), last_w]), np.hstack([np.zeros_like(last_b), last_b]))
    ]
    nodes, initializers, current = [], [], "x"
    for index, (weight, bias) in enumerate(layers):
        out = f"h{index}"
        nodes.append(helper.make_node("Gemm", [current, f"W{index}", f"b{index}"], [out]))
        initializers += [numpy_helper.from_array(weight.astype(np.float32), f"W{index}"),
                         numpy_helper.from_array(bias.astype(np.float32), f"b{index}")]
        if index < len(layers) - 1:
            nodes.append(helper.make_node("Relu", [out], [f"r{index}"]))
            out = f"r{index}"
        current = out
    nodes.append(helper.make_node("Identity", [current], ["logits"]))
    graph = helper.make_graph(
        nodes, "breast_cancer_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 30])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    check = net.predict_proba(features[test[:5]])[:, 1]
    return proto.SerializeToString(), features[train], features[test[:ROWS]], check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shap-rows", type=int, default=10)
    parser.add_argument("--large-batch", type=int, default=LARGE_BATCH)
    args = parser.parse_args()
    import shap

    onnx_bytes, train, rows, check = trained_mlp()
    background = train[:BACKGROUND]
    models = {"auto": ae.load(onnx_bytes, providers="cpu"),
              str(args.large_batch): ae.load(onnx_bytes, providers="cpu", batch_size=args.large_batch)}
    bound_model = ae.load(onnx_bytes, providers="cpu")
    run = bound_model.run
    logit = run({"x": rows[:5]})[0][:, 1].astype(np.float64)
    np.testing.assert_allclose(1 / (1 + np.exp(-logit)), check, rtol=1e-4, atol=1e-5)

    def function(batch):
        return run({"x": np.asarray(batch, dtype=np.float32)})[0][:, 1]

    explainers = {name: KernelShap(model, background, nsamples=NSAMPLES) for name, model in models.items()}
    cold = {}
    for name, explainer in explainers.items():
        began = time.perf_counter()
        explainer.explain(rows, target=1, random_state=0, progress=False)  # cold: tunes the batch size
        cold[name] = time.perf_counter() - began
    ours_times, shap_times = {name: [] for name in explainers}, []
    for repeat in range(args.repeats):
        for name, explainer in explainers.items():
            began = time.perf_counter()
            ours = explainer.explain(rows, target=1, random_state=repeat, progress=False)
            ours_times[name].append(time.perf_counter() - began)
        np.random.seed(repeat)
        began = time.perf_counter()
        theirs = shap.KernelExplainer(function, background).shap_values(
            rows[: args.shap_rows], nsamples=NSAMPLES, l1_reg=False, silent=True
        )
        shap_times.append((time.perf_counter() - began) * ROWS / args.shap_rows)
    throughput = model_throughput(bound_model, rows[:1], repeats=3, sizes=BATCH_SIZES + (1024, 4096))
    best_size = max(throughput, key=throughput.get)
    bound = bound_run(bound_model, rows[:1], ours.n_evals, best_size)
    correlations = [float(np.corrcoef(ours.values[row], theirs[row])[0, 1]) for row in range(args.shap_rows)]
    efficiency = np.abs(ours.extras["group_values"].sum(axis=1) - (ours.base_values - ours.extras["expected_value"]))
    shap_median = float(np.median(shap_times))
    result = {
        "case": f"KernelShap, breast-cancer MLP 30-32-16-2 ONNX, {ROWS} rows, nsamples={NSAMPLES}, "
                f"background {BACKGROUND} rows, target: class-1 logit",
        "ours": {
            name: {"seconds": times, "median": float(np.median(times)), "cold": cold[name],
                   "speedup": shap_median / float(np.median(times)),
                   "batch": next(iter(models[name].tuned_batch_sizes.values()), models[name].batch_size)}
            for name, times in ours_times.items()
        },
        "shap_seconds_extrapolated": shap_times, "shap_median_extrapolated": shap_median,
        "shap_rows_timed": args.shap_rows,
        "model_rows": int(ours.n_evals), "model_bound_seconds": bound, "best_batch": int(best_size),
        "pearson_per_row": correlations, "pearson_min": min(correlations),
        "efficiency_max_error": float(efficiency.max()),
        "machine": {"cpus": cpu_count(), "python": platform.python_version(), "shap": shap.__version__},
    }
    print(f"{'':34}{'seconds, 100 rows':>18}{'speed-up':>10}")
    for name, entry in result["ours"].items():
        label = "ours, batch_size=" + name
        print(f"{label:34}{entry['median']:>18.2f}{entry['speedup']:>9.1f}x   cold {entry['cold']:.2f}")
    print(f"{'shap.KernelExplainer':34}{shap_median:>18.2f}{1:>9.1f}x   extrapolated from {args.shap_rows} rows")
    print(f"{'model-bound':34}{bound:>18.2f}   {ours.n_evals} rows at batch {best_size}")
    print(f"per-row Pearson with shap: min {min(correlations):.4f}, median {np.median(correlations):.4f}; "
          f"efficiency error max {result['efficiency_max_error']:.1e}")
    out = Path(__file__).resolve().parent / "results" / "kernel_shap-cpu.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
