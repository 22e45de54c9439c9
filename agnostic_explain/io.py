"""Reading explained inputs from files: ``.npy``, ``.npz``, tables and images, shaped for a model input.

Arrays are taken as model-ready unless ``scale``, ``mean`` or ``std`` are given; tables
(``.csv``, ``.parquet``) give one row per line, their columns chosen by name; images are read
with Pillow, converted to the channels the model wants, resized, scaled (1/255 by default),
normalised and laid out as NCHW or NHWC. The command line reads its inputs with
:func:`read_input`, so the API gets the same preprocessing from it.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

from .errors import InputError, InputShapeError, MissingDependencyError, ParameterError
from .layout import infer_layout
from .runtime.specs import TensorSpec

__all__ = ["TABLES", "infer_layout", "pick_columns", "read_array", "read_input", "read_table"]

#: file suffixes read as tables of rows
TABLES = (".csv", ".parquet", ".pq")

LAYOUTS = ("nchw", "nhwc")
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
#: the largest image, as float32 pixels, read or resized to
MAX_IMAGE_BYTES = 1 << 30


def read_array(path, *, key: str | None = None, prefer: str | None = None) -> np.ndarray:
    """Read one array from ``.npy``, or from ``.npz`` by ``key`` (else ``prefer``, else the first)."""
    path = _existing(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if not names:
                    raise InputError(f"input: {str(path)!r} holds no arrays")
                if key is not None and key not in names:
                    raise ParameterError(f"--key: {str(path)!r} has no array {key!r}; it has {names}")
                chosen = key if key is not None else (prefer if prefer in names else names[0])
                return archive[chosen]
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as error:  # pickled, empty, truncated or corrupt files
        reason = "the file is empty" if path.stat().st_size == 0 else f"{type(error).__name__}: {error}"
        raise InputError(f"input: cannot read {str(path)!r} as a numpy array ({reason})") from error


def read_input(path, spec: TensorSpec, *, key=None, resize=None, mean=None, std=None, scale=None, layout=None) -> np.ndarray:
    """Read a file into an array for the model input ``spec``, with its batch axis.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``, ``.npz`` or an image Pillow can read (png, jpg, ...).
    spec : TensorSpec
        The explained model input.
    key : str, optional
        The array of a ``.npz``; by default the one named like ``spec``, else the first.
    resize : tuple of (int, int), optional
        Image height and width; by default the model's static size, else the image's own.
    mean, std : sequence of float, optional
        Per-channel normalisation ``(x * scale - mean) / std`` (one value or one per channel).
    scale : float, optional
        Multiplier applied first; 1/255 for images by default, none for arrays.
    layout : "nchw" or "nhwc", optional
        Where the model wants the channels; by default inferred from ``spec``'s shape.

    Returns
    -------
    ndarray
        Shaped like ``spec`` with a batch axis (one image gives a batch of one).

    Raises
    ------
    InputError, ParameterError, OSError
    """
    if layout is not None and layout not in LAYOUTS:
        raise ParameterError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if resize is not None:
        resize = _checked_resize(resize)
    row = spec.row_shape()
    layout = layout or infer_layout(row)
    path = _existing(path)
    if path.suffix.lower() in (".npy", ".npz"):
        if resize is not None:
            raise ParameterError(
                f"resize: only images are resized; {str(path)!r} is an array, give it at the model's size "
                f"{tuple(row) if row is not None else ''}"
            )
        array = read_array(path, key=key, prefer=spec.name)
        if array.ndim == 0:
            raise InputShapeError(
                f"input: {str(path)!r} holds a single number (a 0-d array); expected rows shaped like "
                f"{tuple(spec.shape) if spec.shape is not None else 'the model input'}"
            )
        if scale is not None or mean is not None or std is not None:
            array = _normalise(array.astype(np.float32), scale, mean, std, _array_channel_axis(array, row, layout))
    else:
        if layout is None and row is not None and len(row) == 3:
            layout = "nchw"  # no channel axis recognisable: PyTorch's convention
        array = _read_image(path, row, resize=resize, layout=layout)
        array = _normalise(array, 1 / 255 if scale is None else scale, mean, std, -1)
        if row is not None and len(row) == 2:
            array = array[..., 0]
        elif layout != "nhwc":
            array = np.moveaxis(array, -1, 0)
    if spec.shape is not None and spec.batch_axis is not None and array.ndim == len(spec.shape) - 1:
        array = np.expand_dims(array, spec.batch_axis)
    return array


def read_table(path, spec: TensorSpec | None = None, *, columns=None, feature_names=None) -> tuple[np.ndarray, tuple]:
    """Rows of a ``.csv`` (with a header line) or ``.parquet`` table, and the names of the columns read.

    Parameters
    ----------
    path : str or os.PathLike
    spec : TensorSpec, optional
        The explained model input: its dtype, and its number of features, checked.
    columns : sequence of str, optional
        The columns to read, in order; by default ``feature_names`` when the table has them
        all, else every column.
    feature_names : sequence of str, optional
        The model's feature names (from its metadata).

    Returns
    -------
    rows : ndarray of shape (n_rows, n_columns)
    names : tuple of str
    """
    path = _existing(path)
    if path.suffix.lower() == ".csv":
        names, table = _read_csv(path)
    else:
        try:
            import pyarrow.parquet as parquet
        except ImportError as error:
            raise MissingDependencyError(
                "reading .parquet tables needs pyarrow: pip install 'agnostic-explain[data]'"
            ) from error
        try:
            frame = parquet.read_table(path)
        except Exception as error:  # pyarrow's errors for a damaged or foreign file
            raise InputError(f"input: {str(path)!r} is not a Parquet table ({error})") from error
        names = tuple(frame.column_names)
        table = {name: np.asarray(frame.column(name).to_numpy(zero_copy_only=False)) for name in names}
    chosen = pick_columns(names, columns, feature_names)
    row = spec.row_shape() if spec is not None else None
    if row is not None and len(row) == 1 and isinstance(row[0], int) and row[0] != len(chosen):
        raise InputShapeError(
            f"input: the model takes {row[0]} features per row, but {str(path)!r} has {len(chosen)} columns "
            f"{list(chosen)[:8]}{'...' if len(chosen) > 8 else ''}; give the model's feature names as the header"
        )
    try:
        rows = np.column_stack([table[name].astype(np.float64) for name in chosen])
    except (TypeError, ValueError) as error:
        raise InputError(f"input: {str(path)!r} has columns that are not numbers ({error})") from None
    return rows.astype(spec.dtype if spec is not None else np.float32), tuple(chosen)


def pick_columns(names, columns=None, feature_names=None) -> tuple:
    """The columns asked for, else the model's feature names when the table has them all, else all."""
    names = tuple(str(name) for name in names)
    if columns is not None:
        missing = [name for name in columns if name not in names]
        if missing:
            raise ParameterError(f"columns: the table has no columns {missing}; it has {list(names)}")
        return tuple(columns)
    if feature_names and all(name in names for name in feature_names):
        return tuple(feature_names)
    return names


def _read_csv(path: Path) -> tuple[tuple, dict]:
    import csv

    with open(path, newline="", encoding="utf-8-sig") as file:
        lines = [line for line in csv.reader(file) if line]
    if len(lines) < 2:
        raise InputError(f"input: {str(path)!r} needs a header line and at least one row, got {len(lines)} line(s)")
    header, body = tuple(name.strip() for name in lines[0]), lines[1:]
    widths = {len(line) for line in body}
    if widths != {len(header)}:
        raise InputError(f"input: {str(path)!r} has rows of {sorted(widths)} fields for {len(header)} header names")
    try:
        values = np.array(body, dtype=np.float64)
    except ValueError:
        raise InputError(f"input: {str(path)!r} holds values that are not numbers (a header line is expected first)") from None
    return header, {name: values[:, index] for index, name in enumerate(header)}


def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, "No such file", str(path))
    return path


def _read_image(path: Path, row, *, resize, layout) -> np.ndarray:
    """Pixels as float32 (height, width, channels) in the image's own value range."""
    from PIL import Image, UnidentifiedImageError

    if row is not None and len(row) not in (2, 3):
        raise InputShapeError(
            f"input: the model input has rows of shape {tuple(row)}; only inputs of rank 2 (H, W) or "
            f"3 (C, H, W or H, W, C) can be read from an image file, use .npy for others"
        )
    channel_axis = {"nchw": 0, "nhwc": 2}.get(layout) if row is not None and len(row) == 3 else None
    channels = row[channel_axis] if channel_axis is not None else (1 if row is not None and len(row) == 2 else 3)
    if channels not in _MODES:
        raise InputShapeError(f"input: the model wants {channels} channels; images give 1, 3 or 4")
    spatial = [row[axis] for axis in range(len(row)) if axis != channel_axis] if row is not None else [None, None]
    if resize is None and all(isinstance(size, int) for size in spatial):
        resize = tuple(spatial)
    elif resize is not None:
        _check_against_model(resize, spatial)
    try:
        # Pillow's decompression-bomb limit holds: an image past it is refused, not decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(f"input: {str(path)!r} is refused as a possible decompression bomb ({error})") from None
    except UnidentifiedImageError as error:
        raise InputError(
            f"input: {str(path)!r} is neither .npy/.npz nor an image Pillow can read"
        ) from error
    with image:
        _check_image_bytes(path, image.height, image.width, channels, "the image")
        if resize is not None:
            _check_image_bytes(path, resize[0], resize[1], channels, "resize")
        try:
            image = image.convert(_MODES[channels])
            if resize is not None and tuple(resize) != (image.height, image.width):
                height, width = resize
                image = image.resize((int(width), int(height)), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32)
        except (OSError, SyntaxError) as error:  # a truncated or damaged image past its header
            raise InputError(f"input: {str(path)!r} is a damaged image ({error})") from error
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _checked_resize(resize) -> tuple[int, int]:
    """``resize`` as (height, width) of positive ints."""
    try:
        height, width = resize
    except (TypeError, ValueError):
        raise ParameterError(f"resize must be (height, width), got {resize!r}") from None
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(f"resize must be two positive ints (height, width), got {tuple(resize)!r}")
    return int(height), int(width)


def _check_against_model(resize, spatial) -> None:
    """A resize the model's static height and width refuse fails before any pixel is read."""
    for axis, (asked, size) in enumerate(zip(resize, spatial)):
        if isinstance(size, int) and asked != size:
            raise InputShapeError(
                f"resize: {tuple(resize)} does not fit the model, whose input is {size} pixels "
                f"{'high' if axis == 0 else 'wide'}; use {tuple(spatial)} or leave resize out"
            )


def _check_image_bytes(path, height: int, width: int, channels: int, what: str) -> None:
    """Refuse an image whose float32 array would take more than MAX_IMAGE_BYTES."""
    size = int(height) * int(width) * channels * 4
    if size > MAX_IMAGE_BYTES:
        raise InputError(
            f"input: {what} of {str(path)!r}, {height}x{width} with {channels} channel(s), would take "
            f"{size / 2**30:.3g} GiB as float32, over the {MAX_IMAGE_BYTES >> 30} GiB limit"
        )


def _array_channel_axis(array: np.ndarray, row, layout) -> int | None:
    """The channel axis of an array given with or without its batch axis."""
    if layout is None or array.ndim < 3:
        return None
    offset = array.ndim - 3  # a batch axis in front, or none
    return offset + (0 if layout == "nchw" else 2)


def _normalise(array: np.ndarray, scale, mean, std, channel_axis) -> np.ndarray:
    """``(array * scale - mean) / std``, with mean and std per channel along ``channel_axis``."""
    if scale is not None:
        array = array * np.float32(scale)
    for name, values in (("mean", mean), ("std", std)):
        if values is None:
            continue
        values = np.atleast_1d(np.asarray(values, dtype=np.float32))
        if name == "std" and np.any(values == 0):
            raise ParameterError(f"std must not contain 0, got {values.tolist()}")
        if values.size > 1:
            if channel_axis is None or array.shape[channel_axis] != values.size:
                raise ParameterError(
                    f"{name} has {values.size} values, but the input has "
                    f"{'no channel axis' if channel_axis is None else f'{array.shape[channel_axis]} channels'}"
                )
            shape = [1] * array.ndim
            shape[channel_axis] = values.size
            values = values.reshape(shape)
        array = array - values if name == "mean" else array / values
    return array.astype(np.float32, copy=False)
