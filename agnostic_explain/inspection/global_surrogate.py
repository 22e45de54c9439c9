"""Global surrogates: an interpretable model fitted to a model's own predictions.

A global surrogate answers "what does the model do on this data, in rules a person can
read?". The model labels the rows (one batched :meth:`Model.predict`), a shallow decision
tree or a linear model learns those labels on part of the rows, and its *fidelity* (how
often it agrees with the model, or the R² for a regression) is measured on the rows it
never saw. A surrogate is only worth reading when that fidelity is high.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError, InputShapeError, ParameterError
from .base import DatasetMethod

__all__ = ["GlobalSurrogate", "simplify_path"]

_KINDS = ("tree", "linear", "rules")


@dataclass(frozen=True)
class _Leaf:
    bounds: tuple  # (feature, lower or None, upper or None), in order of first use
    value: object  # class index (classification) or mean prediction (regression)
    train_rows: int


def simplify_path(conditions) -> tuple:
    """Merge the tests of one tree path into the tightest bound per feature.

    Parameters
    ----------
    conditions : iterable of (feature, operator, threshold)
        The tests from the root to a leaf; ``operator`` is ``"<="`` or ``">"`` (sklearn's
        left and right branches).

    Returns
    -------
    tuple of (feature, lower, upper)
        One entry per feature, in order of first use: ``lower < x <= upper``, where a
        missing side is ``None``.

    Examples
    --------
    >>> simplify_path([(0, ">", 1.0), (2, "<=", 5.0), (0, ">", 3.0), (0, "<=", 9.0)])
    ((0, 3.0, 9.0), (2, None, 5.0))
    """
    bounds: dict = {}
    for feature, operator, threshold in conditions:
        lower, upper = bounds.get(feature, (None, None))
        threshold = float(threshold)
        if operator == ">":
            lower = threshold if lower is None else max(lower, threshold)
        elif operator == "<=":
            upper = threshold if upper is None else min(upper, threshold)
        else:
            raise ParameterError(f"conditions: operator {operator!r}, expected '<=' or '>'")
        bounds[feature] = (lower, upper)
    return tuple((feature, lower, upper) for feature, (lower, upper) in bounds.items())


class GlobalSurrogate(DatasetMethod):
    """A decision tree, rule list or linear model that imitates a model on tabular data.

    Parameters
    ----------
    model : Model, path, bytes, ModelProto or callable
        Anything :func:`agnostic_explain.load` accepts, with one input of shape
        (batch, n_features).
    kind : {"tree", "linear", "rules"}
        ``"tree"``: a decision tree of depth ``max_depth``; ``"rules"``: the same tree read
        as rules, keeping those that cover at least ``min_support`` of the training rows;
        ``"linear"``: logistic (classification) or least-squares (regression) regression
        on standardised features.
    max_depth : int
        Depth of the tree (kinds "tree" and "rules").
    output : str or int, optional
        The model output imitated; by default the first floating-point output. An output
        of shape (batch, n_classes) is a classification (the label is the argmax), one of
        shape (batch,) or (batch, 1) a regression.
    test_size : float
        Share of the rows held out to measure fidelity.
    random_state : int, optional
        Seeds the split and the tree, so equal seeds give equal surrogates.
    class_names, feature_names : sequence of str, optional
        Default to the model's ``label_names`` and ``feature_names`` (ONNX metadata).
    min_support : float
        Kind "rules": the smallest share of training rows a printed rule covers.

    Attributes
    ----------
    fidelity : float
        Accuracy (classification) or R² (regression) of the surrogate against the model's
        own labels on the held-out rows.
    n_heldout : int
        Number of held-out rows.
    coverage : float
        Kind "rules": share of the held-out rows some printed rule covers; 1.0 otherwise.
    task : {"classification", "regression"}
    estimator : sklearn estimator
        The fitted surrogate (on standardised features for kind "linear").

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)
    >>> model = lambda rows: np.stack([rows[:, 0], -rows[:, 0]], axis=1)
    >>> surrogate = GlobalSurrogate(model, max_depth=1, random_state=0).fit(x)
    >>> surrogate.fidelity > 0.95
    True
    """

    method = "global_surrogate"

    def __init__(self, model, kind="tree", max_depth=4, *, output=None, test_size=0.25,
                 random_state=None, class_names=None, feature_names=None, min_support=0.02):
        super().__init__(model)
        self.kind = kind
        self.max_depth = max_depth
        self.output = output
        self.test_size = test_size
        self.random_state = random_state
        self.class_names = class_names
        self.feature_names = feature_names
        self.min_support = min_support

    # -- fitting -------------------------------------------------------------------------
    def _check_parameters(self) -> None:
        if self.kind not in _KINDS:
            raise ParameterError(f"kind: got {self.kind!r}, expected one of {_KINDS}")
        if isinstance(self.max_depth, bool) or not isinstance(self.max_depth, (int, np.integer)) \
                or self.max_depth < 1:
            raise ParameterError(f"max_depth: got {self.max_depth!r}, expected an integer >= 1")
        if not 0.0 < float(self.test_size) < 1.0:
            raise ParameterError(f"test_size: got {self.test_size!r}, expected a share in (0, 1)")
        if not 0.0 <= float(self.min_support) < 1.0:
            raise ParameterError(
                f"min_support: got {self.min_support!r}, expected a share in [0, 1)")

    def fit(self, X) -> "GlobalSurrogate":
        """Label ``X`` with the model and fit the surrogate on part of it.

        Parameters
        ----------
        X : array_like of shape (n_rows, n_features)
            Rows representative of the data the model is used on.

        Returns
        -------
        GlobalSurrogate
            ``self``, fitted.

        Raises
        ------
        ParameterError
            An unknown ``kind``, ``max_depth < 1`` or a share out of range.
        InputError
            ``X`` is empty or has too few rows to hold some out.
        InputShapeError
            ``X`` is not 2-D, or its width differs from the model's input.
        """
        from sklearn.model_selection import train_test_split

        self._check_parameters()
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise InputShapeError(f"X: got shape {X.shape}, expected (n_rows, n_features)")
        if len(X) < 4:
            raise InputError(f"X: got {len(X)} rows, expected at least 4 to hold some out")
        loaded = self._loaded()
        raw = np.asarray(loaded.predict(X, output=self.output))
        if raw.ndim == 2 and raw.shape[1] > 1:
            self.task, y = "classification", raw.argmax(axis=1)
        elif raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1):
            self.task, y = "regression", raw.reshape(-1).astype(np.float64)
        else:
            raise ParameterError(
                f"output: the model's output has shape {raw.shape}, expected (batch, n_classes) "
                "for a classification or (batch,) / (batch, 1) for a regression")
        n_outputs = raw.shape[1] if self.task == "classification" else 1
        self.feature_names_ = _names(self.feature_names, loaded.feature_names,
                                     X.shape[1], "feature_names", "x")
        self.class_names_ = _names(self.class_names, loaded.label_names,
                                   n_outputs, "class_names", "class ") \
            if self.task == "classification" else None

        x_train, x_test, y_train, y_test = train_test_split(
            X.astype(np.float64), y, test_size=self.test_size, random_state=self.random_state)
        self.n_heldout = len(x_test)
        self.estimator, self.scaler = self._make_estimator(), None
        if self.kind == "linear":
            from sklearn.preprocessing import StandardScaler

            self.scaler = StandardScaler().fit(x_train)
            x_train, x_test = self.scaler.transform(x_train), self.scaler.transform(x_test)
        self.estimator.fit(x_train, y_train)
        self.fidelity = float(self.estimator.score(x_test, y_test))
        self._x_test, self._y_test = x_test, y_test
        self._leaves = self._read_leaves() if self.kind != "linear" else []
        self.coverage = 1.0
        if self.kind == "rules":
            covered = np.zeros(len(x_test), dtype=bool)
            for leaf in self._printed_leaves():
                covered |= _covers(leaf, x_test)
            self.coverage = float(covered.mean())
        return self

    def _make_estimator(self):
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        if self.kind == "linear":
            return LogisticRegression(max_iter=1000) if self.task == "classification" \
                else LinearRegression()
        tree = DecisionTreeClassifier if self.task == "classification" else DecisionTreeRegressor
        return tree(max_depth=int(self.max_depth), random_state=self.random_state)

    def _read_leaves(self) -> list:
        tree = self.estimator.tree_
        leaves = []

        def walk(node, path):
            left, right = tree.children_left[node], tree.children_right[node]
            if left == right:  # sklearn marks a leaf by two equal (-1) children
                value = tree.value[node][0]
                value = int(np.argmax(value)) if self.task == "classification" else float(value[0])
                leaves.append(_Leaf(simplify_path(path), value, int(tree.n_node_samples[node])))
                return
            feature, threshold = int(tree.feature[node]), float(tree.threshold[node])
            walk(left, path + [(feature, "<=", threshold)])
            walk(right, path + [(feature, ">", threshold)])

        walk(0, [])
        return sorted(leaves, key=lambda leaf: -leaf.train_rows)

    def _printed_leaves(self) -> list:
        if self.kind != "rules":
            return self._leaves
        total = sum(leaf.train_rows for leaf in self._leaves)
        return [leaf for leaf in self._leaves if leaf.train_rows >= self.min_support * total]

    def _check_fitted(self, kinds) -> None:
        if not hasattr(self, "fidelity"):
            raise ParameterError("GlobalSurrogate: call fit(X) first")
        if self.kind not in kinds:
            raise ParameterError(f"kind: this needs kind in {kinds}, the surrogate has {self.kind!r}")

    # -- reading -------------------------------------------------------------------------
    def rules(self) -> list[str]:
        """The tree's paths as readable rules, the most supported first.

        Returns
        -------
        list of str
            ``"IF f1 > 16.8 AND f2 <= 19.1 THEN class (fidelity 0.94 on 120 rows)"``: the
            fidelity is the model's agreement with the rule's class on the held-out rows the
            rule covers (a regression shows the mean absolute error there instead), and the
            row count is that support.
        """
        self._check_fitted(("tree", "rules"))
        return [self._rule_text(leaf) for leaf in self._printed_leaves()]

    def _rule_text(self, leaf: _Leaf) -> str:
        terms = [self._bound_text(*bound) for bound in leaf.bounds]
        condition = " AND ".join(terms) if terms else "TRUE"
        covered = _covers(leaf, self._x_test)
        n = int(covered.sum())
        y = self._y_test[covered]
        if self.task == "classification":
            outcome = self.class_names_[leaf.value]
            score = f"fidelity {np.mean(y == leaf.value):.2f}" if n else "fidelity n/a"
        else:
            outcome = f"{leaf.value:.4g}"
            score = f"mean abs. error {np.mean(np.abs(y - leaf.value)):.3g}" if n else "error n/a"
        return f"IF {condition} THEN {outcome} ({score} on {n} rows)"

    def _bound_text(self, feature, lower, upper) -> str:
        name = self.feature_names_[feature]
        if lower is not None and upper is not None:
            return f"{lower:.3g} < {name} <= {upper:.3g}"
        if lower is not None:
            return f"{name} > {lower:.3g}"
        return f"{name} <= {upper:.3g}"

    def coefficients(self) -> list[tuple]:
        """Standardised coefficients of the linear surrogate, the largest magnitude first.

        Returns
        -------
        list of (feature_name, coefficient)
            ``coefficient`` is a float for a regression or two classes (towards the second
            class), an ndarray of shape (n_classes,) otherwise (sorted by its largest
            magnitude).
        """
        self._check_fitted(("linear",))
        coef = np.atleast_2d(self.estimator.coef_)
        order = np.argsort(-np.abs(coef).max(axis=0), kind="stable")
        single = coef.shape[0] == 1
        return [(self.feature_names_[i], float(coef[0, i]) if single else coef[:, i].copy())
                for i in order]

    def __str__(self) -> str:
        if not hasattr(self, "fidelity"):
            return f"GlobalSurrogate(kind={self.kind!r}, not fitted)"
        measure = "accuracy" if self.task == "classification" else "R²"
        lines = [f"GlobalSurrogate ({self.kind}, {self.task}): fidelity {self.fidelity:.3f} "
                 f"({measure} on {self.n_heldout} held-out rows)"]
        if self.kind == "linear":
            lines += [f"  {name}: {np.round(value, 4)}" for name, value in self.coefficients()]
        else:
            if self.kind == "rules":
                lines.append(f"coverage {self.coverage:.2f} of held-out rows")
            lines += [f"  {rule}" for rule in self.rules()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"GlobalSurrogate(kind={self.kind!r}, max_depth={self.max_depth!r})"


def _covers(leaf: _Leaf, x: np.ndarray) -> np.ndarray:
    mask = np.ones(len(x), dtype=bool)
    for feature, lower, upper in leaf.bounds:
        if lower is not None:
            mask &= x[:, feature] > lower
        if upper is not None:
            mask &= x[:, feature] <= upper
    return mask


def _names(given, from_model, n: int, parameter: str, prefix: str) -> tuple:
    names = given if given is not None else from_model
    if names is None:
        return tuple(f"{prefix}{i}" for i in range(n))
    names = tuple(str(name) for name in names)
    if len(names) != n:
        if given is None:  # metadata that does not fit is ignored rather than trusted
            return tuple(f"{prefix}{i}" for i in range(n))
        raise ParameterError(f"{parameter}: got {len(names)} names, expected {n}")
    return names
