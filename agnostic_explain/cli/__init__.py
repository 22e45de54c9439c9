"""The ``agnostic-explain`` command line: one module per group of commands, one of shared flags.

``main`` builds the parser from ``explain`` and ``demo`` (``app.py``), ``inspect``, the graph
commands (``graph.py``), the converters (``convert.py``) and the data-set jobs (``jobs.py``);
every flag value that several commands take is parsed in ``options.py``. The CLI is the top
layer: it may import anything in the package, and nothing imports it.
"""

from .app import main

__all__ = ["main"]
