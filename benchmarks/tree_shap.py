"""TreeShap on converted tree ensembles, side by side with shap.TreeExplainer on the native models.

Models are trained here on a synthetic regression/classification task (12 features, 6,000
rows): scikit-learn gradient boosting and a random forest, an XGBoost regressor, a LightGBM
binary classifier. Each is converted with the project's converters plus
:func:`converters.tree_cover.with_cover`, and both explainers explain the same rows (the first
2,000 and 20,000 rows of a fresh sample), ``tree_path_dependent`` and ``interventional`` (100
background rows). shap runs on the native model, as a user would call it: for XGBoost and
LightGBM path-dependent values that is the framework's own multithreaded C++ ``pred_contribs``,
for scikit-learn shap's C++ extension. Our time includes ``explain``'s one ONNX Runtime pass.

After one untimed call of each on 10 rows (ours parses the ONNX trees once per explainer), runs
alternate (ours, shap) ``--repeats`` times; the table gives the median of each and the
median of the per-pair ratios (shap / ours: above 1 means we are faster), and the largest
difference from shap's values relative to their largest magnitude.

shap's interventional algorithm is slow (a minute for 2,000 rows of the LightGBM model), so it
is timed on the first 500 rows and its time scaled to the rows explained (marked "scaled from
500 rows"): its cost is linear in the rows, and its values are compared on those rows. Cases
with 20,000 rows run one pair (``LARGE_REPEATS``), those with 2,000 rows ``--repeats`` pairs.

KernelShap (agnostic_explain.KernelShap, same background) explains 8 rows of one model; its
error is against TreeShap's exact interventional values, which KernelShap approximates.

Run: ``python -m benchmarks.tree_shap [--repeats 3] [--quick]``; writes
``benchmarks/results/tree_shap/RESULTS.md`` and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import agnostic_explain as ae
from agnostic_explain.explainers.tree_shap import TreeShap

OUT = Path(__file__).resolve().parent / "results" / "tree_shap"
N_FEATURES, N_TRAIN, BACKGROUND = 12, 6000, 100
#: shap's interventional algorithm is timed on this many rows, its time scaled to all of them
SHAP_INTERVENTIONAL_ROWS = 500
#: runs per case at 20,000 rows (one pair: shap takes minutes there)
LARGE_REPEATS = 1


def data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    signal = x[:, 0] + 2 * x[:, 1] * (x[:, 2] > 0) + np.sin(2 * x[:, 3]) + 0.5 * x[:, 4] * x[:, 5]
    return x, signal + 0.3 * rng.normal(size=n)


def models(quick):
    """(name, native model, converted proto) for each case."""
    import lightgbm
    import xgboost
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    from converters.lightgbm import from_lightgbm
    from converters.sklearn import from_sklearn
    from converters.tree_cover import with_cover
    from converters.xgboost import from_xgboost

    x, y = data(N_TRAIN, 0)
    cases = [
        ("sklearn GradientBoosting, 100 trees, depth 3", GradientBoostingRegressor(n_estimators=100, max_depth=3,
                                                                                 random_state=0), from_sklearn, y),
        ("sklearn RandomForest, 100 trees, depth 7", RandomForestRegressor(n_estimators=100, max_depth=7,
                                                                         random_state=0, n_jobs=2), from_sklearn, y),
        ("XGBoost regressor, 300 trees, depth 6", xgboost.XGBRegressor(n_estimators=300, max_depth=6, n_jobs=2,
                                                                       random_state=0), from_xgboost, y),
        ("LightGBM binary, 500 trees, 31 leaves, depth <= 8", lightgbm.LGBMClassifier(
            n_estimators=500, num_leaves=31, max_depth=8, random_state=0, verbose=-1, n_jobs=2), from_lightgbm, y > 0),
    ]
    if quick:
        cases = cases[:1] + cases[2:3]
    for name, native, convert, target in cases:
        native.fit(x, target)
        yield name, native, with_cover(convert(native, x), native)


def timed(function):
    began = time.perf_counter()
    result = function()
    return time.perf_counter() - began, result


def shap_values(explainer, rows):
    values = np.asarray(explainer.shap_values(rows, check_additivity=False))
    return values[..., 1] if values.ndim == 3 else values


def run_case(name, native, proto, rows_options, repeats):
    import shap

    model = ae.load(proto, providers="cpu")
    binary = hasattr(native, "classes_")
    # None for a regressor's one output: an int target is resolved row by row in Python (see the report)
    target = 1 if binary else None
    explain_rows, _ = data(max(rows_options), 1)
    background = data(BACKGROUND, 2)[0]
    results = []
    for perturbation in ("tree_path_dependent", "interventional"):
        ours_explainer = TreeShap(model, background=background, feature_perturbation=perturbation)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs_explainer = shap.TreeExplainer(
                native, data=background if perturbation == "interventional" else None,
                feature_perturbation=perturbation)
        for n_rows in rows_options:
            rows = explain_rows[:n_rows]
            shap_rows = rows if perturbation == "tree_path_dependent" else rows[:SHAP_INTERVENTIONAL_ROWS]
            scale = n_rows / len(shap_rows)
            ours_times, theirs_times = [], []
            # warm: the first call parses the ONNX trees (once per explainer) and starts threads
            ours_explainer.explain(rows[:10], target=target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                shap_values(theirs_explainer, rows[:10])
            for _ in range(repeats if n_rows <= 2000 else LARGE_REPEATS):
                seconds, ours = timed(partial(ours_explainer.explain, rows, target=target))
                ours_times.append(seconds)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    seconds, theirs = timed(partial(shap_values, theirs_explainer, shap_rows))
                theirs_times.append(seconds * scale)
            error = np.abs(ours.values[: len(shap_rows)] - theirs).max() / np.abs(theirs).max()
            ratios = np.array(theirs_times) / np.array(ours_times)
            results.append({
                "model": name, "perturbation": perturbation, "rows": n_rows, "ours_s": float(np.median(ours_times)),
                "shap_s": float(np.median(theirs_times)), "ratio": float(np.median(ratios)),
                "shap_rows": len(shap_rows), "max_relative_difference": float(error), "pairs": len(ours_times),
            })
            print(json.dumps(results[-1]), flush=True)
    return results


def kernel_case(name, proto, repeats):
    model = ae.load(proto, providers="cpu")
    rows = data(8, 1)[0]
    background = data(BACKGROUND, 2)[0]
    exact = TreeShap(model, background=background, feature_perturbation="interventional").explain(rows, target=0)
    exact = TreeShap(model, background=background, feature_perturbation="interventional").explain(rows, target=0)
    results = []
    for nsamples in ("auto", 512):
        times = []
        for seed in range(repeats):
            explainer = ae.KernelShap(model, background=background, nsamples=nsamples)
            seconds, explanation = timed(partial(explainer.explain, rows, target=0, random_state=seed))
            times.append(seconds)
        error = np.abs(explanation.values - exact.values).max() / np.abs(exact.values).max()
        results.append({"model": name, "nsamples": nsamples, "rows": len(rows), "kernel_s": float(np.median(times)),
                            "tree_s": float(exact.seconds), "max_relative_error": float(error),
                            "exact": bool(explanation.extras.get("exact", False))})
        print(json.dumps(results[-1]), flush=True)
    return results


def render(results, kernel, command) -> str:
    lines = [
        "# TreeShap against shap.TreeExplainer",
        "",
        (f"Command: `{command}`. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
         "(shared with other jobs while it ran, so single timings are noisy; the ratio is the median of "
         "paired runs, after one untimed warm-up call of each). Times in seconds, medians; ratio = shap / ours "
         "(above 1: TreeShap is faster). "
        "\"from 500\": shap timed on the first 500 rows and scaled to all of them (its cost is linear in the "
        "rows). Difference: largest |ours - shap| over the largest |shap value| (on the rows shap explained)."),
        "",
        "| model | perturbation | rows | pairs | TreeShap (s) | shap (s) | ratio | difference |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        shap_time = f"{r['shap_s']:.2f}" + (f" (from {r['shap_rows']})" if r["shap_rows"] != r["rows"] else "")
        lines.append(f"| {r['model']} | {r['perturbation']} | {r['rows']:,} | {r['pairs']} | {r['ours_s']:.2f} | "
                     f"{shap_time} | "
                     f"{r['ratio']:.2f} | {r['max_relative_difference']:.1e} |")
    lines += [
        "",
        "## KernelShap on the same model",
        "",
        "Error: largest |KernelShap - TreeShap interventional| over the largest |TreeShap value|, same background.",
        "",
        "| model | nsamples | rows | KernelShap (s) | TreeShap interventional (s) | error | exact enumeration |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in kernel:
        lines.append(f"| {r['model']} | {r['nsamples']} | {r['rows']} | {r['kernel_s']:.2f} | {r['tree_s']:.3f} | "
                     f"{r['max_relative_error']:.1e} | {r['exact']} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="two models, 2,000 rows only")
    parser.add_argument("--out", type=Path, default=OUT)
    options = parser.parse_args(argv)
    rows_options = (2000,) if options.quick else (2000, 20000)
    results, kernel = [], []
    for index, (name, native, proto) in enumerate(models(options.quick)):
        results += run_case(name, native, proto, rows_options, options.repeats)
        if index == 0:
            kernel += kernel_case(name, proto, options.repeats)
    options.out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.tree_shap " + " ".join(argv if argv is not None else sys.argv[1:])
    (options.out / "results.json").write_text(json.dumps({"cases": results, "kernel_shap": kernel}, indent=2))
    (options.out / "RESULTS.md").write_text(render(results, kernel, command.strip()))
    print(render(results, kernel, command.strip()))


if __name__ == "__main__":
    main()
