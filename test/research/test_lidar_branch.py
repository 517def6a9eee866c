"""research/lidar_branch.py: the measurement that tells whether a LiDAR branch carries anything."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ('research', 'bench')]
from lidar_branch import FEATURES, frame_record, frames_to_measure, mean_record, parse_args  # noqa: E402

from xmodal_compress_ros.codec.models import LidarConditionedCodec  # noqa: E402


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return LidarConditionedCodec(N=16, M=24, Nz=8, hyper_hidden=8, ctx_ch=(4, 8, 8), p2i_ch=8).eval()


def _frame(seed=0, density=0.05):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(40, 72, 3), dtype=np.uint8)
    depth = (rng.integers(1, 256, size=(40, 72)) * (rng.random((40, 72)) < density)).astype(np.uint8)
    return image, depth


def test_an_empty_scan_changes_nothing(model):
    image, _ = _frame()
    record = frame_record(model, image, np.zeros(image.shape[:2], np.uint8))
    for name in FEATURES:
        assert record[name]['change_without_scan_rms'] == 0.0
        assert record[name]['rms'] > 0  # the biases alone


def test_a_scan_moves_the_features_and_means_average(model):
    records = [frame_record(model, *_frame(seed)) for seed in range(2)]
    for record in records:
        assert all(record[name]['change_without_scan_rms'] > 0 for name in FEATURES)
        assert record['p2i_explained'] <= 1.0
    mean = mean_record(records)
    assert mean['c1']['rms'] == pytest.approx((records[0]['c1']['rms'] + records[1]['c1']['rms']) / 2)


def test_synthetic_frames_replace_the_kitti_ones():
    _, args = parse_args(['--synthetic', '1', '--seed', '3'])
    (name, frame), = list(frames_to_measure(args))
    assert name.startswith('synthetic/')
    assert frame.image.shape[:2] == (375, 1242) and len(frame.points) > 0


def test_max_frames_limits_the_synthetic_drive_too():
    _, args = parse_args(['--synthetic', '3', '--max-frames', '1', '--seed', '3'])
    assert len(list(frames_to_measure(args))) == 1
