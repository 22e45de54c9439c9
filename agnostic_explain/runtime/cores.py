"""How many cores this process may use, for the numpy work that fans out to threads."""

from __future__ import annotations

import os

__all__ = ["available_cores", "worker_count"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def worker_count(tasks: int) -> int:
    """Threads for ``tasks`` independent pieces of numpy work: one per core, at most one per task."""
    return max(1, min(tasks, available_cores()))
