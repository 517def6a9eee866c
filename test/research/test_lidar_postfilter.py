"""research/lidar_postfilter.py: a decoder-side filter trained with and without the scan's maps."""
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ('research', 'bench')]
from lidar_postfilter import ARMS, ScanPostFilter, batches, train_arms, visible  # noqa: E402


TRAINING = Namespace(seed=0, channels=8, blocks=1, lr=3e-3, steps=200, batch=4, crop=32)


def test_an_untrained_filter_returns_the_decoded_image_of_any_size():
    for height, width in ((16, 24), (15, 23)):
        decoded = torch.rand(2, 3, height, width)
        out = ScanPostFilter(8, 1)(decoded, torch.tensor([0.0, 1.0]), torch.rand(2, 3, height, width))
        assert torch.equal(out, decoded)


def test_each_arm_sees_only_its_scan_channels():
    scan = torch.rand(1, 3, 4, 4) + 0.1
    assert torch.equal(visible(scan, 'depth+reflectance+dense'), scan)
    assert torch.equal(visible(scan, 'depth+reflectance')[:, :2], scan[:, :2])
    assert not visible(scan, 'depth+reflectance')[:, 2].any()
    assert torch.equal(visible(scan, 'dense')[:, 2], scan[:, 2])
    assert not visible(scan, 'dense')[:, :2].any()
    assert not visible(scan, 'zeros').any()


def test_all_arms_see_the_same_batches():
    entries = _entries(3, error_channel=0)
    first = list(batches(entries, 4, 2, 16, 2, seed=5))
    again = list(batches(entries, 4, 2, 16, 2, seed=5))
    assert all(torch.equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))


def test_only_the_arms_that_see_the_sparse_depth_map_learn_a_correction_that_lives_in_it():
    """Positive control: where the coding error is the depth map itself, the arms that see the depth
    map remove it and the others cannot."""
    _, mse = train_arms(_entries(4, error_channel=0), TRAINING, levels=2)
    for arm in ('depth+reflectance', 'depth+reflectance+dense'):
        assert mse[arm] < 0.3 * min(mse['zeros'], mse['dense']), mse


def test_only_the_arms_that_see_the_reflectance_map_learn_a_correction_that_lives_in_it():
    _, mse = train_arms(_entries(4, error_channel=1), TRAINING, levels=2)
    for arm in ('depth+reflectance', 'depth+reflectance+dense'):
        assert mse[arm] < 0.3 * min(mse['zeros'], mse['dense']), mse


def test_only_the_arms_that_see_the_dense_depth_map_learn_a_correction_that_lives_in_it():
    # The error covers every pixel here, not 30 % of them: it takes longer to learn.
    _, mse = train_arms(_entries(4, error_channel=2), Namespace(**dict(vars(TRAINING), steps=600)), levels=2)
    for arm in ('dense', 'depth+reflectance+dense'):
        assert mse[arm] < 0.3 * min(mse['zeros'], mse['depth+reflectance']), mse


def test_no_arm_gains_from_scan_maps_unrelated_to_the_error():
    _, mse = train_arms(_entries(4, error_channel=None), TRAINING, levels=2)
    assert set(mse) == set(ARMS)
    assert max(mse.values()) - min(mse.values()) < 0.2 * mse['zeros'], mse


def _entries(count, error_channel, size=48, seed=0):
    """Frames whose decoded image lacks 0.3 x one scan map (0: sparse depth, 1: reflectance, 2: dense
    depth) or has independent noise (None)."""
    rng = np.random.default_rng(seed)
    entries = []
    for _ in range(count):
        image = rng.integers(60, 190, (size, size, 3)).astype(np.uint8)
        points = rng.random((size, size)) < 0.3
        sparse = np.where(points[..., None], rng.integers(1, 256, (size, size, 2)), 0)
        scan = np.concatenate([sparse, rng.integers(1, 256, (size, size, 1))], -1).astype(np.uint8)
        if error_channel is None:
            error = rng.normal(0, 40, (size, size, 1))
        else:
            error = 0.3 * scan[..., error_channel:error_channel + 1]
        decoded = np.clip(image - error, 0, 255).astype(np.uint8)
        entries.append({'image': image, 'scan': scan, 'decoded': [decoded, decoded]})
    return entries
