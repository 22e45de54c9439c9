"""The data types of a data-set job's input: read settings, pieces of slots, and a source of pieces.

:mod:`.sources` opens files and folders as pieces, :mod:`.tables` opens Parquet and CSV
tables; both build on these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..runtime.specs import TensorSpec

__all__ = ["InMemory", "Piece", "ReadSettings", "Source"]


@dataclass(frozen=True)
class ReadSettings:
    """How a file becomes model rows: the explained input and the image preprocessing."""

    spec: TensorSpec
    layout: str | None = None
    scale: float | None = None
    mean: tuple | None = None
    std: tuple | None = None
    resize: tuple | None = None
    columns: tuple | None = None

    @property
    def row_ndim(self) -> int | None:
        row = self.spec.row_shape()
        return None if row is None else len(row)


@dataclass
class Piece:
    """Consecutive slots of the data set with one reader; ``error`` marks a file skipped at planning."""

    key: str
    n_rows: int
    error: str | None = None

    def keys(self, start: int, stop: int) -> list[str]:
        return [self.key] if self.n_rows == 1 else [f"{self.key}[{i}]" for i in range(start, stop)]

    def read(self, start: int, stop: int, settings: ReadSettings) -> np.ndarray:
        raise NotImplementedError


@dataclass
class InMemory(Piece):
    rows: np.ndarray = field(default=None, repr=False)
    first: int = 0  # the slot of rows[0], for its keys

    def keys(self, start, stop):
        return [f"{self.key}[{i}]" for i in range(self.first + start, self.first + stop)]

    def read(self, start, stop, settings):
        return self.rows[start:stop]


@dataclass
class Source:
    """Pieces in order, what identifies the data (for the job spec), and what was left aside."""

    pieces: object  # an iterator of Piece
    description: dict
    n_rows: int | None
    tabular: bool
    feature_names: tuple | None = None
    ignored: list = field(default_factory=list)
