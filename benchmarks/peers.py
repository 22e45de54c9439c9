"""The peers: other libraries explaining the same model function, timed beside ours.

Captum runs on the PyTorch source of the ONNX model (the same weights, so the same function up
to float32 rounding); lime, shap and DIANNA call the ONNX model through a plain ONNX Runtime
session (``model.run``) at the batch size with the model's best throughput. Each peer returns
its time and how far its attributions are from ours: the largest difference relative to the
largest attribution where both compute the same deterministic quantity, else the median per-row
Pearson correlation (both sample), with the tolerance it is judged by. Slow peers explain the
first few rows only, and their time is scaled to all rows (``rows_timed`` says so).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

#: max relative difference allowed where both sides compute the same thing in float32
EXACT = 1e-4


@dataclass
class PeerContext:
    """What a peer needs: the case, its data and rows, our explanation, a plain ONNX session."""

    case: object
    data: object
    x: np.ndarray
    target: object
    explanation: object
    model: object  # a plain OnnxModel (the bound model): its ``run`` is one session.run
    best_size: int
    device: str = "cpu"
    previous: object = None  # our explanation before the last one (another seed), for sampled agreement
    _module: object = field(default=None, repr=False)

    def targets(self, n=None) -> list:
        n = len(self.x) if n is None else n
        return [self.target] * n if isinstance(self.target, int) else list(self.target[:n])

    def function(self, batch) -> np.ndarray:
        """The ONNX model on a batch in the model's layout: all outputs of the first output tensor."""
        spec = self.model.inputs[0]
        batch = np.asarray(batch)
        if np.issubdtype(spec.dtype, np.integer):
            batch = np.rint(batch)
        return self.model.run({spec.name: batch.astype(spec.dtype)})[0]

    def module(self):
        """The PyTorch source on the peers' device, after one untimed forward pass (torch's warm-up)."""
        if self._module is None:
            import torch

            self._module = self.data.module().to(self.torch_device)
            with torch.no_grad():
                self._module(self.tensor(self.x[:1]))
        return self._module

    @property
    def torch_device(self) -> str:
        import torch

        return "cuda" if self.device == "cuda" and torch.cuda.is_available() else "cpu"

    def tensor(self, array):
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.torch_device)


def _version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package


def max_rel_diff(ours, theirs) -> dict:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    value = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))
    return {"metric": "max relative difference", "value": value, "tolerance": EXACT,
            "verdict": "ok" if value <= EXACT else "differs", "ok": value <= EXACT}


def _median_pearson(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    values = []
    for a, b in zip(ours.reshape(len(ours), -1), theirs.reshape(len(theirs), -1)):
        values.append(float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0)
    return float(np.median(values))


def sampled_agreement(ctx: "PeerContext", theirs, tolerance: float, extract=None) -> dict:
    """Median per-row Pearson correlation of ours and theirs, judged against ours with another seed.

    Two runs of a sampling method differ by their sampling noise: ``self`` is the correlation of
    our last two calls (other seeds). The peer agrees when it reaches ``tolerance``, or is as
    close to ours as ours is to itself (within 0.1); when ours does not even reach the tolerance
    against itself, the comparison is "inconclusive" (too few samples to tell).
    """
    extract = extract or (lambda explanation: explanation.values)
    k = len(theirs)
    value = _median_pearson(extract(ctx.explanation)[:k], theirs)
    own = None if ctx.previous is None else _median_pearson(extract(ctx.explanation)[:k], extract(ctx.previous)[:k])
    result = verdict(value, own, tolerance)
    return {"metric": "median Pearson", "value": value, "tolerance": tolerance, "self": own,
            "verdict": result, "ok": result == "ok"}


def verdict(value: float, own: float | None, tolerance: float) -> str:
    """"ok", "inconclusive" or "differs" for a correlation ``value`` with ours, ``own`` ours vs ours.

    ok: the tolerance is reached, or the peer is within 0.1 of ours vs ours where that shows a
    signal (at least 0.5). inconclusive: ours does not reach the tolerance against itself.
    """
    if value >= tolerance or (own is not None and own >= 0.5 and value >= own - 0.1):
        return "ok"
    return "inconclusive" if own is not None and own < tolerance else "differs"


def _timed(function):
    began = time.perf_counter()
    result = function()
    return result, time.perf_counter() - began


def _result(name, library, seconds, rows_timed, rows, agreement, settings) -> dict:
    return {"peer": name, "library": library, "seconds": seconds * rows / rows_timed, "measured_seconds": seconds,
            "rows_timed": rows_timed, "rows": rows, "agreement": agreement, "settings": settings}


# -- Captum, on the PyTorch source model ------------------------------------------------------

def captum_occlusion(ctx: PeerContext) -> dict:
    import torch
    from captum.attr import Occlusion

    params, per_eval, module = ctx.case.params, 32, ctx.module()
    with torch.no_grad():
        values, seconds = _timed(lambda: Occlusion(module).attribute(
            ctx.tensor(ctx.x), sliding_window_shapes=tuple(params["window"]), strides=tuple(params["stride"]),
            baselines=0.0, target=ctx.targets(), perturbations_per_eval=per_eval).cpu().numpy())
    return _result("Captum Occlusion", _version("captum"), seconds, len(ctx.x), len(ctx.x),
                   max_rel_diff(ctx.explanation.values, values), f"perturbations_per_eval={per_eval}")


def captum_feature_ablation(ctx: PeerContext) -> dict:
    import torch
    from captum.attr import FeatureAblation

    baseline = ctx.case.params.get("baseline", _mask_id(ctx))
    per_eval, module = ctx.x.shape[1], ctx.module()  # every feature of every row in one forward pass
    with torch.no_grad():
        values, seconds = _timed(lambda: FeatureAblation(module).attribute(
            ctx.tensor(ctx.x), baselines=baseline, target=ctx.targets(), perturbations_per_eval=per_eval
        ).cpu().numpy())
    return _result("Captum FeatureAblation", _version("captum"), seconds, len(ctx.x), len(ctx.x),
                   max_rel_diff(ctx.explanation.values, values), f"perturbations_per_eval={per_eval}")


def captum_shapley_sampling(ctx: PeerContext) -> dict:
    import torch
    from captum.attr import ShapleyValueSampling

    n, per_eval, module = ctx.case.params["n_permutations"], ctx.x.shape[1], ctx.module()
    with torch.no_grad():
        values, seconds = _timed(lambda: ShapleyValueSampling(module).attribute(
            ctx.tensor(ctx.x), baselines=ctx.case.params.get("baseline", 0.0), target=ctx.targets(), n_samples=n,
            perturbations_per_eval=per_eval).cpu().numpy())
    return _result("Captum ShapleyValueSampling", _version("captum"), seconds, len(ctx.x), len(ctx.x),
                   sampled_agreement(ctx, values, 0.9), f"n_samples={n}, perturbations_per_eval={per_eval}")


def _per_row_captum(ctx: PeerContext, attribute, rows_timed: int):
    import torch

    values = []
    began = time.perf_counter()
    with torch.no_grad():
        for row, target in zip(ctx.x[:rows_timed], ctx.targets(rows_timed)):
            values.append(attribute(ctx.tensor(row[None]), target).cpu().numpy()[0])
    return np.array(values), time.perf_counter() - began


def captum_kernel_shap(ctx: PeerContext) -> dict:
    from captum.attr import KernelShap

    n, per_eval, k = ctx.case.params["nsamples"], 256, min(len(ctx.x), 10)
    explainer = KernelShap(ctx.module())
    values, seconds = _per_row_captum(ctx, lambda row, target: explainer.attribute(
        row, baselines=_mask_id(ctx), target=target, n_samples=n, perturbations_per_eval=per_eval), k)
    return _result("Captum KernelShap", _version("captum"), seconds, k, len(ctx.x), sampled_agreement(ctx, values, 0.9),
                   f"n_samples={n}, perturbations_per_eval={per_eval}, baselines={_mask_id(ctx)} (one row)")


def captum_lime_text(ctx: PeerContext) -> dict:
    """Captum's Lime with lime's text kernel and a ridge surrogate (its sampling stays Bernoulli(0.5))."""
    import torch
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    def similarity(original, perturbed, sample, **kwargs):
        sample = sample.double()
        cosine = 1 - sample.sum() / (torch.linalg.norm(sample) * sample.numel() ** 0.5 + 1e-12)
        return torch.sqrt(torch.exp(-((100 * cosine) ** 2) / 25.0**2))

    n, per_eval, k = ctx.case.params["num_samples"], 256, min(len(ctx.x), 10)
    explainer = Lime(ctx.module(), interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values, seconds = _per_row_captum(ctx, lambda row, target: explainer.attribute(
            row, baselines=_mask_id(ctx), target=target, n_samples=n, perturbations_per_eval=per_eval), k)
    return _result("Captum Lime", _version("captum"), seconds, k, len(ctx.x),
                   sampled_agreement(ctx, values, 0.7),
                   f"n_samples={n}, ridge alpha 1, lime's text kernel; ours keeps the top 10 tokens")


def captum_layer_ablation(ctx: PeerContext) -> dict:
    """Captum's LayerFeatureAblation, one mask group per channel: the Ablation-CAM channel weights."""
    import torch
    from captum.attr import LayerFeatureAblation

    from benchmarks.cam import LAYERS, torch_layer

    layer = ctx.explanation.params["layer"]
    if layer != LAYERS[0]:
        return {"peer": "Captum LayerFeatureAblation", "status": f"no PyTorch module known for layer {layer}"}
    module = ctx.module()
    layer_module = torch_layer(module, layer)
    weights = ctx.explanation.extras["channel_weights"][0].astype(np.float64)
    target, per_eval = ctx.targets(1)[0], 32
    mask = torch.arange(len(weights), device=ctx.torch_device).view(1, -1, 1, 1)
    with torch.no_grad():
        image = ctx.tensor(ctx.x[:1])
        base = float(module(image)[0, target])
        deltas, seconds = _timed(lambda: LayerFeatureAblation(module, layer_module).attribute(
            image, target=target, layer_mask=mask, perturbations_per_eval=per_eval)[0, :, 0, 0].cpu().numpy())
    return _result("Captum LayerFeatureAblation", _version("captum"), seconds, 1, 1,
                   max_rel_diff(weights, deltas.astype(np.float64) / base),
                   f"one group per channel, perturbations_per_eval={per_eval}; compared: channel weights")


# -- lime, shap and DIANNA, on the ONNX model ---------------------------------------------------

def shap_kernel(ctx: PeerContext) -> dict:
    import shap

    n, k = ctx.case.params["nsamples"], min(len(ctx.x), 10)
    target = ctx.targets(1)[0]
    background = ctx.data.arrays["background"]
    explainer = shap.KernelExplainer(lambda batch: ctx.function(batch)[:, target], background)
    np.random.seed(0)
    values, seconds = _timed(lambda: explainer.shap_values(ctx.x[:k], nsamples=n, l1_reg=False, silent=True))
    return _result("shap KernelExplainer", _version("shap"), seconds, k, len(ctx.x),
                   sampled_agreement(ctx, values, 0.95),
                   f"nsamples={n}, l1_reg=False, background {len(background)} row(s)")


def lime_tabular(ctx: PeerContext) -> dict:
    from lime.lime_tabular import LimeTabularExplainer

    n, k, target = ctx.case.params["num_samples"], min(len(ctx.x), 20), ctx.targets(1)[0]
    explainer = LimeTabularExplainer(ctx.data.arrays["train"], mode="classification", random_state=0)
    values = np.zeros((k, ctx.x.shape[1]))
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logits, not probabilities: lime warns that they do not sum to 1
        for index, row in enumerate(ctx.x[:k]):
            exp = explainer.explain_instance(row, ctx.function, labels=(target,), num_features=10, num_samples=n)
            for feature, weight in exp.as_map()[target]:
                values[index, feature] = weight
    seconds = time.perf_counter() - began
    return _result("lime LimeTabularExplainer", _version("lime"), seconds, k, len(ctx.x),
                   sampled_agreement(ctx, values, 0.8), f"num_samples={n}, num_features=10, quartile")


def lime_text(ctx: PeerContext) -> dict:
    from lime.lime_text import LimeTextExplainer

    from benchmarks.text_model import ids_of, words

    n, k = ctx.case.params["num_samples"], min(len(ctx.x), 10)
    explainer = LimeTextExplainer(bow=False, mask_string="MASK", random_state=0)
    values = np.zeros((k, ctx.x.shape[1]))
    began = time.perf_counter()
    for index, (row, target) in enumerate(zip(ctx.x[:k], ctx.targets(k))):
        exp = explainer.explain_instance(words(row), lambda texts: ctx.function(ids_of(texts)), labels=(target,),
                                         num_features=10, num_samples=n)
        for position, weight in exp.as_map()[target]:
            values[index, position] = weight
    seconds = time.perf_counter() - began
    return _result("lime LimeTextExplainer", _version("lime"), seconds, k, len(ctx.x),
                   sampled_agreement(ctx, values, 0.8), f"num_samples={n}, bow=False, num_features=10")


def lime_image(ctx: PeerContext) -> dict:
    from lime.lime_image import LimeImageExplainer

    n, k = ctx.case.params["num_samples"], min(len(ctx.x), 10)
    segments = ctx.data.arrays["segments"]
    channels = ctx.x.shape[1]

    def classifier(batch):  # lime hands RGB, channels last; the model wants NCHW with `channels`
        return ctx.function(np.ascontiguousarray(batch[..., :channels].transpose(0, 3, 1, 2)))

    explainer = LimeImageExplainer(random_state=0)
    theirs = np.zeros((k, int(segments.max()) + 1))
    began = time.perf_counter()
    for index, (row, target) in enumerate(zip(ctx.x[:k], ctx.targets(k))):
        image = row[0] if channels == 1 else row.transpose(1, 2, 0)  # lime makes a grey image RGB itself
        exp = explainer.explain_instance(
            image.astype(np.float64), classifier, labels=(target,), top_labels=None, num_samples=n,
            batch_size=ctx.best_size, segmentation_fn=lambda _: segments, hide_color=None)
        for feature, weight in exp.local_exp[target]:
            theirs[index, feature] = weight
    seconds = time.perf_counter() - began
    agreement = sampled_agreement(ctx, theirs, 0.9, lambda explanation: explanation.extras["group_values"])
    return _result("lime LimeImageExplainer", _version("lime"), seconds, k, len(ctx.x), agreement,
                   f"num_samples={n}, the same {theirs.shape[1]} superpixels")


def dianna_rise(ctx: PeerContext) -> dict:
    try:
        from dianna.methods.rise_image import RISEImage
    except ImportError:
        return {"peer": "DIANNA RISE", "status": "not installed"}
    if importlib.util.find_spec("xarray") is None:  # DIANNA imports it only once it explains
        return {"peer": "DIANNA RISE", "status": "not installed (xarray missing)"}
    n, cells, k = ctx.case.params["n_masks"], ctx.case.params["cells"], min(len(ctx.x), 10)
    theirs = []
    began = time.perf_counter()
    for row, target in zip(ctx.x[:k], ctx.targets(k)):
        explainer = RISEImage(n_masks=n, feature_res=cells, p_keep=0.5, axis_labels={0: "channels"})
        theirs.append(explainer.explain(ctx.function, row, labels=[target], batch_size=ctx.best_size)[0])
    seconds = time.perf_counter() - began
    # RISE's map is shared by the channels: compare channel 0
    agreement = sampled_agreement(ctx, np.array(theirs), 0.8, lambda explanation: explanation.values[:, 0])
    return _result("DIANNA RISE", _version("dianna"), seconds, k, len(ctx.x), agreement,
                   f"n_masks={n}, feature_res={cells}, p_keep=0.5")


def _mask_id(ctx: PeerContext):
    mask = ctx.data.arrays.get("mask_token_id")
    return 0.0 if mask is None else int(mask)


PEERS = {
    "captum_occlusion": captum_occlusion,
    "captum_feature_ablation": captum_feature_ablation,
    "captum_shapley_sampling": captum_shapley_sampling,
    "captum_kernel_shap": captum_kernel_shap,
    "captum_lime_text": captum_lime_text,
    "captum_layer_ablation": captum_layer_ablation,
    "shap": shap_kernel,
    "lime_tabular": lime_tabular,
    "lime_text": lime_text,
    "lime_image": lime_image,
    "dianna_rise": dianna_rise,
}
