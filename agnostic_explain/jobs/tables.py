"""Tables as data sets: Parquet files (one piece per row group), CSV files, DataFrames and Arrow tables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputShapeError, require
from ..io import pick_columns
from .pieces import InMemory, Piece, ReadSettings, Source

__all__ = ["frame_rows", "table_files", "with_columns"]


@dataclass
class ParquetGroup(Piece):
    """One row group of a Parquet file: its size is in the file's footer, so planning reads no rows."""

    path: str = ""
    group: int = 0
    first: int = 0

    def keys(self, start, stop):
        return [f"{self.key}[{i}]" for i in range(self.first + start, self.first + stop)]

    def read(self, start, stop, settings):
        pq = require("pyarrow.parquet", "agnostic-explain[data]")
        table = pq.ParquetFile(self.path).read_row_group(self.group, columns=list(settings.columns))
        return table_rows(table, settings)[start:stop]


def table_files(tables, settings: ReadSettings, feature_names) -> tuple[Source, ReadSettings]:
    """The source of Parquet/CSV files ``[(key, path), ...]``, and the settings with the chosen columns."""
    require("pyarrow", "agnostic-explain[data]")
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    schemas = []
    for key, path in tables:
        if path.suffix.lower() == ".csv":
            schemas.append(None)
        else:
            schemas.append(pq.ParquetFile(path))
    first = schemas[0].schema_arrow.names if schemas[0] is not None else csv.open_csv(tables[0][1]).schema.names
    columns = choose_columns(first, settings, feature_names)
    settings = with_columns(settings, columns)
    digest = hashlib.sha256("\n".join(f"{key}\t{path.stat().st_size}" for key, path in tables).encode())
    counts = [meta.metadata.num_rows if meta is not None else None for meta in schemas]
    description = {"kind": "table", "items": len(tables), "digest": digest.hexdigest(), "columns": list(columns)}

    def pieces():
        for (key, path), meta in zip(tables, schemas):
            if meta is None:
                rows = table_rows(csv.read_csv(path), settings)
                yield InMemory(key, len(rows), rows=rows)
                continue
            first_row = 0
            for group in range(meta.num_row_groups):
                n = meta.metadata.row_group(group).num_rows
                yield ParquetGroup(key, n, path=str(path), group=group, first=first_row)
                first_row += n

    n_rows = None if None in counts else sum(counts)
    return Source(pieces(), description, n_rows, True, columns), settings


def choose_columns(names, settings: ReadSettings, feature_names) -> tuple:
    """The columns asked for, else the model's feature names when the table has them all, else every column."""
    return pick_columns(names, settings.columns, feature_names)


def with_columns(settings: ReadSettings, columns) -> ReadSettings:
    """``settings`` reading ``columns``, checked against the model's number of features."""
    row = settings.spec.row_shape()
    if row is not None and len(row) == 1 and isinstance(row[0], int) and row[0] != len(columns):
        raise InputShapeError(
            f"columns: the model input {settings.spec.name!r} takes {row[0]} features, but {len(columns)} "
            f"columns were chosen ({list(columns)[:8]}{'...' if len(columns) > 8 else ''}); pass columns=[...]"
        )
    return replace(settings, columns=tuple(columns))


def table_rows(table, settings: ReadSettings) -> np.ndarray:
    """The chosen columns of an Arrow table as rows of shape (n_rows, n_columns), in the model's dtype."""
    table = table.select(list(settings.columns))
    columns = [np.asarray(column.to_numpy(zero_copy_only=False)) for column in table.columns]
    return np.column_stack(columns).astype(settings.spec.dtype) if columns else np.empty((0, 0))


def frame_rows(frame, settings: ReadSettings, feature_names):
    """A pandas DataFrame's or Arrow table's rows and the columns chosen."""
    names = [str(name) for name in (frame.column_names if hasattr(frame, "column_names") else frame.columns)]
    columns = choose_columns(names, settings, feature_names)
    if hasattr(frame, "select") and hasattr(frame, "column_names"):  # a pyarrow Table
        return table_rows(frame, with_columns(settings, columns)), columns
    return np.asarray(frame[list(columns)].to_numpy(), dtype=settings.spec.dtype), columns
