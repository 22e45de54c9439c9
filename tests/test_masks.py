"""Mask builders refuse malformed arguments with a ParameterError naming the parameter, the value and what was expected."""

from __future__ import annotations

import re

import numpy as np
import pytest

from agnostic_explain.errors import ParameterError
from agnostic_explain.perturbation import masks


@pytest.mark.parametrize("shape", [(4, 4, 3), (8,), 4, (4, 0), (4.0, 4), None])
def test_grid_refuses_a_shape_that_is_not_height_and_width(shape):
    with pytest.raises(ParameterError, match=r"shape must be \(height, width\) of positive ints, got " + re.escape(repr(shape))):
        masks.grid(shape, 2)


@pytest.mark.parametrize("cells", [0, (2, 2, 2), (2,), 2.5, (1, -1), True])
def test_grid_refuses_bad_cells(cells):
    with pytest.raises(ParameterError, match=r"cells must be an int or \(int, int\) patch size >= 1"):
        masks.grid((4, 4), cells)


def test_grid_accepts_array_shapes_and_numpy_ints():
    expected = masks.grid((4, 6), (2, 3))
    np.testing.assert_array_equal(masks.grid(np.zeros((1, 4, 6)).shape[-2:], np.int64(2) + np.array([0, 1])), expected)
    assert expected.max() == 3


def test_other_builders_name_what_they_expected():
    with pytest.raises(ParameterError, match=r"row_shape must be a tuple of ints >= 0, got \(2, -1\)"):
        masks.one_per_element((2, -1))
    with pytest.raises(ParameterError, match="n_features must be an int >= 0"):
        masks.column_groups(-1, [])
    with pytest.raises(ParameterError, match="group 0 must be a sequence of column indices, got 1"):
        masks.column_groups(3, [1, 2])
    with pytest.raises(ParameterError, match=r"column 'a' in group 0 must be an int index"):
        masks.column_groups(3, [[0, "a"]])
    with pytest.raises(ParameterError, match="length must be an int >= 0, got -1"):
        masks.token_positions(-1)
    with pytest.raises(ParameterError, match="feature_mask: one input row"):
        masks.validate(np.zeros(0, dtype=np.int64), (0,))


def test_superpixels_refuses_a_channel_axis_outside_the_image():
    pytest.importorskip("skimage")
    with pytest.raises(ParameterError, match=r"channel_axis must be an axis of the 3-D image \(-3 .. 2\), got 5"):
        masks.superpixels(np.zeros((4, 4, 3)), "slic", channel_axis=5)
