"""bench/lidar_postfilter.py: a decoder-side filter trained with and without the depth map."""
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from lidar_postfilter import PostFilter, batches, train_arms  # noqa: E402


def test_an_untrained_filter_returns_the_decoded_image_of_any_size():
    for height, width in ((16, 24), (15, 23)):
        decoded = torch.rand(2, 3, height, width)
        out = PostFilter(8, 1)(decoded, torch.tensor([0.0, 1.0]), torch.rand(2, 1, height, width))
        assert torch.equal(out, decoded)


def test_both_arms_see_the_same_batches():
    entries = _entries(3, informative=True)
    first = list(batches(entries, 4, 2, 16, 2, seed=5))
    again = list(batches(entries, 4, 2, 16, 2, seed=5))
    assert all(torch.equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))


def test_only_the_depth_arm_learns_a_correction_that_lives_in_the_depth_map():
    """Positive control: where the coding error is the depth map itself, the arm that sees the depth
    map removes it and the zeros arm cannot."""
    args = Namespace(seed=0, channels=8, blocks=1, lr=3e-3, steps=200, batch=4, crop=32)
    _, mse = train_arms(_entries(4, informative=True), args, levels=2)
    assert mse['depth'] < 0.3 * mse['zeros'], mse


def test_neither_arm_gains_from_a_depth_map_unrelated_to_the_error():
    args = Namespace(seed=0, channels=8, blocks=1, lr=3e-3, steps=200, batch=4, crop=32)
    _, mse = train_arms(_entries(4, informative=False), args, levels=2)
    assert abs(mse['depth'] - mse['zeros']) < 0.2 * mse['zeros'], mse


def _entries(count, informative, size=48, seed=0):
    """Frames whose decoded image lacks 0.3 x the depth map (informative) or has independent noise."""
    rng = np.random.default_rng(seed)
    entries = []
    for _ in range(count):
        image = rng.integers(60, 190, (size, size, 3)).astype(np.uint8)
        points = rng.random((size, size)) < 0.3
        depth = np.where(points, rng.integers(1, 256, (size, size)), 0).astype(np.uint8)
        error = 0.3 * depth[..., None] if informative else rng.normal(0, 40, (size, size, 1))
        decoded = np.clip(image - error, 0, 255).astype(np.uint8)
        entries.append({'image': image, 'depth': depth, 'decoded': [decoded, decoded]})
    return entries
