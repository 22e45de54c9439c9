"""The memory an explainer may ask for up front: checked on the parameters, before any array exists."""

from __future__ import annotations

from ..errors import ParameterError

__all__ = ["SAMPLE_BUDGET", "check_budget"]

#: bytes of samples, masks and scores an explainer may draw at once; more is refused before allocating
SAMPLE_BUDGET = 4 << 30


def check_budget(needed: int, what: str, advice: str) -> None:
    """Refuse ``needed`` bytes (a Python int, so that 10**13 masks do not overflow) over the budget.

    >>> check_budget(10**13, "n_masks=10**13", "use fewer masks")
    Traceback (most recent call last):
    ...
    agnostic_explain.errors.ParameterError: n_masks=10**13 needs about 9.31e+03 GiB up front, over the 4 GiB allowed; use fewer masks
    """
    if needed > SAMPLE_BUDGET:
        raise ParameterError(
            f"{what} needs about {needed / 2**30:.3g} GiB up front, over the {SAMPLE_BUDGET / 2**30:.3g} GiB "
            f"allowed; {advice}"
        )
