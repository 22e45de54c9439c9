"""Which target each row explains: rows grouped by target, a target's name, and the rows of one target.

A plot over many rows (the beeswarm) explains one target: attributions towards different
classes have no common meaning, so it draws the rows of one target and names it.
"""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

__all__ = ["one_target", "target_groups", "target_label"]


def target_groups(explanation) -> dict:
    """The rows of each target, in order of first appearance: {key: row indices}; key None for a custom target.

    A key is a class index (int) or a tuple of indices (a multi-index target).
    """
    if explanation.target is None:
        return {None: np.arange(len(explanation))}
    groups: dict = {}
    for row, value in enumerate(np.asarray(explanation.target)):
        key = int(value) if np.ndim(value) == 0 else tuple(int(v) for v in np.ravel(value))
        groups.setdefault(key, []).append(row)
    return {key: np.asarray(rows) for key, rows in groups.items()}


def target_label(explanation, key) -> str:
    """A target as titles name it: "class 'malignant'", "class 2", "target (0, 3)" or "a custom target"."""
    if key is None:
        return "a custom target"
    names = explanation.label_names
    if isinstance(key, int):
        return f"class '{names[key]}'" if names is not None and 0 <= key < len(names) else f"class {key}"
    return f"target {key}"


def one_target(explanation, target=None):
    """The rows of one target and "N rows, class ..." for a title; refuses a mix when ``target`` is None."""
    groups = target_groups(explanation)
    if target is None:
        if len(groups) > 1:
            counts = ", ".join(f"{len(rows)} for {target_label(explanation, key)}" for key, rows in groups.items())
            first = next(iter(groups))
            named = (f" or target={explanation.label_names[first]!r}" if isinstance(first, int) and explanation.label_names
                     and 0 <= first < len(explanation.label_names) else "")
            raise ParameterError(
                f"target=None: these {len(explanation)} rows explain {len(groups)} different targets (rows: {counts}), "
                "as target='predicted' gives over rows of mixed classes, and a beeswarm explains one target. "
                f"Pass one of them (e.g. target={first!r}{named}) to draw its rows, or explain every row for one "
                "class (explain(x, target=k))"
            )
        key = next(iter(groups))
        return explanation, f"{len(explanation)} rows, {target_label(explanation, key)}"
    key = _target_key(explanation, target)
    if key not in groups:
        known = ", ".join(repr(k) for k in groups)
        raise ParameterError(f"target={target!r}: no row explains it; the rows explain {known}")
    rows = groups[key]
    if len(rows) == len(explanation):
        return explanation, f"{len(rows)} rows, {target_label(explanation, key)}"
    return explanation[rows], f"{len(rows)} of {len(explanation)} rows, {target_label(explanation, key)}"


def _target_key(explanation, target):
    if isinstance(target, str):
        names = [str(name) for name in (explanation.label_names or ())]
        if target not in names:
            raise ParameterError(f"target={target!r} is not a class name; expected one of {names} or a class index")
        return names.index(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    if isinstance(target, tuple) and all(isinstance(v, (int, np.integer)) for v in target):
        return tuple(int(v) for v in target)
    raise ParameterError(f"target must be a class index, a class name, a tuple of indices or None, got {target!r}")
