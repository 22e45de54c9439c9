"""Generative models: attributions over a decoder's latent dimensions, sensitivity and traversals.

A decoder (or generator) maps latent codes ``z`` of shape (batch, latent_dim) to outputs
(images, vectors). Its "prediction" has no class, so the explained scalar is built from the
decoded output: how far it moves from the unperturbed decoding (``"distance"``), how much
mass falls inside a region (``"region"``), or any ``f(outputs) -> (batch,)``. The existing
explainers do the work; this module only picks the target and validates the latent.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import InputShapeError, ParameterError
from ..explainers.base import make_explanation
from ..explainers.kernel_shap import KernelShap
from ..explainers.occlusion import Occlusion
from ..explanation import Explanation
from ..runtime.model import Model
from ..runtime.loading import load

__all__ = ["LatentAttribution", "latent_traversal", "sensitivity_map"]

_METHODS = ("occlusion", "kernel_shap")
_TARGETS = ("distance", "region")


def _loaded(decoder) -> Model:
    return decoder if isinstance(decoder, Model) else load(decoder)


def latent_rows(model: Model, z) -> np.ndarray:
    """``z`` as float rows of shape (n, latent_dim), checked against the decoder's input.

    One latent of shape (latent_dim,) is accepted without its batch axis.
    """
    spec = model.input_spec()
    rows = np.asarray(z, dtype=spec.dtype if spec.is_floating else np.float32)
    if rows.ndim == 1:
        rows = rows[None]
    size = spec.shape[1] if spec.shape is not None and len(spec.shape) == 2 else None
    expected = size if isinstance(size, (int, np.integer)) else None
    if rows.ndim != 2 or (expected is not None and rows.shape[1] != expected):
        raise InputShapeError(
            f"z: the decoder's input {spec.name!r} takes latents of size "
            f"{expected if expected is not None else 'latent_dim'}, shape (batch, "
            f"{expected if expected is not None else 'latent_dim'}); got shape {np.shape(z)}"
        )
    return rows


class LatentAttribution:
    """Attribute a scalar of a decoder's output to its latent dimensions.

    Parameters
    ----------
    decoder : str, bytes, onnx.ModelProto, Model or callable
        Takes ``z`` of shape (batch, latent_dim); see :func:`agnostic_explain.load`.
    method : {"occlusion", "kernel_shap"}, default "occlusion"
        ``"occlusion"`` sets one latent dimension at a time to ``baseline``
        (:class:`~agnostic_explain.Occlusion` with ``window=(1,)``); ``"kernel_shap"`` runs
        :class:`~agnostic_explain.KernelShap` with the one background row ``baseline``.
    target : {"distance", "region"} or callable, default "distance"
        ``"distance"``: ``||decode(z') - decode(z)||^2``, the squared distance of a perturbed
        decoding to the unperturbed one of the same row; ``"region"``: the sum of the output
        inside ``region``; a callable ``f(outputs) -> ndarray of shape (batch,)``.
    region : array_like of bool, optional
        Shaped like one decoded row (or flat with the same size); needed for ``"region"``.
    baseline : float or array_like of shape (latent_dim,), default 0.0
        The value a removed latent dimension takes (0 is the prior mean of a VAE).

    Notes
    -----
    ``"distance"`` is a target callable of ``(outputs, owners)``: each perturbed decoding is
    compared with its own latent row's reference decoding, so all rows run in one ``explain``
    call. With occlusion, the attribution of dimension ``k`` is then ``0 - distance(z with z_k removed)``:
    minus how far removing it moves the output, so the most negative value is the most
    influential dimension. ``Explanation.extras["effect"]`` holds that distance, positive.

    Examples
    --------
    >>> import numpy as np
    >>> from agnostic_explain.runtime.callable import CallableModel
    >>> weights = np.diag([1.0, 2.0, 3.0]).astype(np.float32)
    >>> decoder = CallableModel(lambda z: z @ weights)
    >>> explanation = LatentAttribution(decoder).explain(np.ones((1, 3)))
    >>> explanation.extras["effect"].round(2).tolist()
    [[1.0, 4.0, 9.0]]
    """

    def __init__(self, decoder, *, method="occlusion", target="distance", region=None, baseline=0.0):
        self.decoder = decoder
        self.method = method
        self.target = target
        self.region = region
        self.baseline = baseline

    def _explainer(self, model: Model, latent_dim: int):
        baseline = np.broadcast_to(np.asarray(self.baseline, dtype=np.float32), (latent_dim,))
        if self.method == "occlusion":
            return Occlusion(model, window=(1,), baseline=baseline)
        return KernelShap(model, background=baseline[None].copy())

    def _check(self, model: Model, rows: np.ndarray):
        if self.method not in _METHODS:
            raise ParameterError(f"method must be one of {_METHODS}, got {self.method!r}")
        if not callable(self.target) and self.target not in _TARGETS:
            raise ParameterError(
                f"target must be one of {_TARGETS} or a callable f(outputs) -> (batch,), got {self.target!r}"
            )
        try:
            np.broadcast_to(np.asarray(self.baseline, dtype=np.float32), (rows.shape[1],))
        except ValueError:
            raise ParameterError(
                f"baseline must be a scalar or shape ({rows.shape[1]},), got shape {np.shape(self.baseline)}"
            ) from None
        if self.target != "region":
            if self.region is not None:
                raise ParameterError(f"region is only used with target='region', got target={self.target!r}")
            return None
        if self.region is None:
            raise ParameterError("target='region' needs region=, a boolean mask shaped like one decoded row")
        region = np.asarray(self.region)
        if region.dtype != bool:
            raise ParameterError(f"region must be a boolean mask, got dtype {region.dtype}")
        return region

    def explain(self, z, *, random_state=None, progress=None) -> Explanation:
        """Attributions over the latent dimensions of each row of ``z``.

        Parameters
        ----------
        z : array_like of shape (n_rows, latent_dim)
        random_state : int, optional
            Seed for ``"kernel_shap"``.
        progress : bool, optional

        Returns
        -------
        Explanation
            ``values`` of shape (n_rows, latent_dim); ``extras["effect"]``, shape
            (n_rows, latent_dim), the target's drop ``base - target(z with dim k removed)``
            as Occlusion measures it, positive for a distance (occlusion only).
        """
        started = time.perf_counter()
        model = _loaded(self.decoder)
        rows = latent_rows(model, z)
        region = self._check(model, rows)
        explainer = self._explainer(model, rows.shape[1])
        run = dict(random_state=random_state, progress=progress)
        if self.target == "distance":
            references = model.predict(rows).reshape(len(rows), -1).astype(np.float64)
            target = _distance_to(references)
        else:
            target = _region_sum(region) if self.target == "region" else self.target
        whole = explainer.explain(rows, target=target, **run)
        values, base_values = whole.values, whole.base_values
        n_evals = whole.n_evals + (len(rows) if self.target == "distance" else 0)
        extras = {"effect": -values} if self.method == "occlusion" and self.target == "distance" else {}
        params = {
            "decoder_method": self.method,
            "target": self.target if isinstance(self.target, str) else "callable",
            "baseline": float(self.baseline) if np.ndim(self.baseline) == 0 else "array",
        }
        return make_explanation(
            model, values=values, base_values=base_values, data=rows, target=None, method=f"latent_{self.method}",
            params=params, n_evals=n_evals, started=started, input_name=model.input_spec().name,
            output_name=model.output_spec().name, extras=extras, describes_input=False,
        )


def _distance_to(references: np.ndarray):
    """The squared distance of each decoded row to its own explained row's decoding."""

    def distance(outputs: np.ndarray, owners: np.ndarray) -> np.ndarray:
        flat = outputs.reshape(len(outputs), -1).astype(np.float64)
        if flat.shape[1] != references.shape[1]:
            raise ParameterError(f"decoded rows have {flat.shape[1]} values, the reference {references.shape[1]}")
        return ((flat - references[owners]) ** 2).sum(axis=1)

    return distance


def _region_sum(region: np.ndarray):
    mask = region.ravel()

    def region_sum(outputs: np.ndarray) -> np.ndarray:
        flat = outputs.reshape(len(outputs), -1)
        if flat.shape[1] != mask.size:
            raise ParameterError(
                f"region has {mask.size} elements but each decoded row has {flat.shape[1]} "
                f"(shape {outputs.shape[1:]})"
            )
        return flat[:, mask].sum(axis=1, dtype=np.float64)

    return region_sum


def sensitivity_map(decoder, z, *, delta: float = 0.5) -> np.ndarray:
    """How much each output element moves when one latent dimension moves by ``delta``.

    Parameters
    ----------
    decoder : str, bytes, onnx.ModelProto, Model or callable
    z : array_like of shape (latent_dim,) or (1, latent_dim)
        One latent.
    delta : float, default 0.5
        The step added to each dimension in turn.

    Returns
    -------
    ndarray of shape (latent_dim, *output_shape)
        ``|decode(z + delta e_k) - decode(z)|`` for each dimension ``k``; all
        ``latent_dim + 1`` decodings run in one ``predict`` call.

    Examples
    --------
    >>> from agnostic_explain.runtime.callable import CallableModel
    >>> decoder = CallableModel(lambda z: z * np.float32([1, 10]))
    >>> sensitivity_map(decoder, [0.0, 0.0], delta=1.0).tolist()
    [[1.0, 0.0], [0.0, 10.0]]
    """
    model = _loaded(decoder)
    row = latent_rows(model, z)
    if len(row) != 1:
        raise InputShapeError(f"z: sensitivity_map takes one latent, got {len(row)} rows")
    if not np.isfinite(delta) or delta == 0:
        raise ParameterError(f"delta must be a finite non-zero float, got {delta!r}")
    latent_dim = row.shape[1]
    steps = np.vstack([row, row + delta * np.eye(latent_dim, dtype=row.dtype)])
    decoded = model.predict(steps)
    return np.abs(decoded[1:] - decoded[:1])


def latent_traversal(decoder, z, dim: int, values) -> np.ndarray:
    """Decode ``z`` with dimension ``dim`` set to each of ``values`` (one batched call).

    Parameters
    ----------
    decoder : str, bytes, onnx.ModelProto, Model or callable
    z : array_like of shape (latent_dim,) or (1, latent_dim)
    dim : int
        The latent dimension varied.
    values : array_like of shape (n_values,)

    Returns
    -------
    ndarray of shape (n_values, *output_shape)

    Examples
    --------
    >>> from agnostic_explain.runtime.callable import CallableModel
    >>> latent_traversal(CallableModel(lambda z: 2 * z), [1.0, 1.0], 1, [0.0, 3.0]).tolist()
    [[2.0, 0.0], [2.0, 6.0]]
    """
    model = _loaded(decoder)
    row = latent_rows(model, z)
    if len(row) != 1:
        raise InputShapeError(f"z: latent_traversal takes one latent, got {len(row)} rows")
    latent_dim = row.shape[1]
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 0 <= dim < latent_dim:
        raise ParameterError(f"dim must be an int in 0..{latent_dim - 1}, got {dim!r}")
    values = np.asarray(values, dtype=row.dtype)
    if values.ndim != 1 or len(values) == 0:
        raise ParameterError(f"values must be a non-empty 1-D array, got shape {values.shape}")
    steps = np.repeat(row, len(values), axis=0)
    steps[:, dim] = values
    return model.predict(steps)
