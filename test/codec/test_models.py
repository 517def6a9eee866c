"""Both codecs: forward shapes, likelihoods, round trips through real bytes, robustness to the float path."""
import copy

import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.models import (HyperpriorCodec, LidarConditionedCodec, get_model_class,
                                              model_names)
from xmodal_compress_ros.errors import ModelFileError

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8)


def _depth(h, w, seed=0):
    """Stand-in depth-condition map: sparse uint8 values 1..255, 0 elsewhere."""
    rng = np.random.default_rng(seed)
    depth = rng.integers(1, 256, size=(h, w)) * (rng.random((h, w)) < 0.05)
    return torch.from_numpy(depth.astype(np.uint8))[None, None].float()


@pytest.fixture(scope='module')
def models():
    torch.manual_seed(0)
    out = {}
    for cls in (HyperpriorCodec, LidarConditionedCodec):
        model = cls(**TINY).eval()
        model.update()
        out[cls.registry_name] = model
    return out


def test_registry_lists_valid_names():
    assert {'xmodal-hyperprior', 'xmodal-lidar'} <= set(model_names())
    assert get_model_class('xmodal-lidar') is LidarConditionedCodec
    with pytest.raises(ModelFileError, match='xmodal-hyperprior'):
        get_model_class('nope')


@pytest.mark.parametrize('name', ['xmodal-hyperprior', 'xmodal-lidar'])
def test_forward_shapes_and_likelihoods(models, name):
    model = models[name].train()
    x = torch.rand(2, 3, 45, 70)
    out = model(x, _depth(45, 70).expand(2, 1, 45, 70), torch.tensor([0, 5]))
    model.eval()
    assert out['x_hat'].shape == x.shape
    # Padded to 64 x 128: y at 1/16, z at 1/64.
    assert out['likelihoods']['y'].shape == (2, 24, 4, 8)
    assert out['likelihoods']['z'].shape == (2, 8, 1, 2)
    for lik in out['likelihoods'].values():
        assert torch.all(lik > 0) and torch.all(lik <= 1)
    assert ('prediction' in out) == (name == 'xmodal-lidar')
    if name == 'xmodal-lidar':
        assert out['prediction'].shape == x.shape


def test_forward_rejects_bad_quality(models):
    model = models['xmodal-hyperprior']
    with pytest.raises(ValueError, match='quality'):
        model(torch.rand(1, 3, 64, 64), quality=torch.tensor([model.quality_levels]))


@pytest.mark.parametrize('name', ['xmodal-hyperprior', 'xmodal-lidar'])
def test_round_trip_equals_rounded_forward(models, name):
    model = models[name]
    x, depth = torch.rand(1, 3, 45, 70), _depth(45, 70)
    compressed = model.compress(x, depth, quality=3)
    assert compressed.original_size == (45, 70) and compressed.padded_size == (64, 128)
    assert compressed.num_bytes > 0
    decoded = model.decompress(compressed, depth)
    with torch.no_grad():
        expected = model(x, depth, torch.tensor([3]))['x_hat'].clamp(0, 1)
    assert decoded.shape == x.shape
    torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=0)


def test_lidar_model_decodes_without_depth(models):
    model = models['xmodal-lidar']
    x, depth = torch.rand(1, 3, 70, 45), _depth(70, 45)
    compressed = model.compress(x, depth, quality=1)
    z_with, y_with = model.decode_latents(compressed)
    decoded = model.decompress(compressed, None)
    assert decoded.shape == x.shape and torch.isfinite(decoded).all()
    # Parsing never depends on the LiDAR: the same symbols with or without the scan.
    z_again, y_again = model.decode_latents(compressed)
    np.testing.assert_array_equal(z_with, z_again)
    np.testing.assert_array_equal(y_with, y_again)


def test_zero_initialised_lidar_model_equals_twin(models):
    twin = models['xmodal-hyperprior']
    lidar = LidarConditionedCodec(**TINY).eval()
    lidar.init_from_twin(twin)
    x, depth = torch.rand(1, 3, 64, 64), _depth(64, 64)
    with torch.no_grad():
        a = twin(x, None, torch.tensor([2]))
        b = lidar(x, depth, torch.tensor([2]))
    torch.testing.assert_close(a['x_hat'], b['x_hat'], atol=1e-6, rtol=0)
    torch.testing.assert_close(a['likelihoods']['y'], b['likelihoods']['y'])


def test_mmfft_and_zeros_conditioning_run():
    for kwargs in (dict(fusion='mmfft'), dict(conditioning='zeros', hyper_refiner=False)):
        model = LidarConditionedCodec(**TINY, **kwargs).eval()
        out = model(torch.rand(1, 3, 40, 40), _depth(40, 40), torch.tensor([0]))
        assert out['x_hat'].shape == (1, 3, 40, 40)
    with pytest.raises(ValueError, match='fusion'):
        LidarConditionedCodec(**TINY, fusion='sum')


def _onnx_mean(model, z_hat):
    """h_s_mean through ONNX Runtime (another float backend)."""
    import io

    import onnxruntime

    buffer = io.BytesIO()
    torch.onnx.export(model.h_s_mean, (z_hat,), buffer, input_names=['z_hat'], output_names=['mu'],
                      dynamo=False)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=['CPUExecutionProvider'])
    return torch.from_numpy(session.run(None, {'z_hat': z_hat.numpy()})[0])


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_parsing_is_identical_across_float_backends(models):
    """fp32, fp16 and ONNX Runtime float parts: identical integer indexes and symbols."""
    pytest.importorskip('onnxruntime')
    model = models['xmodal-hyperprior']
    x = torch.rand(1, 3, 64, 128)
    compressed = model.compress(x, quality=4)
    z_hat, y_sym = model.decode_latents(compressed)
    int_hyper = model.entropy_tables[2]
    indexes = int_hyper(z_hat)
    half = copy.deepcopy(model).half()
    z_half, y_half = half.decode_latents(compressed)
    np.testing.assert_array_equal(int_hyper(z_half), indexes)
    np.testing.assert_array_equal(y_half, y_sym)
    # The reconstructions differ only by float rounding in the transforms.
    ref = model.decompress(compressed)
    assert (half.decompress(compressed) - ref).abs().max() < 0.02
    mu_ort = _onnx_mean(model, torch.from_numpy(z_hat).float())
    with torch.no_grad():
        mu_ref = model.mean(torch.from_numpy(z_hat).float())
    torch.testing.assert_close(mu_ort, mu_ref, atol=1e-4, rtol=1e-4)
    # A decoder whose means come from ONNX Runtime still parses exactly the same symbols.
    np.testing.assert_array_equal(model.decode_latents(compressed)[1], y_sym)


def test_compress_rejects_bad_input(models):
    model = models['xmodal-lidar']
    with pytest.raises(ValueError, match='quality'):
        model.compress(torch.rand(1, 3, 32, 32), quality=9)
    with pytest.raises(ValueError, match='depth map'):
        model.compress(torch.rand(1, 3, 32, 32), _depth(16, 16), quality=0)


def _filtered(cls, seed=0):
    """A model with a post filter whose last layer is not zero (as after training)."""
    torch.manual_seed(seed)
    model = cls(**TINY, post_filter=(8, 1)).eval()
    torch.nn.init.normal_(model.post_filter.tail.weight, std=0.05)
    model.update()
    return model


def test_an_untrained_post_filter_changes_nothing(models):
    twin = models['xmodal-hyperprior']
    filtered = HyperpriorCodec(**TINY, post_filter=(8, 1)).eval()
    filtered.load_state_dict(twin.state_dict(), strict=False)
    filtered.update()
    assert filtered.config['post_filter'] == [8, 1] and 'post_filter' not in twin.config
    x = torch.rand(1, 3, 45, 70)
    compressed = twin.compress(x, quality=2)
    torch.testing.assert_close(filtered.decompress(compressed), twin.decompress(compressed), atol=0, rtol=0)


@pytest.mark.parametrize('cls', [HyperpriorCodec, LidarConditionedCodec])
def test_the_post_filter_changes_the_reconstruction_never_the_bytes(cls):
    filtered = _filtered(cls)
    plain = cls(**TINY).eval()
    plain.load_state_dict(filtered.state_dict(), strict=False)
    plain.update()
    x, depth = torch.rand(1, 3, 45, 70), _depth(45, 70)
    for quality in (0, 5):
        compressed = filtered.compress(x, depth, quality=quality)
        again = plain.compress(x, depth, quality=quality)
        assert (compressed.z_bytes, compressed.y_bytes) == (again.z_bytes, again.y_bytes)
        decoded = filtered.decompress(compressed, depth)
        with torch.no_grad():
            expected = filtered(x, depth, torch.tensor([quality]))['x_hat'].clamp(0, 1)
        torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=0)
        assert (decoded - plain.decompress(compressed, depth)).abs().max() > 1e-3


def test_the_post_filter_sees_the_quality_level():
    model = _filtered(HyperpriorCodec)
    x_hat = torch.rand(1, 3, 32, 32)
    top = model.quality_levels - 1
    low, high = (model.restore(x_hat, model.quality_plane(torch.tensor([q]))) for q in (0, top))
    assert model.quality_plane(torch.tensor([0, top])).tolist() == [[0.0], [1.0]]
    assert (low - high).abs().max() > 1e-4


def test_lambdas_must_increase_and_planes_match_them():
    for bad in ((), (0.01, 0.005), (0.0, 0.01), ('a',)):
        with pytest.raises(ValueError, match='lambdas'):
            HyperpriorCodec(**dict(TINY, lambdas=bad))
    with pytest.raises(ValueError, match='quality_planes'):
        HyperpriorCodec(**dict(TINY, lambdas=(0.01, 0.02), quality_planes=(0.0,)))
    with pytest.raises(ValueError, match='quality_planes'):
        HyperpriorCodec(**dict(TINY, lambdas=(0.01, 0.02), quality_planes=(0.0, float('nan'))))


@pytest.mark.parametrize('cls', [HyperpriorCodec, LidarConditionedCodec])
def test_added_quality_levels_leave_the_old_ones_bit_exact(cls):
    model = _filtered(cls)
    lambdas = model.lambdas
    wider = model.with_lambdas((lambdas[0] / 4, lambdas[0] / 2) + lambdas + (lambdas[-1] * 2,))
    assert wider.quality_levels == model.quality_levels + 3 and wider.registry_name == model.registry_name
    assert wider.config['quality_planes'][2:-1] == list(model.quality_planes)
    x = torch.rand(1, 3, 64, 96)
    depth = _depth(64, 96) if cls.uses_lidar else None
    for old in range(model.quality_levels):
        before, after = model.compress(x, depth, quality=old), wider.compress(x, depth, quality=old + 2)
        assert (before.z_bytes, before.y_bytes) == (after.z_bytes, after.y_bytes)
        assert torch.equal(model.decompress(before, depth), wider.decompress(after, depth))


def test_new_levels_extend_the_gains_in_log_lambda():
    model = _filtered(HyperpriorCodec)
    (lo, hi), enc = model.lambdas[:2], model.gain.log_gain_enc.detach()
    wider = model.with_lambdas((lo * lo / hi, lo, (lo * hi) ** 0.5, hi) + model.lambdas[2:])
    gains = wider.gain.log_gain_enc.detach()
    torch.testing.assert_close(gains[0], 2 * enc[0] - enc[1])  # one log-lambda step below level 0
    torch.testing.assert_close(gains[2], (enc[0] + enc[1]) / 2)  # half way
    planes = wider.quality_planes
    assert planes[0] < planes[1] == model.quality_planes[0] < planes[2] < planes[3]
    assert wider.compress(torch.rand(1, 3, 64, 64), quality=0).num_bytes > 0


def test_without_post_filter_is_a_separate_model_that_decodes_as_g_s_alone():
    filtered = _filtered(LidarConditionedCodec)
    filtered.metadata = {'model_id': 'ab' * 16}
    plain = filtered.without_post_filter()
    assert plain.post_filter is None and 'post_filter' not in plain.config
    assert plain.metadata['model_id'] == 'ab' * 16 + '-no-post-filter'
    assert plain.entropy_tables is filtered.entropy_tables
    own = {t.data_ptr() for t in filtered.state_dict().values()}
    assert not own & {t.data_ptr() for t in plain.state_dict().values()}
    by_hand = LidarConditionedCodec(**TINY).eval()
    by_hand.load_state_dict(filtered.state_dict(), strict=False)
    by_hand.update()
    x, depth = torch.rand(1, 3, 45, 70), _depth(45, 70)
    compressed = filtered.compress(x, depth, quality=4)
    torch.testing.assert_close(plain.decompress(compressed, depth), by_hand.decompress(compressed, depth),
                               atol=0, rtol=0)


def test_post_filter_views_average_shifted_and_mirrored_passes():
    filtered = _filtered(HyperpriorCodec)
    filtered.metadata = {'model_id': 'ab' * 16}
    ensemble = filtered.with_post_filter_views(8)
    assert ensemble.metadata['model_id'] == 'ab' * 16 + '-post-filter-x8'
    assert filtered.post_filter.views == 1 and 'views' not in str(list(ensemble.state_dict()))
    x_hat, plane = torch.rand(1, 3, 32, 48), filtered.quality_plane(torch.tensor([3]))
    single, averaged = filtered.restore(x_hat, plane), ensemble.restore(x_hat, plane)
    assert (single - averaged).abs().max() > 1e-4
    # The eight views are closed under mirroring, so their average mirrors with the image; one view
    # placed back off by a pixel or unmirrored would break this.
    torch.testing.assert_close(ensemble.restore(x_hat.flip(-1), plane), averaged.flip(-1), atol=1e-6, rtol=0)
    assert (filtered.restore(x_hat.flip(-1), plane) - single.flip(-1)).abs().max() > 1e-4


@pytest.mark.parametrize('views', [2, 4, 8])
def test_post_filter_views_of_an_untrained_filter_return_the_image(views):
    model = HyperpriorCodec(**TINY, post_filter=(8, 1)).eval().with_post_filter_views(views)
    x_hat = torch.rand(1, 3, 30, 44)
    torch.testing.assert_close(model.restore(x_hat, model.quality_plane(torch.tensor([0]))), x_hat,
                               atol=1e-6, rtol=0)


def test_post_filter_views_are_checked():
    filtered = _filtered(HyperpriorCodec)
    for bad in (0, 3, 16, 2.5, True):
        with pytest.raises(ValueError, match='views must be one of 1, 2, 4, 8'):
            filtered.with_post_filter_views(bad)
    with pytest.raises(ValueError, match='no post filter'):
        HyperpriorCodec(**TINY).with_post_filter_views(2)


def test_p_frame_model_started_from_intra_codes_as_intra_whatever_the_reference():
    """init_from_intra opens no path from the reference: the same bytes and image as the intra model
    with a real, a garbage or no reference, so training starts at the intra codec's rate-distortion."""
    from xmodal_compress_ros.codec.predictive import PredictiveCodec

    torch.manual_seed(3)
    intra = HyperpriorCodec(**TINY, post_filter=(8, 1)).eval()
    for parameter in intra.post_filter.tail.parameters():  # a trained filter is not the identity
        torch.nn.init.normal_(parameter, std=0.05)
    intra.update()
    pframe = PredictiveCodec(**TINY, post_filter=(8, 1)).eval()
    pframe.init_from_intra(intra)
    pframe.update()
    x = torch.rand(1, 3, 64, 128)
    expected = intra.compress(x, quality=3)
    image = intra.decompress(expected)
    garbage = torch.randint(0, 256, (1, 4, 64, 128)).float()
    for reference in (None, garbage, torch.cat([x * 255, torch.full_like(x[:, :1], 255)], dim=1)):
        packet = pframe.compress(x, reference, quality=3)
        assert (packet.z_bytes, packet.y_bytes) == (expected.z_bytes, expected.y_bytes)
        assert torch.allclose(pframe.decompress(packet, reference), image, atol=1e-6)
