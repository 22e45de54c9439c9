"""Latent traversals of a decoder drawn as an image grid: rows are dimensions, columns values."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError

__all__ = ["traversal_grid"]


def traversal_grid(decoder, z, dims, values, *, image_shape=None, figure=None, cmap="gray", title=True):
    """Decode ``z`` with each of ``dims`` swept over ``values``, one image per cell.

    Parameters
    ----------
    decoder : str, bytes, onnx.ModelProto, Model or callable
        Takes ``z`` of shape (batch, latent_dim); see :func:`agnostic_explain.load`.
    z : array_like of shape (latent_dim,) or (1, latent_dim)
    dims : sequence of int
        Latent dimensions, one grid row each.
    values : array_like of shape (n_values,)
        Values each dimension takes, one grid column each.
    image_shape : tuple of int, optional
        Reshape each decoded row to it, e.g. ``(8, 8)`` for flat 64-value outputs. Without
        it a decoded row must already be (H, W), (1, H, W) or (H, W, 1).
    figure : matplotlib.figure.Figure, optional
        Drawn on; a new Figure by default.
    cmap : str, default "gray"
    title : bool or str, default True

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from agnostic_explain.runtime.callable import CallableModel
    >>> decoder = CallableModel(lambda z: np.repeat(z, 8, axis=1))
    >>> figure = traversal_grid(decoder, [0.0, 0.0], [0, 1], [-1, 0, 1], image_shape=(4, 4))
    >>> len(figure.axes)
    6
    """
    from ..inspection.generative import latent_traversal

    dims = [dims] if isinstance(dims, (int, np.integer)) else list(dims)
    if not dims:
        raise ParameterError("dims must name at least one latent dimension, got none")
    values = np.asarray(values, dtype=np.float64).ravel()
    decoded = np.stack([latent_traversal(decoder, z, dim, values) for dim in dims])
    images = _as_images(decoded, image_shape)
    low, high = float(images.min()), float(images.max())

    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=(1.1 * len(values) + 0.8, 1.1 * len(dims) + 0.6), layout="constrained")
    axes = figure.subplots(len(dims), len(values), squeeze=False)
    for r, dim in enumerate(dims):
        for c, value in enumerate(values):
            ax = axes[r, c]
            ax.imshow(images[r, c], cmap=cmap, vmin=low, vmax=high)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == len(dims) - 1:
                ax.set_xlabel(f"{value:.3g}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"z[{dim}]", fontsize=9)
    if title:
        figure.suptitle(title if isinstance(title, str) else "Latent traversal (rows: dimension, columns: value)",
                        fontsize=10)
    return figure


def _as_images(decoded: np.ndarray, image_shape) -> np.ndarray:
    """Decoded (n_dims, n_values, ...) as images (n_dims, n_values, H, W)."""
    head, item = decoded.shape[:2], decoded.shape[2:]
    if image_shape is not None:
        image_shape = tuple(int(size) for size in image_shape)
        if int(np.prod(image_shape)) != int(np.prod(item)):
            raise ParameterError(
                f"image_shape {image_shape} has {int(np.prod(image_shape))} values, but each decoded "
                f"row has {int(np.prod(item))} (shape {item})"
            )
        item = image_shape
    squeezed = tuple(size for size in item if size != 1) if len(item) == 3 else item
    if len(squeezed) != 2:
        raise ParameterError(
            f"decoded rows of shape {item} are not single-channel images; pass image_shape=(H, W)"
        )
    return decoded.reshape(head + squeezed)
