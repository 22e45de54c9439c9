"""Chunks: every ``chunk_size`` slots of a data set, planned without reading, read by a worker."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, InputShapeError
from .sources import READ_ERRORS, InMemory, ReadSettings, one_line

__all__ = ["ChunkTask", "plan_chunks", "read_chunk"]


@dataclass
class ChunkTask:
    """Slots ``[start, stop)`` of the data set: the pieces that hold them, and planning skips."""

    index: int
    start: int
    stop: int
    parts: list = field(default_factory=list)  # (piece, first, stop) in the piece's own rows
    skipped: list = field(default_factory=list)

    def detached(self) -> "ChunkTask":
        """A copy whose in-memory parts hold only this chunk's rows, for sending to another process."""
        parts = []
        for piece, first, stop in self.parts:
            if isinstance(piece, InMemory):
                piece = InMemory(piece.key, stop - first, rows=piece.rows[first:stop], first=piece.first + first)
                first, stop = 0, stop - first
            parts.append((piece, first, stop))
        return ChunkTask(self.index, self.start, self.stop, parts, list(self.skipped))


def plan_chunks(pieces, chunk_size: int):
    """Yield the :class:`ChunkTask` of every ``chunk_size`` slots, in order, reading no rows.

    >>> pieces = [InMemory("row", 3, rows=np.zeros((3, 2))), InMemory("row", 4, rows=np.ones((4, 2)), first=3)]
    >>> [(task.start, task.stop, [(a, b) for _, a, b in task.parts]) for task in plan_chunks(pieces, 5)]
    [(0, 5, [(0, 3), (0, 2)]), (5, 7, [(2, 4)])]
    """
    task = ChunkTask(0, 0, 0)
    for piece in pieces:
        if piece.error is not None:
            task.skipped.append({"key": piece.key, "error": piece.error})
            continue
        offset = 0
        while offset < piece.n_rows:
            take = min(chunk_size - (task.stop - task.start), piece.n_rows - offset)
            task.parts.append((piece, offset, offset + take))
            offset += take
            task.stop += take
            if task.stop - task.start == chunk_size:
                yield task
                task = ChunkTask(task.index + 1, task.stop, task.stop)
    if task.parts or task.skipped:
        yield task


def read_chunk(task: ChunkTask, settings: ReadSettings, on_error: str):
    """The rows of a chunk, their slot indices and keys, and the inputs skipped.

    Returns
    -------
    rows : ndarray of shape (n, ...) or None
        None when no input of the chunk could be read.
    index : ndarray of shape (n,), int64
    keys : list of str
    skipped : list of dict
        ``{"key": ..., "error": ...}`` per input left out.
    """
    if on_error == "fail" and task.skipped:
        # a file whose header could not be read was set aside at planning; "fail" still means fail
        first = task.skipped[0]
        raise InputError(
            f"data: cannot read {first['key']!r} ({first['error']}); pass on_error='skip' "
            f"(--on-error skip) to skip such inputs and record them in the manifest"
        )
    arrays, index, keys, skipped = [], [], [], list(task.skipped)
    slot, row_shape = task.start, settings.spec.row_shape()
    for piece, first, stop in task.parts:
        try:
            rows = np.asarray(piece.read(first, stop, settings))
            _check_rows(rows, row_shape, arrays[0].shape[1:] if arrays else None)
            finite = np.isfinite(rows.reshape(len(rows), -1)).all(axis=1) if rows.dtype.kind == "f" else None
        except READ_ERRORS as error:
            if on_error == "fail":
                raise InputError(
                    f"data: cannot read {piece.key!r} ({one_line(error)}); pass on_error='skip' "
                    f"(--on-error skip) to skip such inputs and record them in the manifest"
                ) from error
            skipped.append({"key": piece.key, "error": one_line(error)})
            slot += stop - first
            continue
        piece_keys = piece.keys(first, stop)
        if finite is not None and not finite.all():
            bad = [piece_keys[i] for i in np.flatnonzero(~finite)]
            if on_error == "fail":
                raise InputError(f"data: {bad[:3]} hold NaN or infinite values; pass on_error='skip' to skip them")
            skipped += [{"key": key, "error": "NaN or infinite values"} for key in bad]
            rows, piece_keys = rows[finite], [key for key, ok in zip(piece_keys, finite) if ok]
            positions = slot + np.flatnonzero(finite)
        else:
            positions = slot + np.arange(stop - first)
        arrays.append(rows)
        index.append(positions)
        keys += piece_keys
        slot += stop - first
    arrays = [array for array in arrays if len(array)]
    if not arrays:
        return None, np.zeros(0, np.int64), [], skipped
    return np.concatenate(arrays), np.concatenate(index).astype(np.int64), keys, skipped


def _check_rows(rows: np.ndarray, row_shape, previous) -> None:
    want = tuple(row_shape) if row_shape is not None else None
    got = rows.shape[1:]
    static = want is not None and len(got) == len(want) and all(
        not isinstance(w, int) or w == g for w, g in zip(want, got)
    )
    if (want is not None and not static) or (previous is not None and got != previous):
        expected = previous if previous is not None else want
        raise InputShapeError(f"rows of shape {got}, expected {tuple(expected)} like the model input or the chunk")
