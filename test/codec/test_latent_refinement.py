"""Encoder-side latent refinement: fewer bits for the same quality, same decoder, same parse."""
import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.bitstream import parse_image_packet
from xmodal_compress_ros.codec.latent_refinement import MAX_STEPS, check_steps
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.geometry.projection import depth_condition
from xmodal_compress_ros.runtime.samples import (TINY_CONFIG, committed_models, synthetic_frame,
                                                 untrained_models)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

WIDTH, HEIGHT = 192, 128


@pytest.fixture(scope='module')
def stems(tmp_path_factory):
    """(LiDAR, twin): the committed models (refinement needs a trained decoder to gain anything)."""
    return committed_models() or untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG)


@pytest.fixture(scope='module')
def frame():
    return synthetic_frame(WIDTH, HEIGHT, seed=4)


def _inputs(frame, model):
    x = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255.0
    if not model.uses_lidar:
        return x, None
    depth = torch.from_numpy(depth_condition(frame.points, frame.calib))[None, None]
    return x, depth


def _rd_cost(model, frame, quality, steps) -> float:
    """``lambda * 255^2 * MSE + bpp`` from real bytes and the decoded, 8-bit image."""
    x, depth = _inputs(frame, model)
    compressed = model.compress(x, depth, quality=quality, refine_steps=steps)
    decoded = (model.decompress(compressed, depth) * 255.0 + 0.5).floor() / 255.0
    mse = float(torch.mean((decoded - (x * 255.0).round() / 255.0) ** 2))
    return model.lambdas[quality] * 255.0 ** 2 * mse + 8.0 * compressed.num_bytes / (WIDTH * HEIGHT)


@pytest.mark.parametrize('which', [0, 1])
def test_refinement_lowers_the_rate_distortion_cost_of_real_bytes(stems, frame, which):
    if committed_models() is None:
        pytest.skip('needs the committed (trained) models')
    model = load_model(stems[which])
    quality = 2
    assert _rd_cost(model, frame, quality, steps=15) < 0.99 * _rd_cost(model, frame, quality, steps=0)


def test_zero_steps_is_the_plain_encoder_and_refined_bytes_are_reproducible(stems, frame):
    model = load_model(stems[0])
    x, depth = _inputs(frame, model)
    plain = model.compress(x, depth, quality=1)
    assert model.compress(x, depth, quality=1, refine_steps=0).y_bytes == plain.y_bytes
    refined = [model.compress(x, depth, quality=1, refine_steps=5) for _ in range(2)]
    assert refined[0].y_bytes == refined[1].y_bytes and refined[0].z_bytes == refined[1].z_bytes


def test_refinement_leaves_z_and_so_every_scale_index_unchanged(stems, frame):
    """Only y moves: the hyper-latent, and with it the integer scale indexes that decide the parse,
    are the unrefined encoder's."""
    model = load_model(stems[0])
    x, depth = _inputs(frame, model)
    plain = model.compress(x, depth, quality=3)
    refined = model.compress(x, depth, quality=3, refine_steps=5)
    assert refined.z_bytes == plain.z_bytes
    z_plain, _ = model.decode_latents(plain)
    z_refined, symbols = model.decode_latents(refined)
    assert np.array_equal(z_plain, z_refined)
    assert symbols.shape == model.decode_latents(plain)[1].shape


def test_the_pipeline_refines_on_request_and_any_decoder_reads_the_packets(stems, frame, tmp_path):
    config = dict(model=stems[0], fallback_model=stems[1], warmup=False, cache_dir=str(tmp_path), quality=2)
    plain, refining = Encoder(EncoderConfig(**config), frame.calib), \
        Encoder(EncoderConfig(refine_steps=4, **config), frame.calib)
    decoder = Decoder(DecoderConfig(models=tuple(stems), warmup=False, cache_dir=str(tmp_path),
                                    resolutions=((WIDTH, HEIGHT),)))
    _, scan = refining.encode_scan(frame.points, 1)
    for used_scan in (scan, None):
        packets = [e.encode_image(frame.image, 2, used_scan).packet for e in (plain, refining)]
        assert 'refinement' in refining.last_timings
        parsed = [parse_image_packet(p) for p in packets]
        assert parsed[0].z_bytes == parsed[1].z_bytes and parsed[0].model_id == parsed[1].model_id
        decoded = decoder.decode_image(packets[1], used_scan)
        assert decoded.rgb.shape == (HEIGHT, WIDTH, 3)
    assert 'refinement' not in plain.last_timings


def test_warm_up_refines_one_step_and_frames_refine_them_all(stems, frame, tmp_path, monkeypatch):
    from xmodal_compress_ros.codec import pipeline

    calls = []
    real = pipeline.refine_latent

    def counting(*args, **kwargs):
        calls.append(args[7])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, 'refine_latent', counting)
    encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], cache_dir=str(tmp_path),
                                    refine_steps=3), frame.calib)
    assert calls == [1, 1]
    encoder.encode_image(frame.image, 0, None)
    assert calls == [1, 1, 3]


@pytest.mark.parametrize('steps', [-1, MAX_STEPS + 1, 2.5, True, '3'])
def test_bad_step_counts_are_refused(stems, frame, steps):
    with pytest.raises(ValueError, match='refinement steps'):
        check_steps(steps)
    with pytest.raises(ParameterError, match='refinement steps'):
        Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], warmup=False, refine_steps=steps),
                frame.calib)
