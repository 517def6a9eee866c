"""Dense depth from the sparse LiDAR map (IP-Basic's fill_in_fast)."""
import numpy as np
import pytest

from xmodal_compress_ros.errors import ImageFormatError
from xmodal_compress_ros.geometry.depth_completion import MAX_DEPTH_M, complete_depth


def _scanlines(dense: np.ndarray, row_step: int = 4, col_step: int = 2) -> np.ndarray:
    """A LiDAR-like sparse sampling of ``dense``: every ``row_step``-th row, every ``col_step``-th column,
    from row 10 down (no beam points above the horizon)."""
    sparse = np.zeros_like(dense)
    sparse[10::row_step, ::col_step] = dense[10::row_step, ::col_step]
    return sparse


def test_a_sampled_plane_is_filled_everywhere_with_its_depth():
    sparse = _scanlines(np.full((60, 90), 12.5, np.float32))
    dense = complete_depth(sparse)
    assert dense.dtype == np.float32 and dense.shape == sparse.shape
    np.testing.assert_allclose(dense, 12.5, atol=1e-3)


def test_the_nearer_surface_keeps_its_outline_against_the_farther_one():
    truth = np.full((60, 90), 40.0, np.float32)
    truth[20:50, 30:60] = 8.0                         # an object in front of a wall
    dense = complete_depth(_scanlines(truth))
    np.testing.assert_allclose(dense[26:46, 35:55], 8.0, atol=1e-3)
    np.testing.assert_allclose(dense[30:50, 5:20], 40.0, atol=1e-3)
    np.testing.assert_allclose(dense[30:50, 72:], 40.0, atol=1e-3)
    # The morphology may grow the near object by a few pixels (as occlusion would), never shrink it.
    near = dense < 24.0
    assert near[22:48, 31:59].all()
    assert not near[:, :24].any() and not near[:, 66:].any()


def test_only_extrapolation_fills_the_rows_above_the_highest_beam():
    sparse = np.zeros((60, 90), np.float32)
    sparse[30::4, ::2] = 10.0
    assert (complete_depth(sparse, extrapolate=False)[:20] == 0).all()
    np.testing.assert_allclose(complete_depth(sparse, extrapolate=True), 10.0, atol=1e-3)


def test_an_empty_map_stays_empty_and_far_points_are_clipped():
    assert not complete_depth(np.zeros((20, 30), np.float32)).any()
    sparse = _scanlines(np.full((40, 40), 250.0, np.float32))
    assert complete_depth(sparse).max() <= MAX_DEPTH_M


@pytest.mark.parametrize('depth', [np.full((20, 30), np.nan, np.float32), -np.ones((20, 30), np.float32),
                                   np.zeros((20, 30), np.uint8), np.zeros((3, 30), np.float32),
                                   np.zeros((20, 30, 1), np.float32)])
def test_bad_maps_are_refused_clearly(depth):
    with pytest.raises(ImageFormatError, match='depth'):
        complete_depth(depth)
