"""research/lidar_scales.py: the research variant whose scales see the LiDAR; its estimated-bits curves."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ('research', 'bench')]
import lidar_scales  # noqa: E402
from lidar_scales import ScaleConditionedCodec, estimated_curve, model_arms  # noqa: E402
from side_information import curve, zeros_map  # noqa: E402

from xmodal_compress_ros.codec.models import LidarConditionedCodec, get_model_class  # noqa: E402

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8, ctx_ch=(4, 8, 8), p2i_ch=8, lambdas=(0.001, 0.01))


def _pair():
    """A product LiDAR model and the research variant with the same weights."""
    torch.manual_seed(0)
    product = LidarConditionedCodec(**TINY).eval()
    variant = ScaleConditionedCodec(**TINY).eval()
    variant.load_state_dict(product.state_dict(), strict=False)
    return product, variant


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((1, 3, 64, 128), dtype=np.float32))  # a multiple of 64
    depth = torch.from_numpy(rng.integers(0, 256, (1, 1, 64, 128)).astype(np.uint8))
    return x, depth


def _frame(seed=0):
    rng = np.random.default_rng(seed)
    image = np.zeros((64, 96, 3), np.uint8)
    image[16:48, 24:72] = rng.integers(60, 200, size=3, dtype=np.uint8)
    return SimpleNamespace(image=image, name=f'box{seed}')


def test_the_variant_is_registered_for_model_files():
    assert get_model_class(lidar_scales.ARCH) is ScaleConditionedCodec


def test_the_products_scales_never_see_the_lidar():
    product, _ = _pair()
    x, depth = _inputs()
    z_hat = torch.round(product.analysis(x, torch.tensor([1]), product.context(depth, x))[1])
    with_scan = product.scale_index(z_hat, product.context(depth, x))
    without = product.scale_index(z_hat, product.context(None, x))
    assert torch.equal(with_scan, without) and torch.equal(with_scan, product.h_s_scale(z_hat))


def test_the_variant_starts_as_the_product_then_its_scales_follow_the_map():
    product, variant = _pair()
    x, depth = _inputs()
    with torch.no_grad():
        a, b = product(x, depth, quality=1), variant(x, depth, quality=1)
        assert torch.equal(a.likelihoods['y'], b.likelihoods['y'])  # zero-initialised refiner
        variant.scale_refiner.bias.fill_(3.0)
        variant.scale_refiner.weight.normal_(0, 0.5)
        z_hat = torch.round(variant.analysis(x, torch.tensor([1]), variant.context(depth, x))[1])
        with_scan = variant.scale_index(z_hat, variant.context(depth, x))
        without = variant.scale_index(z_hat, variant.context(None, x))
    assert not torch.equal(with_scan, without)
    assert with_scan.min() >= 0 and with_scan.max() <= 63 and torch.equal(with_scan, with_scan.round())


def test_estimated_bits_track_the_coded_bytes_and_the_image_is_the_decoded_one():
    product, _ = _pair()
    product.update()
    frames = [_frame(0), _frame(1)]
    estimated, coded = estimated_curve(product, frames, zeros_map), curve(product, frames, zeros_map)
    for e, c in zip(estimated, coded):
        assert e['psnr_db'] == pytest.approx(c['psnr_db'], abs=0.05)
        # Coded packets add the substreams' flush bytes, which weigh much on a 64x96 image.
        assert 0.3 * c['bpp'] < e['bpp'] <= c['bpp'] * 1.05


def test_only_the_products_architecture_gets_coded_arms(monkeypatch):
    product, variant = _pair()
    product.update()
    variant.update()
    monkeypatch.setattr(lidar_scales.side_information, 'condition_map', lambda kind, frame: np.full(
        frame.image.shape[:2], 128, np.uint8))
    frames = [_frame(0)]
    assert set(model_arms(variant, frames, 'scan')) == {'map', 'zeros'}
    assert set(model_arms(product, frames, 'scan')) == {'map', 'zeros', 'map-coded', 'zeros-coded'}


def test_train_runs_side_informations_training_with_the_variant(monkeypatch):
    seen = {}
    monkeypatch.setattr(lidar_scales.side_information, 'main', lambda argv: seen.update(argv=argv) or 0)
    lidar_scales.main(['train', '--map', 'scan', '--data', 'synthetic:d', '--out', 'o'])
    assert seen['argv'][-2:] == ['--arch', lidar_scales.ARCH]
    with pytest.raises(SystemExit):
        lidar_scales.main(['nothing'])
