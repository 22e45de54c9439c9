"""Permutation importance: the drop in a data-set score when a column (or group) is shuffled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import ParameterError
from ..explainers.base import make_explanation, recorded, unperturbed_outputs
from ..explanation import Explanation
from ..perturbation import masks
from ..runtime.batching import evaluate
from ..runtime.targets import Target, resolve, transform
from ..seeds import as_generator
from .base import DatasetMethod

#: Supported scorer names: (function in ``sklearn.metrics``, sign, response, keyword arguments).
#: The response is what the sklearn scorer of that name asks a fitted estimator for: "labels"
#: (``predict`` of a classifier), "values" (``predict`` of a regressor), "proba"
#: (``predict_proba``) or "decision" (``decision_function``). A table rather than sklearn's
#: private ``_Scorer`` attributes, which change between releases; a test checks it against them.
SCORERS = {
    "accuracy": ("accuracy_score", 1, "labels", {}),
    "balanced_accuracy": ("balanced_accuracy_score", 1, "labels", {}),
    "f1": ("f1_score", 1, "labels", {}),
    "f1_macro": ("f1_score", 1, "labels", {"average": "macro"}),
    "f1_micro": ("f1_score", 1, "labels", {"average": "micro"}),
    "f1_weighted": ("f1_score", 1, "labels", {"average": "weighted"}),
    "precision": ("precision_score", 1, "labels", {}),
    "recall": ("recall_score", 1, "labels", {}),
    "matthews_corrcoef": ("matthews_corrcoef", 1, "labels", {}),
    "neg_log_loss": ("log_loss", -1, "proba", {}),
    "neg_brier_score": ("brier_score_loss", -1, "proba", {}),
    "roc_auc": ("roc_auc_score", 1, "decision", {}),
    "roc_auc_ovr": ("roc_auc_score", 1, "proba", {"multi_class": "ovr"}),
    "roc_auc_ovo": ("roc_auc_score", 1, "proba", {"multi_class": "ovo"}),
    "average_precision": ("average_precision_score", 1, "decision", {}),
    "r2": ("r2_score", 1, "values", {}),
    "explained_variance": ("explained_variance_score", 1, "values", {}),
    "neg_mean_squared_error": ("mean_squared_error", -1, "values", {}),
    "neg_root_mean_squared_error": ("root_mean_squared_error", -1, "values", {}),
    "neg_mean_absolute_error": ("mean_absolute_error", -1, "values", {}),
    "neg_median_absolute_error": ("median_absolute_error", -1, "values", {}),
}


class PermutationImportance(DatasetMethod):
    """Permutation importance (Breiman 2001), with scikit-learn's scorers, over a whole data set.

    The score of the model on the rows ``x`` is measured once; then, ``n_repeats`` times per
    column (or group of elements), that column is shuffled across the rows and the score
    measured again. A group's importance is the baseline score minus the shuffled score, so a
    positive value means the model relies on it. Equal, up to the shuffles drawn, to
    :func:`sklearn.inspection.permutation_importance` on an estimator computing the same function.

    Parameters
    ----------
    model : str, bytes, onnx.ModelProto, Model or callable
        See :func:`agnostic_explain.load`.
    scoring : str, callable or None, default None
        A scikit-learn scorer name from :data:`SCORERS` ("accuracy", "r2", "neg_log_loss",
        "roc_auc", ...), or ``score(y_true, y_pred) -> float`` (higher is better) where
        ``y_pred`` is the selected output (shape (n_rows,) when a row has one value). None:
        "accuracy" when each row has class scores, "r2" when it has one value.
    n_repeats : int, default 5
        Shuffles per group.
    feature_mask : array_like of int, optional
        Group ids broadcastable to one row (see :mod:`agnostic_explain.masks`): the elements of
        a group are shuffled together, by the same permutation of the rows. By default every
        element is its own group.

    Examples
    --------
    >>> import numpy as np
    >>> from agnostic_explain.inspection import PermutationImportance
    >>> x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    >>> model = lambda rows: 2.0 * rows[:, :1] + rows[:, 1:2]  # the third column is unused
    >>> result = PermutationImportance(model, scoring="neg_mean_squared_error").explain(x, random_state=0)
    >>> result.values.shape, float(result.values[0, 2])
    ((1, 3), 0.0)
    """

    method = "permutation_importance"

    def __init__(self, model, scoring=None, n_repeats=5, feature_mask=None):
        super().__init__(model)
        self.scoring = scoring
        self.n_repeats = n_repeats
        self.feature_mask = feature_mask

    def _params(self) -> dict:
        scoring = self.scoring
        if callable(scoring):
            scoring = f"callable {getattr(scoring, '__name__', 'score')}"
        mask = recorded(self.feature_mask)
        return {"scoring": scoring, "n_repeats": self.n_repeats, "feature_mask": mask}

    def _check(self, rows: np.ndarray) -> np.ndarray:
        """Validate the parameters; returns the feature mask over one row."""
        repeats = self.n_repeats
        if not isinstance(repeats, (int, np.integer)) or isinstance(repeats, bool) or repeats < 1:
            raise ParameterError(f"n_repeats must be an int >= 1, got {repeats!r}")
        if not (self.scoring is None or callable(self.scoring) or self.scoring in SCORERS):
            raise ParameterError(
                f"scoring: unsupported scorer {self.scoring!r}; expected None, a callable "
                f"score(y_true, y_pred) -> float, or one of {sorted(SCORERS)}"
            )
        row_shape = rows.shape[1:]
        if self.feature_mask is None:
            return masks.one_per_element(row_shape)
        return masks.validate(self.feature_mask, row_shape)

    def explain(
        self,
        x,
        y=None,
        *,
        target=None,
        output=None,
        input=None,
        fixed_inputs=None,
        output_transform=None,
        progress=None,
        random_state=None,
    ) -> Explanation:
        """Importance of each column (or group) of the data set ``x``.

        Parameters
        ----------
        x : array_like of shape (n_rows, ...)
            The data set, batch axis first.
        y : array_like of shape (n_rows,), optional
            True targets: class indices ``0 .. n_classes - 1`` for classification scorers,
            values for regression ones. None scores agreement with the model's own
            predictions on the unshuffled rows (its argmax classes, or its values).
        target : int, tuple, list, "predicted", callable or None, default None
            None scores the whole output of each row (class scores or one value); anything
            else reduces each row's output to one scalar as in the other explainers, which is
            then scored as a regression.
        output, input, fixed_inputs, output_transform, progress, random_state
            As in :meth:`Explainer.explain`. ``output_transform="softmax"`` turns logits into
            the probabilities that "neg_log_loss" and the other probability scorers need.

        Returns
        -------
        Explanation
            One row: ``values`` of shape (1, ...) like a row of ``x``, each element holding
            its group's mean importance; ``base_values`` of shape (1,), the unshuffled score;
            ``data``, the mean of ``x`` over its rows. ``extras``: "importances" (n_repeats,
            n_groups), "importances_mean" and "importances_std" (n_groups,), "group_values"
            (1, n_groups), "feature_mask", "baseline_score" and "scoring".
        """
        started = time.perf_counter()
        model, feeds = self._prepare(x, input=input, fixed_inputs=fixed_inputs, output_transform=output_transform)
        rows = feeds.rows
        n = len(rows)
        mask = self._check(rows)
        if y is not None:
            y = np.asarray(y)
            if y.ndim == 0 or len(y) != n:
                raise ParameterError(f"y must have one value per row of x ({n}), got shape {y.shape}")
        output_name = model.output_spec(output).name

        outputs = unperturbed_outputs(model, feeds, output_name, output_transform)
        resolved = None if target is None else resolve(target, outputs, output_name=output_name)
        selected = outputs if resolved is None else resolved.select(outputs, np.arange(n))
        scorer = _scorer(self.scoring, selected)
        respond = scorer.responder(selected)
        y_true = scorer.reference(selected, y)

        def reduce(out: np.ndarray, own: np.ndarray) -> np.ndarray:
            out = transform(out, output_transform)
            return respond(out if resolved is None else resolved.select(out, own))

        baseline = scorer.score(y_true, respond(selected))
        n_groups = masks.n_groups(mask)
        blocks = self.n_repeats * n_groups
        # One permutation of the rows per (repeat, group): block b = repeat * n_groups + group.
        permutations = as_generator(random_state).permuted(np.tile(np.arange(n), (blocks, 1)), axis=1)

        def make_rows(start: int, stop: int) -> np.ndarray:
            block, row = np.divmod(np.arange(start, stop), n)
            keep = np.ones((stop - start, n_groups), dtype=bool)
            keep[np.arange(stop - start), block % n_groups] = False
            return masks.compose(rows[row], rows[permutations[block, row]], mask, keep)

        total = blocks * n
        shuffled = evaluate(
            model, feeds, n=total, make_rows=make_rows, owners=np.tile(np.arange(n), blocks),
            reduce=reduce, output=output_name, progress=progress, desc="permutation importance",
        )
        shuffled = shuffled.reshape(blocks, n, *shuffled.shape[1:])
        scores = np.array([scorer.score(y_true, shuffled[b]) for b in range(blocks)])
        importances = (baseline - scores).reshape(self.n_repeats, n_groups)
        mean = importances.mean(axis=0)

        params = dict(self._params(), scoring=scorer.name, output_transform=output_transform)
        if resolved is not None and resolved.function is not None:
            params["target"] = f"callable {getattr(resolved.function, '__name__', 'target')}"
        elif resolved is not None:
            params["target"] = target if not isinstance(target, np.ndarray) else target.tolist()
        return make_explanation(
            model, values=mean[mask][None].astype(np.float32), base_values=np.array([baseline], dtype=np.float64),
            data=rows.mean(axis=0, keepdims=True, dtype=np.float64), target=_shared_target(resolved),
            method=self.method, params=params, n_evals=n + total, started=started, input_name=feeds.name,
            output_name=output_name,
            extras={
                "importances": importances,
                "importances_mean": mean,
                "importances_std": importances.std(axis=0),
                "group_values": mean[None],
                "feature_mask": mask,
                "baseline_score": float(baseline),
                "scoring": scorer.name,
            },
        )


def _shared_target(resolved: Target | None) -> np.ndarray | None:
    """The target index when every row shares one, else None (an Explanation row is the data set)."""
    if resolved is None or resolved.indices is None or resolved.indices.shape[1] == 0:
        return None
    if not (resolved.indices == resolved.indices[0]).all():
        return None
    return resolved.as_array()[:1]


@dataclass
class _Scorer:
    """A score over the whole data set, from the selected outputs of every row.

    ``response`` is None for a callable scorer; ``metric(y_true, y_pred) -> float`` already
    includes the sign (higher is better).
    """

    name: str
    response: str | None
    metric: Callable
    n_classes: int | None
    probabilities: bool

    def score(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(self.metric(y_true, y_pred))

    def responder(self, selected: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """What the metric sees for a batch of selected outputs, as sklearn's scorer would fetch it."""
        one_value = self.n_classes is None
        if self.response is None:
            return (lambda s: s.reshape(len(s))) if one_value else (lambda s: s)
        if self.response == "labels":
            return lambda s: np.argmax(s, axis=1)
        if one_value:
            return lambda s: s.reshape(len(s)).astype(np.float64)
        if self.n_classes == 2 and (self.response == "proba" or self.probabilities):
            return lambda s: s[:, 1].astype(np.float64)  # the positive class, as sklearn picks it
        if self.n_classes == 2:
            return lambda s: s[:, 1].astype(np.float64) - s[:, 0]  # a binary decision function
        return lambda s: s.astype(np.float64)

    def reference(self, selected: np.ndarray, y) -> np.ndarray:
        """``y_true``: ``y`` checked, or the model's own predictions on the unshuffled rows."""
        classes = self.response in ("labels", "proba", "decision") and self.n_classes is not None
        if y is None:
            if self.response in ("proba", "decision") and self.n_classes is None:
                raise ParameterError(
                    f"y is required for scoring={self.name!r} on an output with one value per row: "
                    "there is no predicted class to agree with"
                )
            if classes:
                return np.argmax(selected, axis=1)
            return self.responder(selected)(selected)
        if classes:
            numeric = (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_) and y.ndim == 1
            indices = numeric and np.array_equal(y, np.rint(y)) and 0 <= y.min() and y.max() < self.n_classes
            if not indices:
                raise ParameterError(
                    f"y must hold class indices 0 .. {self.n_classes - 1} for scoring={self.name!r}, "
                    f"got dtype {y.dtype}, shape {y.shape}"
                )
            return y.astype(np.int64)
        return y


def _scorer(scoring, selected: np.ndarray) -> _Scorer:
    """Resolve ``scoring`` against the selected unshuffled outputs, shape (n_rows, ...)."""
    per_row = selected.shape[1:]
    one_value = int(np.prod(per_row)) == 1
    n_classes = None if one_value else int(np.prod(per_row))
    if callable(scoring):
        return _Scorer(f"callable {getattr(scoring, '__name__', 'score')}", None, scoring, n_classes, False)
    if not one_value and len(per_row) != 1:
        raise ParameterError(
            f"scoring={scoring!r} needs one value or one score per class in each row, but the output "
            f"has shape {per_row} per row; pass target= to select a scalar, or a callable scoring"
        )
    if scoring is None:
        scoring = "r2" if one_value else "accuracy"
    function, sign, response, kwargs = SCORERS[scoring]
    if response == "labels" and one_value:
        raise ParameterError(
            f"scoring={scoring!r} compares classes, but the output has one value per row; "
            "use a regression scorer such as 'r2', or a callable scoring"
        )
    if response == "values" and not one_value:
        raise ParameterError(
            f"scoring={scoring!r} needs one value per row, but the output has {n_classes} per row; "
            "pass target=INDEX to score one of them"
        )
    in_unit = bool(np.all((selected >= 0) & (selected <= 1)))
    probabilities = in_unit and not one_value and np.allclose(selected.sum(axis=1), 1.0, atol=1e-3)
    if response == "proba" and not (probabilities or (one_value and in_unit)):
        raise ParameterError(
            f"scoring={scoring!r} needs probabilities, but the output's rows are not probabilities; "
            "pass output_transform='softmax' (or 'sigmoid') to read them from logits"
        )
    from sklearn import metrics

    kwargs = dict(kwargs)
    # The full list of classes lets a data set where some class never occurs (in y, or in the
    # model's own predictions) still score; where every class occurs it changes nothing.
    if function == "log_loss" or (function == "roc_auc_score" and response == "proba"):
        kwargs["labels"] = np.arange(max(n_classes or 2, 2))
    metric = _FAST.get(function) or getattr(metrics, function)

    def signed(y_true, y_pred):
        return sign * metric(y_true, y_pred, **kwargs)

    return _Scorer(scoring, response, signed, n_classes, probabilities)


def _r2(y_true, y_pred) -> float:
    residual = np.sum((y_true - y_pred) ** 2)
    total = np.sum((y_true - np.mean(y_true)) ** 2)
    if total == 0:  # sklearn's force_finite convention for a constant y_true
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


#: numpy versions of the default scorers: sklearn's input checks cost ~1 ms per call, more than
#: the model on small tabular data sets, and a data set is scored once per (repeat, group).
#: Each is the sklearn definition (the tests compare them with sklearn's scorers).
_FAST = {
    "accuracy_score": lambda y_true, y_pred: np.mean(y_true == y_pred),
    "r2_score": _r2,
    "mean_squared_error": lambda y_true, y_pred: np.mean((y_true - y_pred) ** 2),
    "root_mean_squared_error": lambda y_true, y_pred: np.sqrt(np.mean((y_true - y_pred) ** 2)),
    "mean_absolute_error": lambda y_true, y_pred: np.mean(np.abs(y_true - y_pred)),
}
