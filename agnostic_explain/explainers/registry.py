"""The one registry of per-row explainers: the CLI, the data-set jobs and the common tests read it.

Every :class:`~agnostic_explain.explainers.base.Explainer` subclass imported below is
registered under its ``method`` name: adding a method is its own file plus its import line
here. Names are accepted as the CLI spells them (``"lime-image"``), as results record them
(``"lime_image"``) or as the class is named (``"LimeImage"``).

>>> explainer_class("lime-image").__name__, explainer_class("Occlusion").method
('LimeImage', 'occlusion')
"""

# ruff: noqa: F401 - each explainer import below is its registration

from __future__ import annotations

import difflib
import inspect

from ..errors import ParameterError
from .ablation import FeatureAblation
from .base import Explainer
from .cam import AblationCam, ScoreCam
from .deep_lift import DeepLift
from .grad_cam import GradCam, GradCamPlusPlus
from .gradient_shap import GradientShap
from .guided import GuidedBackprop, GuidedGradCam
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .kernel_shap import KernelShap
from .layer_gradient_x_activation import LayerGradientXActivation
from .layer_integrated_gradients import LayerIntegratedGradients
from .lime_image import LimeImage
from .lime_tabular import LimeTabular
from .lime_text import LimeText
from .occlusion import Occlusion
from .rise import Rise
from .saliency import Saliency
from .shapley_sampling import ShapleySampling
from .smooth_grad import SmoothGrad
from .tree_shap import TreeShap
from .unit_ablation import UnitAblation

__all__ = ["build", "explainer_class", "explainers", "method_names"]


def explainers() -> dict[str, type]:
    """Every registered explainer class, by its ``method`` name, sorted."""
    found = {
        value.method: value
        for value in globals().values()
        if isinstance(value, type) and issubclass(value, Explainer) and value.method != Explainer.method
    }
    return dict(sorted(found.items()))


def method_names() -> list[str]:
    """The registered methods as the CLI spells them (``"lime-image"``)."""
    return [name.replace("_", "-") for name in explainers()]


def _plain(name: str) -> str:
    return name.replace("-", "").replace("_", "").lower()


def explainer_class(method, parameter: str = "method") -> type:
    """The explainer class ``method`` names; an unknown name is refused with the close ones."""
    for canonical, cls in explainers().items():
        if isinstance(method, str) and _plain(method) in (_plain(canonical), _plain(cls.__name__)):
            return cls
    close = difflib.get_close_matches(str(method).replace("_", "-"), method_names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ParameterError(f"{parameter}: unknown method {method!r}{hint}; expected one of {method_names()}")


def build(method, model, params: dict, *, parameter: str = "params") -> Explainer:
    """An explainer of ``model`` from its name and constructor ``params``, checked first.

    An unknown parameter is refused with the closest known one; a missing required one is
    named, with how to give it.
    """
    cls = explainer_class(method)
    signature = inspect.signature(cls.__init__)
    accepted = [name for name in list(signature.parameters)[2:]]  # after self and model
    for name in params:
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(
                f"{parameter} for {cls.method!r}: no parameter {name!r}{hint}; it takes {accepted}"
            )
    missing = [
        name for name in accepted
        if signature.parameters[name].default is inspect.Parameter.empty and name not in params
    ]
    if missing:
        how = ", ".join(f"{name}=@FILE.npy" if name in cls.data_params else f"{name}=VALUE" for name in missing)
        raise ParameterError(
            f"{parameter} for {cls.method!r}: missing {missing}; pass them (on the command line: --param {how})"
        )
    return cls(model, **params)
