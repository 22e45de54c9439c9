"""Feature masks: integer group ids over an input row, and the one way perturbations use them.

A mask is an integer array of group ids ``0 .. n_groups - 1``, broadcastable to one input
row (the batch axis excluded). Every perturbation method (feature ablation, LIME, KernelSHAP,
Shapley sampling) describes a perturbation as the set of groups it keeps, and
:func:`compose` turns those sets into model rows in one vectorised step.
"""

from __future__ import annotations

import numpy as np

from ..errors import MissingDependencyError, ParameterError

__all__ = ["column_groups", "compose", "grid", "n_groups", "one_per_element", "superpixels", "token_positions", "validate"]


def grid(shape: tuple[int, int], cells: int | tuple[int, int]) -> np.ndarray:
    """Rectangular patches over an image plane.

    Parameters
    ----------
    shape : (height, width)
    cells : int or (int, int)
        Patch size in pixels (height, width); patches at the far edges may be smaller.

    Returns
    -------
    ndarray of shape (height, width), dtype int64
        Group ids in row-major patch order.

    Examples
    --------
    >>> grid((4, 4), 2)
    array([[0, 0, 1, 1],
           [0, 0, 1, 1],
           [2, 2, 3, 3],
           [2, 2, 3, 3]])
    """
    height, width = _sizes(shape, "shape", "(height, width) of positive ints", minimum=1)
    cell_h, cell_w = _sizes((cells, cells) if _is_int(cells) else cells, "cells",
                            "an int or (int, int) patch size >= 1", minimum=1, given=cells)
    rows = np.arange(height) // cell_h
    cols = np.arange(width) // cell_w
    return (rows[:, None] * (cols.max() + 1) + cols[None, :]).astype(np.int64)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _sizes(value, name: str, expected: str, *, minimum: int, rank: int = 2, given=None) -> tuple[int, ...]:
    """``value`` as a tuple of ``rank`` ints >= ``minimum``, or a ParameterError naming it and what was expected."""
    given = value if given is None else given
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or len(items) != rank or not all(_is_int(item) and item >= minimum for item in items):
        raise ParameterError(f"{name} must be {expected}, got {given!r}")
    return tuple(int(item) for item in items)


def superpixels(image: np.ndarray, method: str = "quickshift", *, channel_axis: int = -1, **params) -> np.ndarray:
    """Superpixels of one image through scikit-image.

    Parameters
    ----------
    image : ndarray of shape (height, width, channels) or (height, width)
        One image; floats are rescaled to [0, 1] for the segmentation only.
    method : {"quickshift", "slic", "felzenszwalb"}
        The scikit-image algorithm. ``quickshift`` defaults to lime's parameters
        (kernel_size=4, max_dist=200, ratio=0.2).
    channel_axis : int
        Axis of the colour channels (-1 for HWC, 0 for CHW).
    **params
        Passed to the scikit-image function.

    Returns
    -------
    ndarray of shape (height, width), dtype int64
        Group ids ``0 .. n - 1``.
    """
    try:
        from skimage import segmentation
    except ImportError as error:
        raise MissingDependencyError(
            "superpixels need scikit-image: pip install 'agnostic-explain[images]'"
        ) from error
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        if not _is_int(channel_axis) or not -3 <= channel_axis < 3:
            raise ParameterError(f"channel_axis must be an axis of the 3-D image (-3 .. 2), got {channel_axis!r}")
        image = np.moveaxis(image, channel_axis, -1)
    elif image.ndim != 2:
        raise ParameterError(f"image must be 2-D or 3-D, got shape {image.shape}")
    low, high = image.min(), image.max()
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    if image.ndim == 2 or image.shape[-1] == 1:
        gray = image if image.ndim == 2 else image[..., 0]
        image = np.repeat(gray[..., None], 3, axis=-1)  # quickshift needs colour
    if method == "quickshift":
        options = {"kernel_size": 4, "max_dist": 200, "ratio": 0.2, "rng": 0, **params}
        labels = segmentation.quickshift(image, **options)
    elif method == "slic":
        labels = segmentation.slic(image, **{"n_segments": 100, "start_label": 0, **params})
    elif method == "felzenszwalb":
        labels = segmentation.felzenszwalb(image, **params)
    else:
        raise ParameterError(f"method must be 'quickshift', 'slic' or 'felzenszwalb', got {method!r}")
    _, ids = np.unique(labels, return_inverse=True)
    return ids.reshape(labels.shape).astype(np.int64)


def column_groups(n_features: int, groups) -> np.ndarray:
    """Group tabular columns.

    Parameters
    ----------
    n_features : int
    groups : sequence of sequences of int, or dict of name to sequence of int
        Columns that move together; columns not named get a group of their own.

    Returns
    -------
    ndarray of shape (n_features,), dtype int64

    Examples
    --------
    >>> column_groups(5, [[0, 1], [3, 4]])
    array([0, 0, 2, 1, 1])
    """
    if not _is_int(n_features) or n_features < 0:
        raise ParameterError(f"n_features must be an int >= 0, got {n_features!r}")
    members = list(groups.values()) if isinstance(groups, dict) else list(groups)
    mask = np.full(n_features, -1, dtype=np.int64)
    for group, columns in enumerate(members):
        if isinstance(columns, (str, bytes)) or not np.iterable(columns):
            raise ParameterError(f"groups: group {group} must be a sequence of column indices, got {columns!r}")
        for column in columns:
            if not _is_int(column):
                raise ParameterError(f"groups: column {column!r} in group {group} must be an int index")
            if not 0 <= column < n_features:
                raise ParameterError(f"groups: column {column} is out of range for {n_features} features")
            if mask[column] != -1:
                raise ParameterError(f"groups: column {column} is in more than one group")
            mask[column] = group
    loose = np.flatnonzero(mask == -1)
    mask[loose] = len(members) + np.arange(len(loose))
    return mask


def token_positions(length: int, *, words: np.ndarray | None = None) -> np.ndarray:
    """One group per token position, or per word when ``words`` gives each token's word id.

    Returns
    -------
    ndarray of shape (length,), dtype int64
    """
    if not _is_int(length) or length < 0:
        raise ParameterError(f"length must be an int >= 0, got {length!r}")
    if words is None:
        return np.arange(length, dtype=np.int64)
    words = np.asarray(words)
    if words.shape != (length,):
        raise ParameterError(f"words must have shape ({length},), got {words.shape}")
    _, ids = np.unique(words, return_inverse=True)
    return ids.astype(np.int64)


def one_per_element(row_shape: tuple) -> np.ndarray:
    """The default mask: every element of a row its own group, numbered in C order.

    >>> one_per_element((2, 3)).tolist()
    [[0, 1, 2], [3, 4, 5]]
    """
    try:
        sizes = tuple(row_shape)
    except TypeError:
        sizes = None
    if sizes is None or not all(_is_int(size) and size >= 0 for size in sizes):
        raise ParameterError(f"row_shape must be a tuple of ints >= 0, got {row_shape!r}")
    return np.arange(int(np.prod(row_shape)), dtype=np.int64).reshape(row_shape)


def validate(mask, row_shape: tuple, *, parameter: str = "feature_mask") -> np.ndarray:
    """Check a mask against one input row and return it broadcast to the row's shape.

    Group ids must be integers ``0 .. n_groups - 1`` with every id present.
    """
    mask = np.asarray(mask)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ParameterError(f"{parameter} must hold integer group ids, got dtype {mask.dtype}")
    try:
        mask = np.broadcast_to(mask, row_shape)
    except ValueError:
        raise ParameterError(
            f"{parameter} of shape {np.shape(mask)} does not broadcast to one input row {tuple(row_shape)}"
        ) from None
    ids = np.unique(mask)
    if ids.size == 0:
        raise ParameterError(f"{parameter}: one input row {tuple(row_shape)} has no elements to group")
    if ids[0] != 0 or ids[-1] != len(ids) - 1:
        raise ParameterError(
            f"{parameter} ids must be 0 .. n_groups - 1 with none missing; got {len(ids)} ids from {ids[0]} to {ids[-1]}"
        )
    return mask.astype(np.int64, copy=False)


def n_groups(mask: np.ndarray) -> int:
    """Number of groups in a validated mask."""
    return int(mask.max()) + 1


def compose(x: np.ndarray, baseline: np.ndarray, mask: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows that take the kept groups from ``x`` and the rest from ``baseline``.

    Parameters
    ----------
    x : ndarray broadcastable to ``(k, *row_shape)``
        The explained row (or one per perturbation).
    baseline : ndarray broadcastable to ``(k, *row_shape)``
        Values for the groups not kept (a scalar, a row, one row per perturbation).
    mask : ndarray of shape row_shape
        Validated group ids.
    keep : ndarray of shape (k, n_groups), bool
        Which groups each perturbation keeps.

    Returns
    -------
    ndarray of shape (k, *row_shape)

    Examples
    --------
    >>> compose(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([0, 0, 1]), np.array([[True, False], [False, True]]))
    array([[1., 2., 0.],
           [0., 0., 3.]])
    """
    keep = np.asarray(keep, dtype=bool)
    return np.where(keep[:, mask], x, baseline)
