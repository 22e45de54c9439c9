"""The self-contained HTML report and the plain-language summaries written from the numbers.

It consumes ``Explanation`` objects and draws them with ``plot``; it may import ``plot``,
``metrics``, ``runtime`` (to load a model for its card), ``explanation`` and ``errors``;
never ``cli``.

>>> from agnostic_explain.report import write_report, summarize_explanation
"""

from . import summary
from .html import write_report
from .summary import explanation_kind, summarize_explanation

__all__ = ["explanation_kind", "summarize_explanation", "summary", "write_report"]
