"""Smoke run of the benchmark harness: part of the quick suite, end to end, in a temporary folder.

The timings themselves are not asserted (they belong to benchmarks/, and this machine is shared);
what is checked is that a run writes its files, that its figures are real measurements
(positive, finite), and that our attributions equal Captum's on the same model function.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("captum")
pytest.importorskip("shap")

from benchmarks.cases import SUITES, suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUBSET = "kernelshap-tabular*,featureablation-tabular*,occlusion-digits*,ablationcam-digits*"


def test_case_names_are_unique_and_selectable():
    for name in SUITES:
        names = [case.name for case in suite(name)]
        assert len(names) == len(set(names)), name
    assert [case.name for case in suite("quick", SUBSET)] == [
        "kernelshap-tabular_mlp-n128", "kernelshap-tabular_mlp-n256", "featureablation-tabular_mlp",
        "occlusion-digits_cnn", "ablationcam-digits_cnn",
    ]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "cpu-quick"
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "--suite", "quick", "--only", SUBSET, "--repeats", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


def test_quick_run_writes_results_table_and_plots(quick_run):
    out, results = quick_run
    for name in ("results.json", "RESULTS.md", "efficiency.png", "time_vs_samples.png"):
        assert (out / name).stat().st_size > 0, name
    machine = results["machine"]
    for field in ("cpu", "cores", "ram_gib", "date", "versions"):
        assert machine[field], field
    assert "onnxruntime-gpu" in machine["versions"] or "onnxruntime" in machine["versions"]
    table = (out / "RESULTS.md").read_text()
    assert machine["cpu"] in table and "no GPU figures measured yet" in table
    assert [case["case"] for case in results["cases"]] == [case.name for case in suite("quick", SUBSET)]
    assert table.count("\n| **") == len(results["cases"])  # one table row per case


def test_quick_run_figures_are_measurements(quick_run):
    _, results = quick_run
    for case in results["cases"]:
        assert "error" not in case, case.get("error")
        for field in ("bound_median_s", "ours_median_s", "ours_cold_s", "ratio_median", "peak_rss_ours_mib"):
            assert math.isfinite(case[field]) and case[field] > 0, (case["case"], field, case[field])
        assert case["n_evals"] >= case["rows"]
        assert case["ratio_median"] == pytest.approx(
            sorted(o / b for o, b in zip(case["ours_s"], case["bound_s"]))[len(case["ours_s"]) // 2])
    ablation = next(case for case in results["cases"] if case["case"] == "ablationcam-digits_cnn")
    assert ablation["n_evals"] == ablation["n_evals_head"] + ablation["n_evals_tail"]


def test_quick_run_matches_captum_within_tolerance(quick_run):
    _, results = quick_run
    case = next(case for case in results["cases"] if case["case"] == "featureablation-tabular_mlp")
    (peer,) = case["peers"]
    assert peer["peer"] == "Captum FeatureAblation" and peer["seconds"] > 0
    agreement = peer["agreement"]
    assert agreement["metric"] == "max relative difference"
    assert agreement["ok"] and agreement["value"] <= agreement["tolerance"] <= 1e-4
    sampled = [peer for case in results["cases"] if case["method"] == "KernelShap" for peer in case["peers"]]
    assert [peer["peer"] for peer in sampled] == ["shap KernelExplainer"] * 2
    assert all(peer["agreement"]["metric"] == "median Pearson" for peer in sampled)
