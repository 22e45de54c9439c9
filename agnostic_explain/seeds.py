"""``random_state``: the one check of what seeds a method, before numpy sees it."""

from __future__ import annotations

import numpy as np

from .errors import ParameterError

__all__ = ["as_generator"]


def as_generator(random_state, *, parameter: str = "random_state") -> np.random.Generator:
    """The generator that ``random_state`` names, or a :class:`ParameterError`.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator, numpy.random.SeedSequence or numpy.random.BitGenerator
        None draws fresh entropy; a non-negative int (or a SeedSequence, a BitGenerator) gives
        the same numbers on every call; a Generator is used as it is, so that consecutive calls
        draw on.
    parameter : str
        The name in error messages.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    ParameterError
        A negative int, a float, a string, a bool or anything else; numpy's own errors for
        these are a TypeError or a ValueError that names no parameter.

    Examples
    --------
    >>> float(as_generator(0).random()) == float(as_generator(0).random())
    True
    >>> as_generator(-1)
    Traceback (most recent call last):
    ...
    agnostic_explain.errors.ParameterError: random_state must be None, a non-negative int or a numpy.random.Generator, got -1 (negative)
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, (np.random.SeedSequence, np.random.BitGenerator)):
        return np.random.default_rng(random_state)
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise ParameterError(_message(parameter, random_state, "negative"))
        return np.random.default_rng(int(random_state))
    kind = "a bool" if isinstance(random_state, (bool, np.bool_)) else type(random_state).__name__
    raise ParameterError(_message(parameter, random_state, kind))


def _message(parameter: str, value, why: str) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{parameter} must be None, a non-negative int or a numpy.random.Generator, got {text} ({why})"
