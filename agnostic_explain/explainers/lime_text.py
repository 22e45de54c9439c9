"""LIME for token-id models: tokens (or words) replaced by a mask token, as lime's ``LimeTextExplainer``."""

from __future__ import annotations


import numpy as np

from ..perturbation import masks
from ..errors import ParameterError
from ..runtime.batching import Feeds
from ..perturbation.surrogates import fit_local, lime_kernel
from .base import Explainer, Problem, recorded
from .lime_image import binary_cosine_distance
from .lime_tabular import check_lime_params


class LimeText(Explainer):
    """Local surrogate explanations of token sequences (Ribeiro et al. 2016).

    The explained input holds token ids, shape (n_rows, seq_len). Each sample removes a
    number of groups (tokens, or words) drawn uniformly from ``1 .. G`` and then which
    ones, as lime's text explainer does (the first sample removes none); removed tokens
    become ``mask_token_id``. Weights are ``sqrt(exp(-d**2 / 25**2))`` with ``d`` 100 times
    the cosine distance between the kept-groups vector and all-ones, and a weighted ridge is
    fitted per row, all rows at once. Each token gets its group's coefficient.

    An attention mask (or any other input of the same (batch, seq_len) shape) is passed in
    ``fixed_inputs``, one row per explained row, and stays unchanged; with
    ``mask_attention=True`` the removed positions are also set to 0 in the fixed input named
    by ``attention_input``.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
    mask_token_id : int
        The id that replaces removed tokens (e.g. the tokenizer's ``[MASK]`` or ``<unk>``).
    groups : array_like of int, optional
        Word ids per token, shape (seq_len,) or (n_rows, seq_len): tokens with the same id
        are removed together. By default each token position is its own group.
    vocabulary : sequence, dict or callable, optional
        Maps ids to strings (a list or dict indexed by id, or ``f(ids) -> list of str`` such
        as a tokenizer's ``convert_ids_to_tokens``); the strings go to ``extras["tokens"]``.
    mask_attention : bool, default False
    attention_input : str, optional
        The fixed input that ``mask_attention`` edits; needed only when there are several.
    num_samples : int, default 5000
    kernel_width : float, default 25
    feature_selection : str, default "auto"
    num_features : int or None, default 10
        As lime's text explainer; None keeps every group.
    regressor : scikit-learn regressor, optional
    alpha : float, default 1.0

    Examples
    --------
    >>> import agnostic_explain as ae
    >>> scores = np.array([0.0, 1.0, -1.0, 0.5], dtype=np.float32)
    >>> model = ae.CallableModel(lambda ids: scores[ids].sum(axis=1, keepdims=True), dtype=np.int64)
    >>> ids = np.array([[1, 2, 3, 1]])
    >>> explanation = LimeText(model, mask_token_id=0, num_samples=200, num_features=None, alpha=0.0).explain(ids, target=0)
    >>> np.round(explanation.values, 2).tolist()
    [[1.0, -1.0, 0.5, 1.0]]
    """

    method = "lime_text"
    row_kinds = ("tokens",)

    def __init__(
        self,
        model,
        mask_token_id=None,
        *,
        groups=None,
        vocabulary=None,
        mask_attention=False,
        attention_input=None,
        num_samples=5000,
        kernel_width=25.0,
        feature_selection="auto",
        num_features=10,
        regressor=None,
        alpha=1.0,
    ):
        super().__init__(model)
        self.mask_token_id = mask_token_id
        self.groups = groups
        self.vocabulary = vocabulary
        self.mask_attention = mask_attention
        self.attention_input = attention_input
        self.num_samples = num_samples
        self.kernel_width = kernel_width
        self.feature_selection = feature_selection
        self.num_features = num_features
        self.regressor = regressor
        self.alpha = alpha

    def _params(self) -> dict:
        return {
            "mask_token_id": None if self.mask_token_id is None else int(self.mask_token_id),
            "groups": recorded(self.groups),
            "mask_attention": bool(self.mask_attention), "attention_input": self.attention_input,
            "num_samples": self.num_samples, "kernel_width": self.kernel_width,
            "feature_selection": self.feature_selection, "num_features": self.num_features,
            "regressor": None if self.regressor is None else type(self.regressor).__name__, "alpha": self.alpha,
        }

    def _check(self, rows: np.ndarray) -> np.ndarray:
        """The word groups of each row."""
        check_lime_params(self.num_samples, self.feature_selection, self.num_features, self.kernel_width, self.alpha,
                          n_rows=len(rows))
        if self.mask_token_id is None or not isinstance(self.mask_token_id, (int, np.integer)) or isinstance(self.mask_token_id, bool):
            raise ParameterError(f"LimeText needs mask_token_id, the int id that replaces removed tokens; got {self.mask_token_id!r}")
        if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.integer):
            raise ParameterError(f"LimeText explains token ids of shape (n_rows, seq_len) and an integer dtype; got {rows.shape} {rows.dtype}")
        return self._groups(rows)

    def _groups(self, rows: np.ndarray) -> np.ndarray:
        n_rows, length = rows.shape
        if self.groups is None:
            return np.broadcast_to(masks.token_positions(length), rows.shape)
        given = np.asarray(self.groups)
        if given.shape not in ((length,), (n_rows, length)) or not np.issubdtype(given.dtype, np.integer):
            raise ParameterError(f"groups must hold int word ids of shape ({length},) or ({n_rows}, {length}), got {given.dtype} {given.shape}")
        given = np.broadcast_to(given, rows.shape)
        return np.stack([masks.token_positions(length, words=row) for row in given])

    def _attribute(self, problem: Problem) -> np.ndarray:
        rows = problem.rows
        groups = problem.checked
        n_rows, n_samples = len(rows), int(self.num_samples)
        counts = groups.max(axis=1) + 1
        n_max = int(counts.max())
        rng = problem.rng
        # lime_text: remove `size ~ U{1..G}` groups chosen at random; the first sample removes none
        size = rng.integers(1, counts[:, None] + 1, size=(n_rows, n_samples))
        noise = rng.random((n_rows, n_samples, n_max))
        noise[np.broadcast_to(np.arange(n_max) >= counts[:, None, None], noise.shape)] = np.inf  # padding never drawn
        rank = np.argsort(np.argsort(noise, axis=2), axis=2)
        z = rank >= size[:, :, None]
        z[:, 0] = True
        mask_row = np.array(self.mask_token_id, dtype=rows.dtype)

        attention = self._attention(problem.feeds) if self.mask_attention else None

        def make_rows(start: int, stop: int):
            index = np.arange(start, stop)
            owners, samples = np.divmod(index, n_samples)
            keep = z[owners, samples]  # (k, n_max)
            kept = np.take_along_axis(keep, groups[owners], axis=1)
            ids = np.where(kept, rows[owners], mask_row)
            if attention is None:
                return ids
            held = problem.feeds.fixed_rows(attention, owners)
            return {problem.feeds.name: ids, attention: np.where(kept, held, np.zeros((), dtype=held.dtype))}

        owners = np.repeat(np.arange(n_rows), n_samples)
        y = problem.evaluate(n_rows * n_samples, make_rows, owners, desc="lime").reshape(n_rows, n_samples)
        distances = binary_cosine_distance(z, counts) * 100.0
        fit = fit_local(
            z.astype(np.float64), y, lime_kernel(distances, float(self.kernel_width)),
            num_features=self.num_features, feature_selection=self.feature_selection,
            regressor=self.regressor, alpha=float(self.alpha), n_columns=counts,
        )
        coef = fit["coef"]
        coef[np.arange(n_max)[None, :] >= counts[:, None]] = 0.0
        problem.extras.update(
            intercept=fit["intercept"], score=fit["score"], local_prediction=fit["local_prediction"],
            group_values=coef.astype(np.float32), n_groups=counts, groups=np.ascontiguousarray(groups),
        )
        if self.vocabulary is not None:
            problem.extras["tokens"] = _token_strings(self.vocabulary, rows)
        return np.take_along_axis(coef, groups, axis=1).astype(np.float32)

    def _attention(self, feeds: Feeds) -> str:
        candidates = [name for name, (value, spec) in feeds.fixed.items() if spec.batch_axis is not None]
        name = self.attention_input
        if name is None:
            if len(candidates) != 1:
                raise ParameterError(
                    f"mask_attention=True needs attention_input naming the attention mask among the fixed inputs {candidates}"
                )
            name = candidates[0]
        if name not in feeds.fixed:
            raise ParameterError(f"attention_input {name!r} is not a fixed input; fixed inputs are {sorted(feeds.fixed)}")
        value, spec = feeds.fixed[name]
        if spec.batch_axis != 0 or value.shape[1:] != feeds.rows.shape[1:]:
            raise ParameterError(
                f"attention_input {name!r} must have the token ids' shape (batch, {feeds.rows.shape[1]}), batch first; "
                f"got rows of shape {value.shape[1:]} with batch axis {spec.batch_axis}"
            )
        return name


def _token_strings(vocabulary, rows: np.ndarray) -> np.ndarray:
    if callable(vocabulary):
        strings = [list(vocabulary(row.tolist())) for row in rows]
    else:
        try:
            strings = [[str(vocabulary[int(i)]) for i in row] for row in rows]
        except (KeyError, IndexError) as error:
            raise ParameterError(f"vocabulary has no entry for token id {error}") from None
    if any(len(s) != rows.shape[1] for s in strings):
        raise ParameterError(f"vocabulary callable must return {rows.shape[1]} strings per row")
    return np.array(strings, dtype=str)
