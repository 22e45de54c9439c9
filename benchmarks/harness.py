"""Run benchmark cases, each in its own process, and measure ours, the model bound and the peers.

Per case, in one process and one run:

1. the model's best throughput: plain ``session.run`` over a sweep of batch sizes on the same
   provider (:func:`benchmarks.common.best_throughput`), measured once per model and run and
   shared by that model's cases;
2. ours, through the public API only (``ae.load`` and an explainer class): one cold call (a
   fresh batch-size cache, so it also measures the automatic batch size), then ``repeats``
   warm calls, each paired with a model-bound run of the rows it evaluated
   (:func:`benchmarks.common.paired_runs`); the ratio is the median of the paired ratios;
3. the peers (:mod:`benchmarks.peers`) once each, with their agreement with ours;
4. peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` read inside the case's process,
   after ours and again after the peers.

Cases run in processes forked from a multiprocessing forkserver that has imported numpy,
ONNX Runtime, agnostic_explain and the peer libraries once, so a case starts in milliseconds;
its resident memory therefore starts at the forkserver's (``start_rss_mib``, reported).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from agnostic_explain.explanation import json_ready  # the one numpy-to-JSON conversion
from benchmarks.cases import Case
from benchmarks.common import (
    BATCH_SIZES, bound_run, model_throughput, paired_runs, probe_providers, split_parts, sweep_providers,
)

#: modules the forkserver imports once for all cases
PRELOAD = ["numpy", "onnxruntime", "agnostic_explain", "benchmarks.harness", "benchmarks.peers", "benchmarks.prepare"]
PEER_PRELOAD = ["torch", "captum.attr", "lime.lime_tabular", "lime.lime_image", "lime.lime_text", "shap"]
#: batch sizes of the throughput sweep per model (large rows stop where memory would)
SWEEP_SIZES = {
    "efficientnet_lite0": BATCH_SIZES,
    "digits_cnn": BATCH_SIZES + (256, 1024, 4096),
    "tabular_mlp": BATCH_SIZES + (256, 1024, 4096),
    "tabular_gbdt": BATCH_SIZES + (256, 1024, 4096),
    "text_transformer": BATCH_SIZES + (256, 1024),
}
QUICK_SWEEP_SIZES = (1, 8, 32)


@dataclass(frozen=True)
class Options:
    """Run settings shared by all cases (picklable: they cross to the case processes)."""

    device: str = "cpu"
    suite: str = "quick"
    repeats: int = 3
    fuse: str = "auto"
    precision: str = "fp32"
    peers: bool = True
    cache: str = ""

    @property
    def load_options(self) -> dict:
        """Keyword arguments for ``ae.load``, only those the user set away from the default."""
        options = {}
        if self.fuse != "auto":
            options["fuse"] = self.fuse == "on"
        if self.precision != "fp32":
            options["precision"] = self.precision
        return options

    @property
    def bound_options(self) -> dict:
        # the bound runs the plain graph at the same precision: fusing is the method's work
        return {key: value for key, value in self.load_options.items() if key == "precision"}


def check_load_options(options: Options, path) -> str | None:
    """A message when this agnostic_explain lacks an option the user set, else None."""
    import agnostic_explain as ae

    for name, value in options.load_options.items():
        try:
            ae.load(path, providers=options.device, **{name: value})
        except TypeError:
            return f"this agnostic_explain has no {name} option"
    return None


def run_cases(cases: list, options: Options, out: Path, *, timeout: float = 1800, log=print) -> list:
    """Run each case in its own process (forkserver); returns their records in order."""
    from benchmarks.prepare import prepare

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD + (PEER_PRELOAD if options.peers else []))
    from multiprocessing import forkserver

    # tqdm reads TQDM_DISABLE when it is imported, in the forkserver: the peers' bars stay off
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        forkserver.ensure_running()  # its imports overlap with building the models below
    finally:
        if saved is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = saved
    cache = Path(options.cache)
    began = time.perf_counter()
    prepare(sorted({case.model for case in cases}), cache)
    log(f"models ready in {time.perf_counter() - began:.1f} s")
    records = []
    for index, case in enumerate(cases):
        result = cache / "records" / f"{index:02d}-{case.name}.json"
        result.parent.mkdir(parents=True, exist_ok=True)
        process = context.Process(target=_child, args=(case, options, str(result)))
        began = time.perf_counter()
        process.start()
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            record = {"error": f"timed out after {timeout:.0f} s"}
        elif result.exists():
            record = json.loads(result.read_text())
        else:
            record = {"error": f"the case process exited with code {process.exitcode} and no result"}
        record.update(case=case.name, method=case.method, model=case.model, domain=case.domain,
                      params=json_ready(case.params), rows=case.rows, sweep=case.sweep, n_samples=case.n_samples,
                      target_ratio=case.target_ratio, describe=case.describe(),
                      process_seconds=time.perf_counter() - began)
        records.append(record)
        log(summary_line(record))
    return records


def summary_line(record: dict) -> str:
    if "error" in record:
        return f"{record['case']:42s} ERROR {record['error'].splitlines()[-1][:120]}"
    peers = "; ".join(
        f"{p['peer']} {p['seconds']:.2f} s" if "seconds" in p else f"{p['peer']}: {p.get('status', p.get('error', ''))[:60]}"
        for p in record.get("peers", []))
    return (f"{record['case']:42s} ours {record['ours_median_s']:8.3f} s  bound {record['bound_median_s']:8.3f} s  "
            f"ratio {record['ratio_median']:5.2f}  cold {record['ours_cold_s']:7.3f} s  {peers}")


def _child(case: Case, options: Options, result_path: str) -> None:
    """The case process: measure, write the record as JSON."""
    # a fresh batch-size cache per case, so that the cold call measures the automatic batch size
    os.environ["AGNOSTIC_EXPLAIN_CACHE_DIR"] = tempfile.mkdtemp(prefix="batch-cache-", dir=options.cache)
    try:
        record = measure(case, options)
    except Exception:  # a failing case is reported, and the next one runs
        record = {"error": traceback.format_exc()}
    Path(result_path).write_text(json.dumps(json_ready(record), indent=1))


def _recorded_bound(model, bound_model, best_size: int, explain):
    """A bound over the very rows the method evaluates, recorded from one extra call.

    A tree ensemble's cost depends on the row (the paths it walks), so the first row repeated
    is not the method's cost: the bound then runs the recorded rows, in batches of the best size.
    Tabular rows are small, so keeping them costs little memory.
    """
    recorded = []

    def rows_of_one_call() -> np.ndarray:
        original = model._run

        def recording(feeds, names):
            recorded.append(np.array(feeds[model.inputs[0].name]))
            return original(feeds, names)

        model._run = recording
        try:
            explain()
        finally:
            del model._run
        return np.concatenate(recorded)

    def bound(explanation) -> float:
        if not recorded:
            recorded[:] = [rows_of_one_call()]
        rows, name = recorded[0], bound_model.inputs[0].name
        batches = [rows[start : start + best_size] for start in range(0, len(rows), best_size)]
        bound_model.run({name: batches[0]})  # warm
        began = time.perf_counter()
        for batch in batches:
            bound_model.run({name: batch})
        return time.perf_counter() - began

    return bound


def measure(case: Case, options: Options) -> dict:
    """All the figures of one case (see the module docstring)."""
    import agnostic_explain as ae
    from benchmarks.prepare import load_model_data

    start_rss = _current_rss_mib()
    data = load_model_data(case.model, options.cache)
    x, target = data.rows(case.rows), data.targets(case.rows)
    throughput, best_size, bound_model = _throughput(case.model, data.path, x[:1], options)
    model = ae.load(data.path, providers=options.device, **options.load_options)
    explainer = build_explainer(case, model, data)
    if case.method == "AblationCam":
        bound = _split_bound(data.path, x, options, bound_model, best_size)
    elif case.domain == "tabular":
        bound = _recorded_bound(model, bound_model, best_size, lambda: explainer.explain(x, target=target, progress=False))
    else:
        bound = None

    made = []  # the last two explanations (other seeds) tell how far sampling noise alone moves ours

    def explain(repeat):
        made[:] = made[-1:] + [explainer.explain(x, target=target, random_state=repeat + 1, progress=False)]
        return made[-1]

    explanation, cold, bounds, times = paired_runs(explain, bound_model, x[:1], best_size, options.repeats, bound=bound)
    ratios = [ours / limit for ours, limit in zip(times, bounds)]
    record = {
        "n_evals": int(explanation.n_evals),
        "throughput_rows_per_s": {str(size): value for size, value in throughput.items()},
        "best_batch": best_size,
        "auto_batch": next(iter(model.tuned_batch_sizes.values()), None),
        "bound_from_sweep_s": explanation.n_evals / throughput[best_size],
        "bound_s": bounds, "bound_median_s": float(np.median(bounds)),
        "ours_cold_s": cold, "ours_s": times, "ours_median_s": float(np.median(times)),
        "ratios": ratios, "ratio_median": float(np.median(ratios)),
        "providers": list(model.providers),
        "load_options": {key: str(value) for key, value in options.load_options.items()},
        "start_rss_mib": start_rss,
        "peak_rss_ours_mib": _peak_rss_mib(),
        "memory_method": "ru_maxrss of the case's own process (getrusage RUSAGE_SELF), forked from the forkserver",
    }
    if case.method == "AblationCam":
        record["n_evals_head"] = int(explanation.extras["n_evals_head"])
        record["n_evals_tail"] = int(explanation.extras["n_evals_tail"])
    if options.precision == "fp16":
        # the same call on the fp32 model, same seed: how far half precision moves the attributions
        full = build_explainer(case, ae.load(data.path, providers=options.device), data)
        reference = full.explain(x, target=target, random_state=options.repeats, progress=False).values
        record["fp16_error"] = float(np.abs(made[-1].values - reference).max() / max(np.abs(reference).max(), 1e-30))
    record["peers"] = run_peers(case, options, data, x, target, made, bound_model, best_size) if options.peers else []
    for peer in record["peers"]:
        if "seconds" in peer:
            peer["speedup"] = peer["seconds"] / record["ours_median_s"]
    record["peak_rss_case_mib"] = _peak_rss_mib()
    return record


def run_peers(case, options, data, x, target, explanations, bound_model, best_size) -> list:
    from benchmarks.peers import PEERS, PeerContext

    previous = explanations[-2] if len(explanations) > 1 else None
    context = PeerContext(case, data, x, target, explanations[-1], bound_model, best_size, options.device, previous)
    results = []
    for name in case.peers:
        try:
            results.append(PEERS[name](context))
        except Exception as error:  # one broken peer must not hide the others
            results.append({"peer": name, "error": f"{type(error).__name__}: {error}"})
    return results


def build_explainer(case: Case, model, data):
    """Our explainer for ``case`` on the loaded ``model``, through the public API."""
    import agnostic_explain as ae

    params, arrays = dict(case.params), data.arrays
    mask_id = int(arrays["mask_token_id"]) if "mask_token_id" in arrays else None
    if case.method == "KernelShap":
        return ae.KernelShap(model, arrays["background"], **params)
    if case.method == "LimeTabular":
        return ae.LimeTabular(model, arrays["train"], **params)
    if case.method == "LimeText":
        return ae.LimeText(model, mask_token_id=mask_id, **params)
    if case.method == "LimeImage":
        return ae.LimeImage(model, segmentation=arrays["segments"], **params)
    if case.method == "FeatureAblation" and mask_id is not None:
        params.setdefault("baseline", mask_id)
    return getattr(ae, case.method)(model, **params)


def _throughput(name: str, path: str, row: np.ndarray, options: Options):
    """The batch-size sweep of model ``name``, measured by its first case and reused by the others.

    Returns the sweep, the best batch size, and a freshly loaded bound model (its own session).
    """
    import agnostic_explain as ae

    saved = Path(options.cache) / name / f"throughput-{options.device}.json"
    probes = probe_providers(options.device)
    if saved.exists():
        found = json.loads(saved.read_text())
        throughput, best, providers = found["throughput"], found["best"], probes[found["probe"]]
        throughput = {int(size): value for size, value in throughput.items()}
    else:
        sizes = QUICK_SWEEP_SIZES if options.suite == "quick" else SWEEP_SIZES[name]
        repeats = 1 if options.suite == "quick" else options.repeats
        throughput, best, providers = sweep_providers(path, options.device, row, repeats, sizes, options.bound_options)
        saved.write_text(json.dumps({"throughput": throughput, "best": best, "probe": probes.index(providers)}))
    return throughput, best, ae.load(path, providers=providers, **options.bound_options)


def _split_bound(path, x, options, full, full_best):
    """Ablation-CAM's bound: its head rows at the full model's best throughput, its tail rows at the tail's."""
    state = {}

    def bound(explanation) -> float:
        if not state:
            layer = explanation.params["layer"]
            tail, activations = split_parts(path, layer, x[:1], options.device, options.bound_options)
            n_tail = int(explanation.extras["n_evals_tail"])
            sizes = tuple(size for size in BATCH_SIZES + (256, 512, 1024, 2048) if size <= n_tail)
            throughput = model_throughput(tail, activations, 1 if options.suite == "quick" else 3, sizes)
            state.update(tail=tail, activations=activations, best=max(throughput, key=throughput.get))
        head = bound_run(full, x[:1], int(explanation.extras["n_evals_head"]), full_best)
        return head + bound_run(state["tail"], state["activations"], int(explanation.extras["n_evals_tail"]), state["best"])

    return bound


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def options_dict(options: Options) -> dict:
    return {key: value for key, value in asdict(options).items() if key != "cache"}
