"""The model-parameter randomization test of Adebayo et al. (2018), "Sanity checks for saliency maps".

An explanation that does not change when the model's weights are re-drawn at random cannot be
explaining the model: it shows something of the input alone (an edge detector does this).
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, require
from ..explainers.base import Explainer
from ..explanation import Explanation
from ..graph.randomize import randomize, weight_layers
from ..graph.source import open_model
from ..runtime.loading import load
from .localisation import channel_summed_maps

__all__ = ["RandomizationResult", "randomization_check"]

_SIMILARITIES = ("auto", "spearman", "ssim")


@dataclass(frozen=True, eq=False)
class RandomizationResult:
    """Similarity of explanations of randomized models to the original explanation.

    Attributes
    ----------
    layers : tuple of str
        The layer randomized at each step, in randomization order (output to input); with
        ``cascade`` a step also keeps every layer of the steps before it randomized.
    spearman : ndarray of shape (n_steps, n_rows)
        Spearman rank correlation of the absolute attributions with the original ones.
    ssim : ndarray of shape (n_steps, n_rows) or None
        Structural similarity of the absolute channel-summed maps, each scaled to [0, 1];
        None for rows that are not images or when not asked for.
    threshold : float
        A method is flagged when the mean Spearman correlation stays above it at every step.
    flagged : bool
        True when the explanations stayed similar: the method looks insensitive to the model.
    message : str
        One sentence saying what was found.
    cascade : bool
    original : Explanation
        The explanation of the unchanged model.
    n_evals : int
        Model rows evaluated over all explanations, the original included.
    seconds : float
    """

    layers: tuple
    spearman: np.ndarray
    ssim: np.ndarray | None
    threshold: float
    flagged: bool
    message: str
    cascade: bool
    original: Explanation
    n_evals: int
    seconds: float

    @property
    def passed(self) -> bool:
        """True when the explanations changed with the model (not flagged)."""
        return not self.flagged

    def __repr__(self) -> str:
        return (f"RandomizationResult(steps={len(self.layers)}, rows={self.spearman.shape[1]}, "
                f"flagged={self.flagged}, message={self.message!r})")


def randomization_check(explainer_factory, model, x, *, target="predicted", layers=None, cascade=True,
                        random_state=0, similarity="auto", threshold=0.9, explain_kwargs=None
                        ) -> RandomizationResult:
    """Re-explain ``x`` on models with re-drawn weights and measure how much the explanation changes.

    Parameters
    ----------
    explainer_factory : callable or Explainer
        ``explainer_factory(model) -> Explainer``, so that the same method and settings are
        rebuilt on each randomized model. An Explainer instance is accepted when its
        constructor's arguments are stored as attributes of the same names.
    model : str, os.PathLike, bytes, onnx.ModelProto or OnnxModel
        An ONNX model (its weights are edited with :func:`agnostic_explain.graph.randomize`).
    x : array_like of shape (n_rows, ...)
    target : as for ``explain``, default "predicted"
        Resolved once on the original model; the randomized models explain the same classes.
    layers : list of str, optional
        Weight layers to randomize, one per step, in order; by default all of
        :func:`agnostic_explain.graph.weight_layers`, from the output back to the input.
    cascade : bool, default True
        Step ``k`` randomizes layer ``k`` and every layer above it (Adebayo's cascading test);
        False randomizes each layer alone (the independent test).
    random_state : int
        Seed of the weight draws and of sampling explainers.
    similarity : {"auto", "spearman", "ssim"}
        "auto" and "ssim" measure both Spearman and, for image rows, SSIM (needs scikit-image);
        "spearman" measures Spearman only.
    threshold : float, default 0.9
        The method is flagged as insensitive when the mean Spearman correlation over rows
        stays above ``threshold`` at every step.
    explain_kwargs : dict, optional
        Further arguments of ``explain`` (``output``, ``input``, ``fixed_inputs``,
        ``output_transform``).

    Returns
    -------
    RandomizationResult

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> from agnostic_explain.data import DEFAULT_MODEL_PATH, load_samples
    >>> images, _ = load_samples()
    >>> result = randomization_check(lambda m: ae.Occlusion(m, window=(1, 2, 2)), DEFAULT_MODEL_PATH,
    ...                              images[:2], similarity="spearman")
    >>> result.spearman.shape[1], result.flagged
    (2, False)
    """
    started = time.perf_counter()
    if similarity not in _SIMILARITIES:
        raise ParameterError(f"similarity must be one of {_SIMILARITIES}, got {similarity!r}")
    if not np.isscalar(threshold) or not -1.0 <= float(threshold) <= 1.0:
        raise ParameterError(f"threshold must be a number in [-1, 1], got {threshold!r}")
    if isinstance(random_state, np.random.Generator) or not isinstance(random_state, (int, np.integer, type(None))):
        raise ParameterError(f"random_state must be an int or None (it seeds every step alike), got {random_state!r}")
    factory, first = _factory(explainer_factory, model)
    kwargs = dict(explain_kwargs or {})
    if "target" in kwargs or "random_state" in kwargs:
        raise ParameterError("explain_kwargs: pass target and random_state as arguments of randomization_check")
    order = weight_layers(model) if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    if not order:
        raise ParameterError("layers: no layer names given")
    original = first.explain(x, target=target, random_state=random_state, **kwargs)
    same_target = fixed_target(original, target)
    images = original.data.ndim in (3, 4) and similarity != "spearman"
    original_maps = channel_summed_maps(original) if images else None
    spearman, ssim, n_evals = [], [], original.n_evals
    folder = open_model(model).base_dir  # external weights stay in the model's folder
    for step, name in enumerate(order):
        edited = randomize(model, layers=name, cascade=cascade, random_state=_step_seed(random_state, step))
        explanation = factory(load(edited, external_data_dir=folder)).explain(x, target=same_target, random_state=random_state, **kwargs)
        n_evals += explanation.n_evals
        spearman.append(_spearman_rows(original.values, explanation.values))
        if images:
            ssim.append(_ssim_rows(original_maps, channel_summed_maps(explanation)))
    spearman = np.asarray(spearman, dtype=np.float64)
    ssim_array = np.asarray(ssim, dtype=np.float64) if images and all(s is not None for s in ssim) else None
    means = spearman.mean(axis=1)
    flagged = bool(np.all(means > threshold))
    kind = "cascading" if cascade else "independent"
    if flagged:
        message = (f"flagged: the explanation stayed similar to the original on every randomized model "
                   f"(lowest mean Spearman {means.min():.3f} > threshold {threshold}, {kind} test over "
                   f"{len(order)} layers); it looks insensitive to the model's weights")
    else:
        message = (f"passed: the mean Spearman correlation fell from {means[0]:.3f} to {means[-1]:.3f} "
                   f"(lowest {means.min():.3f} <= threshold {threshold}, {kind} test over {len(order)} layers)")
    return RandomizationResult(
        layers=tuple(order), spearman=spearman, ssim=ssim_array, threshold=float(threshold), flagged=flagged,
        message=message, cascade=bool(cascade), original=original, n_evals=int(n_evals),
        seconds=time.perf_counter() - started,
    )


def _factory(explainer_factory, model):
    """(factory, explainer of the original model)."""
    if isinstance(explainer_factory, Explainer):
        instance = explainer_factory
        cls = type(instance)
        names = [name for name in list(inspect.signature(cls.__init__).parameters)[1:] if name != "model"]
        missing = [name for name in names if not hasattr(instance, name)]
        if missing:
            raise ParameterError(
                f"explainer_factory: a {cls.__name__} instance cannot be rebuilt on a randomized model "
                f"(no attributes {missing}); pass a factory such as lambda model: {cls.__name__}(model, ...)"
            )
        settings = {name: getattr(instance, name) for name in names}
        return (lambda randomized: cls(randomized, **settings)), instance
    if not callable(explainer_factory):
        raise ParameterError(
            f"explainer_factory must be a callable model -> explainer or an Explainer, got "
            f"{type(explainer_factory).__name__}"
        )
    first = explainer_factory(model)
    if not callable(getattr(first, "explain", None)):
        raise ParameterError(
            f"explainer_factory(model) must return an object with an explain method, got {type(first).__name__}"
        )
    return explainer_factory, first


def fixed_target(original: Explanation, requested):
    """The target that makes a randomized model explain the original explanation's classes."""
    if original.target is None:
        return requested  # a callable: the same function
    indices = np.asarray(original.target)
    if indices.ndim == 1:
        return [int(index) for index in indices]
    if indices.shape[1] == 0:
        return None
    return [tuple(int(i) for i in row) for row in indices]


def _step_seed(random_state, step: int):
    return None if random_state is None else int(random_state) + step


def _spearman_rows(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Spearman correlation of |attributions| per row; a constant map has no rank order and scores 0
    (or 1 against another constant map)."""
    stats = require("scipy.stats", "scipy")
    result = np.empty(len(reference))
    for row, (a, b) in enumerate(zip(reference, other)):
        a, b = np.abs(np.asarray(a, np.float64).ravel()), np.abs(np.asarray(b, np.float64).ravel())
        if np.ptp(a) == 0 or np.ptp(b) == 0:
            result[row] = 1.0 if np.ptp(a) == np.ptp(b) else 0.0
        else:
            result[row] = stats.spearmanr(a, b).statistic
    return result


def _ssim_rows(reference: np.ndarray, other: np.ndarray) -> np.ndarray | None:
    """SSIM per row of |maps| scaled to [0, 1]; None when the maps are smaller than SSIM's 3 x 3 window."""
    side = min(reference.shape[1:])
    if side < 3:
        return None
    metrics = require("skimage.metrics", "scikit-image")
    window = min(7, side if side % 2 else side - 1)
    return np.array([
        metrics.structural_similarity(_unit(a), _unit(b), data_range=1.0, win_size=window)
        for a, b in zip(reference, other)
    ])


def _unit(heat: np.ndarray) -> np.ndarray:
    heat = np.abs(heat)
    low, high = heat.min(), heat.max()
    return (heat - low) / (high - low) if high > low else np.zeros_like(heat)
