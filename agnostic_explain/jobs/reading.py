"""Reading one committed chunk's files back, each checked against its manifest record."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import require
from .integrity import file_problem

__all__ = ["ChunkDamaged", "read_chunk_files"]


class ChunkDamaged(Exception):
    """One chunk file is missing, differs from what was written, or does not hold what its record says."""


#: what numpy, zipfile and pyarrow raise on a damaged file
_DAMAGE = (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile, MemoryError)


def read_chunk_files(out: Path, record: dict, output: dict, parts: dict) -> None:
    """Append one chunk's arrays to ``parts``, checked against its record; raises ChunkDamaged."""
    checks = record.get("checks") or {}
    found = {"values": None, "base_values": None, "target": None, "index": None, "keys": None}
    for position, name in enumerate(record["files"]):
        path = out / name
        try:
            data = path.read_bytes()
        except OSError as error:
            reason = "the file is missing" if not path.exists() else f"the file cannot be read ({error})"
            raise ChunkDamaged(f"{name}: {reason}") from error
        problem = file_problem(path, checks.get(name), data)
        if problem is not None:
            raise ChunkDamaged(f"{name}: {problem}")
        try:
            if output.get("tabular"):
                found.update(_read_table_chunk(data, output))
            elif position == 0:
                found["values"] = np.load(io.BytesIO(data), allow_pickle=False)
            else:
                with np.load(io.BytesIO(data), allow_pickle=False) as rows:
                    found.update(base_values=rows["base_values"], index=rows["index"], keys=rows["key"],
                                 target=rows["target"] if "target" in rows.files else None)
        except _DAMAGE as error:
            raise ChunkDamaged(f"{name}: the file cannot be read ({type(error).__name__}: {error})") from error
    n = int(record.get("rows", -1))
    arrays = [found[name] for name in ("values", "base_values", "index", "keys")]
    if any(array is None or array.ndim < 1 or len(array) != n for array in arrays):
        lengths = [None if array is None else (array.shape[0] if array.ndim else 0) for array in arrays]
        raise ChunkDamaged(f"{record['files'][0]}: holds {lengths} rows (values, base values, index, keys); "
                            f"the manifest records {n}")
    if found["values"].dtype.kind not in "fiub" or found["index"].dtype.kind not in "iu":
        raise ChunkDamaged(f"{record['files'][0]}: unexpected dtypes {found['values'].dtype} and "
                            f"{found['index'].dtype} for the values and the index")
    for name, array in found.items():
        parts[name].append(array)


def _read_table_chunk(data: bytes, output: dict) -> dict:
    require("pyarrow", "agnostic-explain[data]")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except pa.ArrowException as error:
        raise ValueError(str(error)) from error
    # a table without feature names was written with columns x0, x1, ... (see write_chunk)
    names = output.get("feature_names") or [name for name in table.column_names
                                            if name not in ("index", "key", "base_value", "target")]
    target = table.column("target").to_pylist() if "target" in table.column_names else None
    return {
        "values": np.column_stack([table.column(name).to_numpy() for name in names]),
        "base_values": table.column("base_value").to_numpy(),
        "target": None if target is None else np.asarray(target),
        "index": table.column("index").to_numpy(),
        "keys": np.asarray(table.column("key").to_pylist(), dtype=str),
    }
