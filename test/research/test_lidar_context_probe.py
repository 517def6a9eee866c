"""research/lidar_context_probe.py: its accounting adds up to the codec's payload, and its
re-chosen ranges reproduce the codec's own."""
import sys
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / 'research')]
from lidar_context_probe import (adaptive_bits, breakdown, layout, per_point,  # noqa: E402
                                 range_candidates, range_predictors)
from xmodal_compress_ros.codec import lidar_predictive as lp  # noqa: E402


def _laser_major_scan(lasers=16, columns=720, seed=0):
    """A KITTI-like scan (one laser's sweep after another) with a noisy reflectance in [0, 1]."""
    rng = np.random.default_rng(seed)
    elevation = np.radians(np.linspace(-20, 2, lasers))[:, None]
    azimuth = (np.arange(columns) * 2 * np.pi / columns)[None, :] + rng.normal(0, 1e-4, (lasers, columns))
    distance = 6 + 20 * (1 + np.sin(3 * azimuth)) / 2 + rng.normal(0, 0.03, (lasers, columns))
    reflectance = np.clip(0.3 + 0.1 * np.sin(azimuth) + rng.normal(0, 0.03, (lasers, columns)), 0, 1)
    points = np.stack([distance * np.cos(elevation) * np.cos(azimuth),
                       distance * np.cos(elevation) * np.sin(azimuth),
                       distance * np.sin(elevation) + 0 * azimuth, reflectance], axis=-1)
    return points.reshape(-1, 4).astype(np.float32)


def test_the_breakdown_adds_up_to_the_payload():
    points = _laser_major_scan()
    lay = layout(points, 0.01)
    parts = breakdown(lay)
    n = len(lay['ranges'])
    codes = np.rint(np.clip(points[:, 3].astype(np.float64), 0, 1) * 255).astype(np.int64)
    payload = lp.encode(points[:, :3].copy(), codes, 0.01).payload
    coded = sum(value for key, value in parts.items() if not key.startswith(('table', 'side'))) * n
    # The side information is compressed together with the table, and the rANS stream ends on a word.
    estimate = coded + (parts['table_all'] + parts['side_other']) * n
    assert abs(estimate - 8 * len(payload)) < 0.03 * 8 * len(payload)


def test_the_previous_range_predictor_is_the_codec_and_costs_what_its_range_rows_cost():
    lay = layout(_laser_major_scan(), 0.01)
    pp = per_point(lay)
    predictors = range_predictors(lay, pp)  # asserts the re-chosen ranges are the codec's
    assert predictors['previous']['total_bits'] == range_candidates(lay, pp)['current']['total_bits']


def test_an_adaptive_row_learns_a_constant_symbol():
    rows = np.zeros(1000, np.int64)
    bits = adaptive_bits(rows, np.zeros(1000, np.int64))
    assert 0 < bits < 40  # log2(32) for the first symbol, then quickly near 0
    assert adaptive_bits(rows, np.arange(1000) % 20 - 10) > 1000 * np.log2(20) * 0.95


def test_the_laser_above_predicts_a_range_that_changes_alike_on_every_laser():
    """On a scan whose range follows the azimuth alike on every laser (the laser above sees the same
    change), the planar predictor from the laser above costs less than the previous range; it is
    the KITTI scans' sensor noise that makes it cost more there (docs/lidar_stream.md)."""
    lay = layout(_laser_major_scan(), 0.01)
    candidates = range_candidates(lay, per_point(lay))
    assert candidates['planar_laser_above']['total_bits'] < 0.9 * candidates['current']['total_bits']
    assert candidates['median_edge_laser_above']['total_bits'] < candidates['current']['total_bits']
