"""Data sets as a sequence of row *slots*, in *pieces* that know their size before any read.

A source yields pieces in a fixed order: one image file (one slot), one ``.npy``/``.npz``
file (as many slots as its header says), one Parquet row group (:mod:`.tables`), or one
in-memory array. :mod:`.chunks` cuts the slots into chunks without reading rows, so that a
resumed job skips finished chunks for free and a worker reads only its own chunk. An image
that cannot be decoded still takes its slot, so chunk boundaries never depend on which
files turn out to be readable.
"""

from __future__ import annotations

import hashlib
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .pieces import InMemory, Piece, ReadSettings, Source

__all__ = ["ReadSettings", "Source", "open_source"]

_ARRAYS = (".npy", ".npz")
TABLES = (".parquet", ".pq", ".csv")
#: what a file that cannot be read raises, across numpy, Pillow, zipfile and pyarrow
READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, zipfile.BadZipFile, struct.error, KeyError)


# -- pieces ----------------------------------------------------------------------------
@dataclass
class ImageFile(Piece):
    path: str = ""

    def read(self, start, stop, settings):
        from ..io import read_input

        return read_input(
            self.path, settings.spec, layout=settings.layout, resize=settings.resize,
            scale=settings.scale, mean=settings.mean, std=settings.std,
        )


@dataclass
class ArrayFile(Piece):
    path: str = ""
    batched: bool = True

    def read(self, start, stop, settings):
        from ..io import read_array

        array = read_array(self.path, prefer=settings.spec.name)
        return array[start:stop] if self.batched else array[None]


def open_source(data, settings: ReadSettings, *, feature_names=None) -> tuple[Source, ReadSettings]:
    """The source of ``data``: a folder, a file, an array, a table or an iterable of arrays.

    Returns the source and the settings completed with the table's columns.
    """
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(2, "data: no such file or folder", str(path))
        files = _listing(path)
        tables = [item for item in files if item[1].suffix.lower() in TABLES]
        if tables:
            if len(tables) != len(files):
                raise ParameterError(f"data: {str(path)!r} mixes tables (Parquet, CSV) with other files")
            from .tables import table_files

            return table_files(tables, settings, feature_names)
        return _files(path, files, settings), settings
    if _is_table(data):
        from .tables import frame_rows, with_columns

        rows, columns = frame_rows(data, settings, feature_names)
        settings = with_columns(settings, columns)
        source = arrays_source([rows], settings, "table")
        return Source(source.pieces, source.description, len(rows), True, columns), settings
    if isinstance(data, np.ndarray):
        return arrays_source([_batched(data, settings)], settings, "array"), settings
    try:
        iterator = iter(data)
    except TypeError:
        raise ParameterError(
            f"data must be a folder, a file (.npy, .npz, image, .parquet, .csv), an array, a table or an "
            f"iterable of arrays; got {type(data).__name__}"
        ) from None
    return arrays_source((_batched(np.asarray(item), settings) for item in iterator), settings, "iterable"), settings


def _is_table(data) -> bool:
    """A pandas DataFrame or a pyarrow Table."""
    module = type(data).__module__.split(".")[0]
    return (module == "pandas" and hasattr(data, "columns")) or (module == "pyarrow" and hasattr(data, "column_names"))


def _listing(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    found = [item for item in sorted(path.rglob("*")) if item.is_file()]
    visible = [item for item in found if not any(part.startswith(".") for part in item.relative_to(path).parts)]
    return [(item.relative_to(path).as_posix(), item) for item in visible]


def _image_suffixes() -> set[str]:
    from PIL import Image

    return {suffix.lower() for suffix in Image.registered_extensions()}


def _files(root: Path, files, settings: ReadSettings) -> Source:
    images = _image_suffixes()
    kept, ignored = [], []
    for key, path in files:
        suffix = path.suffix.lower()
        (kept if suffix in _ARRAYS or suffix in images else ignored).append((key, path))
    if not kept:
        raise ParameterError(
            f"data: {str(root)!r} holds no images or .npy/.npz files"
            + (f" (only {[key for key, _ in ignored][:5]})" if ignored else "")
        )
    digest = hashlib.sha256("\n".join(f"{key}\t{path.stat().st_size}" for key, path in kept).encode())
    description = {"kind": "files", "items": len(kept), "digest": digest.hexdigest()}

    def pieces():
        for key, path in kept:
            if path.suffix.lower() in _ARRAYS:
                yield _array_file(key, path, settings)
            else:
                yield ImageFile(key, 1, path=str(path))

    n_rows = None if any(path.suffix.lower() in _ARRAYS for _, path in kept) else len(kept)
    rank = settings.row_ndim
    return Source(pieces(), description, n_rows, rank == 1, ignored=[key for key, _ in ignored])


def _array_file(key: str, path: Path, settings: ReadSettings) -> Piece:
    """A piece sized from the array's header alone; an unreadable header gives an error piece."""
    try:
        shape = _header_shape(path, settings.spec.name)
    except READ_ERRORS as error:
        return Piece(key, 0, error=one_line(error))
    batched = settings.row_ndim is None or len(shape) == settings.row_ndim + 1
    return ArrayFile(key, shape[0] if batched else 1, path=str(path), batched=batched)


def _header_shape(path: Path, prefer: str) -> tuple:
    if path.suffix.lower() == ".npy":
        return np.load(path, mmap_mode="r", allow_pickle=False).shape
    with zipfile.ZipFile(path) as archive:
        names = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
        if not names:
            raise ValueError("the .npz holds no arrays")
        with archive.open(f"{prefer if prefer in names else names[0]}.npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            return read(member)[0]

def _batched(array: np.ndarray, settings: ReadSettings) -> np.ndarray:
    if settings.row_ndim is not None and array.ndim == settings.row_ndim:
        return array[None]
    return array


def arrays_source(arrays, settings: ReadSettings, kind: str) -> Source:
    """In-memory arrays (each with a batch axis): hashed when given at once, streamed otherwise."""
    if kind != "iterable":
        arrays = list(arrays)
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        n_rows = sum(len(array) for array in arrays)
        description = {"kind": kind, "rows": n_rows, "digest": digest.hexdigest()}
    else:
        n_rows, description = None, {"kind": kind}

    def pieces():
        first = 0
        for array in arrays:
            yield InMemory("row", len(array), rows=array, first=first)
            first += len(array)

    return Source(pieces(), description, n_rows, settings.row_ndim == 1)

def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."
