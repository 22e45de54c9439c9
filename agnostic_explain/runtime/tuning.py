"""Batch sizes found by measuring, remembered across processes.

``batch_size="auto"`` measures throughput on the first batches of a call (see
:class:`~agnostic_explain.runtime.batching.BatchSizer`). The size it settles on is kept on the
loaded model and here, in a small JSON file keyed by the model's contents, the provider, the
device, the thread count, the explained input and its row shape, so that the next process
starts at the right size instead of measuring again.

The file is ``$AGNOSTIC_EXPLAIN_CACHE_DIR/batch-sizes.json`` (by default under
``$XDG_CACHE_HOME`` or ``~/.cache``, in ``agnostic-explain/``); set the variable to ``off``
to keep nothing on disk. The cache is an optimisation: an unreadable or unwritable file is
ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_file", "recall", "remember"]

CACHE_ENV = "AGNOSTIC_EXPLAIN_CACHE_DIR"
_FILE = "batch-sizes.json"


def cache_file() -> Path | None:
    """The cache file, or None when caching on disk is off."""
    folder = os.environ.get(CACHE_ENV)
    if folder is not None:
        return None if folder.strip().lower() in ("", "off", "0", "none") else Path(folder) / _FILE
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agnostic-explain" / _FILE


def _entry(model, key) -> str | None:
    """The cache key of ``model`` and a sizer key, or None for models without a graph."""
    if model.proto is None:
        return None
    if model.cache.fingerprint is None:
        model.cache.fingerprint = hashlib.sha256(model.proto.SerializeToString()).hexdigest()[:32]
    name, row_shape = key
    return f"{model.cache.fingerprint}|{model.device_key}|{name}|{tuple(row_shape)}"


def _read(path: Path) -> dict:
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def recall(model, key) -> int | None:
    """The batch size remembered for ``model`` and ``key``, if any."""
    path, entry = cache_file(), _entry(model, key)
    if path is None or entry is None:
        return None
    size = _read(path).get(entry)
    return size if isinstance(size, int) and size > 0 else None


def remember(model, key, size: int) -> None:
    """Store ``size`` for ``model`` and ``key`` (atomically; errors are ignored)."""
    path, entry = cache_file(), _entry(model, key)
    if path is None or entry is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        table = _read(path)
        if table.get(entry) == size:
            return
        table[entry] = int(size)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".batch-sizes.")
        with os.fdopen(handle, "w") as stream:
            json.dump(table, stream, indent=0, sort_keys=True)
        os.replace(temporary, path)
    except OSError:
        pass
