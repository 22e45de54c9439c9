"""The case table: which method runs on which model, at which size, against which peers.

A case is one method x model x input size. The full suite uses the sizes people use (the
defaults of the methods, or the sizes of the papers and of the earlier benchmark scripts); the
quick suite runs the same code at tiny sizes, so that the whole harness runs in seconds as a
smoke test. Cases that share a ``sweep`` name differ only in the number of samples, and are
drawn as time against n_samples.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

#: model name -> domain; the ratio target depends on the domain (the issue's targets)
DOMAINS = {
    "tabular_mlp": "tabular",
    "tabular_gbdt": "tabular",
    "digits_cnn": "image",
    "efficientnet_lite0": "image",
    "text_transformer": "text",
}
TARGETS = {"image": 1.15, "text": 1.15, "tabular": 1.5}
#: the parameter that counts samples, for the sweeps and the table
SAMPLES_PARAM = {
    "KernelShap": "nsamples", "LimeTabular": "num_samples", "LimeImage": "num_samples",
    "LimeText": "num_samples", "Rise": "n_masks", "ShapleySampling": "n_permutations",
}


@dataclass(frozen=True)
class Case:
    """One benchmark case.

    Attributes
    ----------
    method : str
        The explainer class exported by ``agnostic_explain``.
    model : str
        A key of :data:`DOMAINS` (built by :mod:`benchmarks.prepare`).
    params : dict
        Keyword arguments of the explainer (besides the model and its data).
    rows : int
        Rows explained in one call.
    peers : tuple of str
        Names in :data:`benchmarks.peers.PEERS`.
    sweep : str, optional
        The n_samples sweep this case belongs to.
    tag : str, optional
        Appended to the name, to tell apart cases that differ only in ``rows``.
    """

    method: str
    model: str
    params: dict = field(default_factory=dict)
    rows: int = 1
    peers: tuple = ()
    sweep: str | None = None
    tag: str = ""

    @property
    def domain(self) -> str:
        return DOMAINS[self.model]

    @property
    def target_ratio(self) -> float:
        return TARGETS[self.domain]

    @property
    def n_samples(self) -> int | None:
        name = SAMPLES_PARAM.get(self.method)
        return None if name is None else self.params.get(name)

    @property
    def name(self) -> str:
        size = f"-n{self.n_samples}" if self.n_samples is not None else ""
        return f"{self.method.lower()}-{self.model}{size}" + (f"-{self.tag}" if self.tag else "")

    def describe(self) -> str:
        """Parameters in one short line, for the table."""
        shown = ", ".join(f"{key}={value}" for key, value in self.params.items())
        rows = f"{self.rows} row{'s' * (self.rows != 1)}"
        return f"{rows}; {shown}" if shown else rows


def _full() -> list:
    tab, text, digits, cnn = "tabular_mlp", "text_transformer", "digits_cnn", "efficientnet_lite0"
    gbdt = "tabular_gbdt"
    cases = [
        Case("KernelShap", tab, {"nsamples": 2048}, 100, ("shap", "captum_kernel_shap"), sweep="kernel_shap-tabular"),
        Case("LimeTabular", tab, {"num_samples": 5000}, 100, ("lime_tabular",)),
        Case("FeatureAblation", tab, {"baseline": 0.0}, 100, ("captum_feature_ablation",)),
        Case("ShapleySampling", tab, {"n_permutations": 25, "baseline": 0.0}, 100, ("captum_shapley_sampling",)),
        Case("LimeText", text, {"num_samples": 5000}, 10, ("lime_text", "captum_lime_text")),
        Case("KernelShap", text, {"nsamples": 2048}, 10, ("shap", "captum_kernel_shap")),
        Case("FeatureAblation", text, {}, 10, ("captum_feature_ablation",)),
        Case("Occlusion", digits, {"window": (1, 2, 2), "stride": (1, 1, 1)}, 10),
        Case("Rise", digits, {"n_masks": 1000, "cells": 4}, 10, ("dianna_rise",)),
        Case("LimeImage", digits, {"num_samples": 1000}, 10, ("lime_image",)),
        Case("AblationCam", digits, {}, 10),
        # the same at 100 rows: per-call costs (checks, the unperturbed run, the result) no longer weigh
        Case("Occlusion", digits, {"window": (1, 2, 2), "stride": (1, 1, 1)}, 100, tag="100rows"),
        Case("Rise", digits, {"n_masks": 1000, "cells": 4}, 100, tag="100rows"),
        Case("LimeImage", digits, {"num_samples": 1000}, 100, tag="100rows"),
        Case("AblationCam", digits, {}, 100, tag="100rows"),
        # a gradient-boosted model of 300 trees: microseconds per row, as tabular models in use are
        Case("KernelShap", gbdt, {"nsamples": 2048}, 20, ("shap",)),
        Case("LimeTabular", gbdt, {"num_samples": 5000}, 20, ("lime_tabular",)),
        Case("FeatureAblation", gbdt, {"baseline": 0.0}, 100),
        Case("ShapleySampling", gbdt, {"n_permutations": 25, "baseline": 0.0}, 20),
        Case("Occlusion", cnn, {"window": (3, 16, 16), "stride": (3, 8, 8)}, 1, ("captum_occlusion",)),
        Case("Rise", cnn, {"n_masks": 1000, "cells": 8}, 1, ("dianna_rise",)),
        Case("LimeImage", cnn, {"num_samples": 1000}, 1, ("lime_image",), sweep="lime_image-efficientnet"),
        Case("AblationCam", cnn, {}, 1, ("captum_layer_ablation",)),
    ]
    for n in (256, 512, 1024):
        cases.append(Case("KernelShap", tab, {"nsamples": n}, 100, ("shap",), sweep="kernel_shap-tabular"))
    for n in (125, 250, 500):
        cases.append(Case("LimeImage", cnn, {"num_samples": n}, 1, ("lime_image",), sweep="lime_image-efficientnet"))
    return cases


def _quick() -> list:
    tab, text, digits, cnn = "tabular_mlp", "text_transformer", "digits_cnn", "efficientnet_lite0"
    return [
        Case("KernelShap", tab, {"nsamples": 128}, 8, ("shap",), sweep="kernel_shap-tabular"),
        Case("KernelShap", tab, {"nsamples": 256}, 8, ("shap",), sweep="kernel_shap-tabular"),
        Case("LimeTabular", tab, {"num_samples": 500}, 8, ("lime_tabular",)),
        Case("FeatureAblation", tab, {"baseline": 0.0}, 8, ("captum_feature_ablation",)),
        Case("ShapleySampling", tab, {"n_permutations": 4, "baseline": 0.0}, 8, ("captum_shapley_sampling",)),
        Case("LimeText", text, {"num_samples": 200}, 2, ("lime_text",)),
        Case("KernelShap", text, {"nsamples": 128}, 2, ("captum_kernel_shap",)),
        Case("FeatureAblation", text, {}, 2, ("captum_feature_ablation",)),
        Case("Occlusion", digits, {"window": (1, 2, 2), "stride": (1, 2, 2)}, 4),
        Case("Rise", digits, {"n_masks": 64, "cells": 4}, 2, ("dianna_rise",)),
        Case("LimeImage", digits, {"num_samples": 64}, 2, ("lime_image",)),
        Case("AblationCam", digits, {}, 4),
        Case("Occlusion", cnn, {"window": (3, 112, 112), "stride": (3, 112, 112)}, 1, ("captum_occlusion",)),
    ]


SUITES = {"full": _full, "quick": _quick}


def suite(name: str, only: str | None = None) -> list:
    """The cases of suite ``name`` ("quick" or "full"), those whose name matches ``only`` if given.

    ``only`` is a shell pattern (``fnmatch``) on :attr:`Case.name`, or several separated by
    commas; a pattern without wildcards matches any name that contains it.

    Examples
    --------
    >>> [case.name for case in suite("quick", "occlusion")]
    ['occlusion-digits_cnn', 'occlusion-efficientnet_lite0']
    """
    if name not in SUITES:
        raise ValueError(f"suite must be one of {sorted(SUITES)}, got {name!r}")
    cases = SUITES[name]()
    if only:
        patterns = [p if any(c in p for c in "*?[") else f"*{p}*" for p in only.split(",")]
        cases = [case for case in cases if any(fnmatch.fnmatch(case.name, p) for p in patterns)]
    return cases
