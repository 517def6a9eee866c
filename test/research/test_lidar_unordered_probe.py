"""research/lidar_unordered_probe.py: its measures of a shuffled spinning scan and of a cloud without
lasers, and that the codec's state is restored after it forces bands and the grid."""
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / 'research')]
from lidar_unordered_probe import measure, valley_rings  # noqa: E402

from xmodal_compress_ros.codec import lidar_codec, lidar_predictive  # noqa: E402


def test_a_shuffled_spinning_scan_measures_cheaper_in_bands_than_on_the_grid():
    points, _ = lidar_codec._synthetic_scan(lasers=32, firings=720)
    xyz = points[:, :3]
    shuffled = xyz[np.random.default_rng(0).permutation(len(xyz))]
    row = measure(shuffled, xyz, 0.01)
    assert row['bunching'] >= lidar_predictive.BUNCH_RATIO and abs(row['height_m']) < 0.05
    assert row['chosen'] == 'spinning' and row['chosen_bpp'] == row['bands_bpp']
    assert row['bands_bpp'] < 0.6 * row['grid_bpp']
    assert row['bands_bpp'] < 1.1 * row['in_order_bpp']
    assert row['valley_bands_bpp'] < 1.1 * row['in_order_bpp']
    assert valley_rings(shuffled, 0.0).max() + 1 == 32  # a band per laser
    assert row['draco_kdtree_bpp'] > 0


def test_a_cloud_without_lasers_stays_on_the_grid_and_the_codec_is_left_as_it_was():
    found, ratio = lidar_predictive._elevation_rings, lidar_predictive.BUNCH_RATIO
    cloud = np.random.default_rng(1).uniform([2, -20, -3], [60, 20, 3], (6000, 3)).astype(np.float32)
    row = measure(cloud, None, 0.01)
    assert row['bunching'] < lidar_predictive.BUNCH_RATIO
    assert row['chosen'] == 'grid' and row['chosen_bpp'] == row['grid_bpp'] and row['in_order_bpp'] is None
    assert lidar_predictive._elevation_rings is found and lidar_predictive.BUNCH_RATIO == ratio
