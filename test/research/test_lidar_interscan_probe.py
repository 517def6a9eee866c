"""research/lidar_interscan_probe.py: the oracle's accounting and an inter predictor that is exact."""
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / 'research')]
from lidar_interscan_probe import codec_layout, oracle_blocks, pair_costs  # noqa: E402


def _laser_major_scan(lasers=16, columns=720, seed=0):
    """A KITTI-like scan: one laser's sweep after another."""
    rng = np.random.default_rng(seed)
    elevation = np.radians(np.linspace(-20, 2, lasers))[:, None]
    azimuth = (np.arange(columns) * 2 * np.pi / columns)[None, :] + rng.normal(0, 1e-4, (lasers, columns))
    distance = 6 + 20 * (1 + np.sin(3 * azimuth)) / 2 + rng.normal(0, 0.03, (lasers, columns))
    xyz = np.stack([distance * np.cos(elevation) * np.cos(azimuth),
                    distance * np.cos(elevation) * np.sin(azimuth),
                    distance * np.sin(elevation) + 0 * azimuth], axis=-1)
    return xyz.reshape(-1, 3).astype(np.float32)


def test_oracle_takes_the_cheaper_side_per_block_and_pays_a_bit_each():
    a = np.array([1.0] * 4 + [5.0] * 4)
    b = np.array([3.0] * 4 + [2.0] * 4)
    total, share, choice = oracle_blocks(a, b, block=4)
    assert total == 4 + 8 + 2 and share == 0.5 and choice.tolist() == [False, True]


def test_the_same_scan_as_its_own_previous_predicts_every_covered_range():
    scan = codec_layout(_laser_major_scan(), 0.01)
    result = pair_costs(scan, scan, np.eye(4), 0.01)
    identity = result['predictors']['identity']
    # A few cells hold two returns (the nearest is kept), so not quite every range is exact.
    assert identity['coverage'] > 0.9 and identity['exact_inter_share'] > 0.95
    bits = result['bits']
    assert bits['identity/b_inter_codec_contexts'] < bits['a_intra_codec_contexts']
