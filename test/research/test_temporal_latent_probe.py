"""research/temporal_latent_probe.py: block search, motion entropy and the latent-bit estimate."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / 'research')]
from temporal_latent_probe import block_search, entropy_bits, latent_bits  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_torch_thread')


class _PoolCodec:
    """A stand-in codec whose latent is the image pooled to 1/16 and spread wide (an untrained tiny
    model's latent rounds to zero everywhere, which would leave nothing to predict)."""

    def analysis(self, x, quality):
        y = F.avg_pool2d(x, 16) * 200.0
        return y, torch.zeros(1, 1, 1, 1)

    def mean(self, z_hat):
        # The images' average level: what is left to predict is each one's texture.
        return torch.full((1, 3, 4, 8), 100.0)

    def scale_index(self, z_hat):
        return torch.full((1, 3, 4, 8), 50.0)


def _texture(height, width, seed):
    small = np.random.default_rng(seed).integers(0, 256, (height // 4 + 1, width // 4 + 1, 3))
    return np.repeat(np.repeat(small, 4, 0), 4, 1)[:height, :width].astype(np.float64)


def test_block_search_recovers_a_moved_block():
    reference = _texture(64, 96, 1)
    image = reference.copy()
    image[32:64, 32:64] = reference[30:62, 36:68]
    prediction, motion = block_search(image, reference, block=32, search=6)
    assert tuple(motion[1, 1]) == (-2, 4) and not motion[0].any()
    np.testing.assert_array_equal(prediction, image)


def test_entropy_bits_of_rows():
    assert entropy_bits(np.zeros((8, 2))) == 0
    assert entropy_bits(np.array([[0, 1], [1, 0]] * 4)) == pytest.approx(8.0)


def test_a_reference_equal_to_the_image_saves_latent_bits():
    image = _texture(64, 128, 2).astype(np.uint8)
    same = latent_bits(_PoolCodec(), image, image.astype(np.float32), 1)
    other = latent_bits(_PoolCodec(), image, _texture(64, 128, 3).astype(np.float32), 1)
    assert same['weights_chosen'][-1] == 3 and same['per_channel_bits'] < 0.8 * same['intra_bits']
    assert other['weights_chosen'][0] == 3 and other['per_channel_bits'] > same['per_channel_bits']
