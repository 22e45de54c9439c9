"""Checks on a job's committed chunk files, and the lock that gives an output folder one job.

Each chunk record in the manifest keeps, per file, its sha256, its size and the shape of
what it holds (``"checks"``). A resumed job drops the chunks whose files are missing or
differ (a flipped bit, a truncation, two files swapped) and explains them again; reading the
results back refuses them with a :class:`JobError` that names the chunk.

Two jobs on one folder would overwrite each other's manifest: :class:`FolderLock` creates
``OUT/job.lock`` with ``O_EXCL`` (holding the pid, host and start time), and a second job is
told who holds it. A lock left by a dead process of the same host is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path

from ..errors import JobError, ParameterError

__all__ = ["FolderLock", "chunk_problems", "check_records", "damage_message", "damaged_chunks", "describe"]

LOCK = "job.lock"
#: a takeover guard older than this (seconds) was left by a process that died while taking over
_GUARD_STALE = 60.0


def describe(data: bytes, shape) -> dict:
    """What the manifest keeps of one file: its sha256, its size in bytes, and its array shape."""
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "shape": [int(n) for n in shape]}


def file_problem(path: Path, check: dict | None, data: bytes | None = None) -> str | None:
    """Why ``path`` is not the file the manifest recorded, or None; ``data`` is its content if read."""
    if data is None:
        if not path.is_file():
            return "the file is missing"
        if check is None:
            return None  # a manifest from before checksums: presence is all that can be checked
        try:
            data = path.read_bytes()
        except OSError as error:
            return f"the file cannot be read ({error.strerror or error})"
    if check is None:
        return None
    if len(data) != check.get("bytes"):
        return f"the file has {len(data)} bytes, {check.get('bytes')} were written (truncated or replaced)"
    if hashlib.sha256(data).hexdigest() != check.get("sha256"):
        return "its sha256 differs from the one recorded when it was written (damaged or replaced)"
    return None


def chunk_problems(out, record: dict) -> list[str]:
    """The problems of one committed chunk's files: ``'chunks/...npy: the file is missing'``."""
    out = Path(out)
    checks = record.get("checks") or {}
    found = []
    for name in record.get("files", []):
        problem = file_problem(out / name, checks.get(name))
        if problem is not None:
            found.append(f"{name}: {problem}")
    return found


def check_records(manifest: dict, path) -> dict:
    """The manifest's chunk records, checked for the structure this module reads; else JobError."""
    records = manifest.get("chunks")
    output = manifest.get("output", {})
    well_formed = isinstance(records, dict) and isinstance(output, dict) and all(
        key.isdigit() and isinstance(record, dict) and isinstance(record.get("files", []), list)
        and all(isinstance(name, str) for name in record.get("files", []))
        and isinstance(record.get("checks") or {}, dict) and isinstance(record.get("skipped", []), list)
        for key, record in records.items()
    )
    if not well_formed:
        raise JobError(f"out: {str(path)!r} is not a job manifest: its 'chunks' or 'output' records are malformed")
    return records


def damaged_chunks(out, manifest: dict) -> dict[int, list[str]]:
    """Committed chunks whose files are missing or differ, with their problems."""
    found = {}
    for key, record in manifest.get("chunks", {}).items():
        problems = chunk_problems(out, record)
        if problems:
            found[int(key)] = problems
    return found


def damage_message(out, damaged: dict[int, list[str]], then: str = "run the same job again (resume) to explain "
                                                                    "them again") -> str:
    listed = "; ".join(f"chunk {index}: {', '.join(problems)}" for index, problems in sorted(damaged.items())[:5])
    more = f" (and {len(damaged) - 5} more chunks)" if len(damaged) > 5 else ""
    return f"out: {len(damaged)} committed chunk(s) of {str(out)!r} are damaged or missing: {listed}{more}; {then}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


class FolderLock:
    """``OUT/job.lock`` while a job writes ``out``; a second job gets a :class:`JobError` naming the holder.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out, FolderLock(out):
    ...     try:
    ...         FolderLock(out).acquire()
    ...     except JobError as error:
    ...         print("held by" in str(error))
    True
    """

    def __init__(self, out):
        self.out = Path(out)
        self.path = self.out / LOCK
        self.token = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        if self.out.exists() and not self.out.is_dir():
            raise ParameterError(f"out: {str(self.out)!r} is a file; expected a folder (it is created)")
        self.out.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if self._create():
                return
            holder = self._holder()
            if holder is None:
                continue  # released (or unreadable) between our two looks: try again
            if self._stale(holder) and self._take_over(holder):
                return
            raise JobError(self._held_message(holder))
        raise JobError(self._held_message(self._holder() or {}))

    def release(self) -> None:
        if self.token is None:
            return
        holder = self._holder()
        if holder is not None and holder.get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None

    def _create(self) -> bool:
        token = os.urandom(8).hex()
        content = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "token": token}
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as error:
            reason = error.strerror or error
            raise JobError(f"out: cannot create the lock file {str(self.path)!r} ({reason})") from error
        with os.fdopen(handle, "w") as file:
            json.dump(content, file)
            file.flush()
            os.fsync(file.fileno())
        self.token = token
        return True

    def _holder(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # being written right now, or garbage: judge it by its age
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return None
            return {"unreadable": True, "age": age}
        return holder if isinstance(holder, dict) else {"unreadable": True, "age": 0.0}

    @staticmethod
    def _stale(holder: dict) -> bool:
        if holder.get("unreadable"):
            return holder.get("age", 0.0) > _GUARD_STALE
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)

    def _take_over(self, holder: dict) -> bool:
        """Replace a stale lock; a guard file makes sure one process only does it."""
        guard = self.out / (LOCK + ".takeover")
        try:
            handle = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > _GUARD_STALE:
                    guard.unlink(missing_ok=True)
            except OSError:
                pass
            return False
        os.close(handle)
        try:
            again = self._holder()
            if again is not None and again != holder and not again.get("unreadable"):
                return False  # someone else took it over meanwhile
            self.path.unlink(missing_ok=True)
            return self._create()
        finally:
            guard.unlink(missing_ok=True)

    def _held_message(self, holder: dict) -> str:
        if holder.get("unreadable"):
            who = "another job (its lock file cannot be read)"
        else:
            who = f"pid {holder.get('pid')} on host {holder.get('host')!r}, started {holder.get('started')}"
        return (
            f"out: {str(self.out)!r} is in use by another job, held by {who} (lock file {str(self.path)!r}); "
            f"wait for it to finish or use another folder; if that job is dead, delete the lock file"
        )
