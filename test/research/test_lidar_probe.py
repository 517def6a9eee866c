"""research/lidar_probe.py: linear probes of whether the scan could help the image-only twin."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ('research', 'bench')]
from lidar_probe import (LATENT_STRIDE, dense_depth, depth_maps, error_probe, frame_data,  # noqa: E402
                         mean_probe, ridge_two_fold, run_probes)

from xmodal_compress_ros.codec.models import HyperpriorCodec  # noqa: E402


def _frames(count=6, rows=400, informative=True, seed=0):
    """Features and targets per frame; the targets are linear in the features, or independent noise."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(5, 3))
    features, targets = [], []
    for _ in range(count):
        f = rng.normal(size=(rows, 5))
        noise = rng.normal(scale=0.1, size=(rows, 3))
        features.append(f)
        targets.append((f @ weights if informative else rng.normal(size=(rows, 3))) + noise)
    return features, targets


def test_ridge_predicts_held_out_frames_when_there_is_a_relation():
    features, targets = _frames()
    predictions = ridge_two_fold(features, targets)
    left = sum(((t - p) ** 2).sum() for t, p in zip(targets, predictions))
    energy = sum((t ** 2).sum() for t in targets)
    assert left / energy < 0.02


def test_ridge_finds_nothing_in_noise():
    features, targets = _frames(informative=False)
    predictions = ridge_two_fold(features, targets)
    left = sum(((t - p) ** 2).sum() for t, p in zip(targets, predictions))
    energy = sum((t ** 2).sum() for t in targets)
    assert left / energy > 0.98


def test_probes_convert_removed_energy_to_bits():
    features, targets = _frames()
    data = [{'latent_x': f, 'normalised_residual': t, 'y_bits': 1000.0} for f, t in zip(features, targets)]
    result = mean_probe(data, 'latent_x')
    assert result['normalised_energy_removed_percent'] > 98
    energy = sum((t ** 2).sum() for t in targets) * result['normalised_energy_removed_percent'] / 100
    assert result['y_bits_saved_percent_estimate'] == pytest.approx(
        100 * energy / (2 * np.log(2)) / (1000.0 * len(data)))
    noise = [dict(d, error=t) for d, t in zip(data, _frames(informative=False, seed=1)[1])]
    assert error_probe(noise, ['latent_x']) < 2


def test_an_empty_scan_gives_empty_depth_maps():
    like = torch.zeros(1, 3, 64, 128)
    maps = depth_maps(np.zeros((50, 120), np.uint8), like)
    assert maps.shape == (1, 5, 64, 128) and maps.abs().max() == 0
    valid = torch.zeros(1, 1, 20, 20)
    valid[..., 10, 10] = 1
    dense = dense_depth(valid * 0.5, valid)
    assert dense[..., 10, 12] == pytest.approx(0.5) and dense[..., 0, 0] == 0


def test_frame_data_and_probes_run_on_a_tiny_twin():
    torch.manual_seed(0)
    model = HyperpriorCodec(N=16, M=24, Nz=8, hyper_hidden=8).eval()
    model.update()
    rng = np.random.default_rng(0)
    data = []
    for seed in range(4):
        r = np.random.default_rng(seed)
        image = r.integers(0, 256, size=(60, 100, 3), dtype=np.uint8)
        depth = (r.integers(1, 256, size=(60, 100)) * (r.random((60, 100)) < 0.05)).astype(np.uint8)
        data.append(frame_data(model, image, depth, 0, rng))
    positions = (64 // LATENT_STRIDE) * (128 // LATENT_STRIDE)
    first = data[0]
    assert first['normalised_residual'].shape == (positions, 24)
    assert first['latent_depth'].shape[0] == positions and first['latent_image'].shape[0] == positions
    assert first['error'].shape == (6000, 3) and first['pixel_depth'].shape == (6000, 45)
    assert first['y_bits'] > 0
    result = run_probes(data)
    assert set(result['means']) == {'depth', 'original_image_control'}
    assert all(np.isfinite(v) for v in result['reconstruction_error_removed_percent'].values())
