"""Encoder/Decoder: cross-backend determinism, LiDAR loss, image-only twins, unknown models, bad packets."""
import struct
import warnings
import zlib

from dataclasses import replace

import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.bitstream import parse_image_packet, parse_lidar_packet
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.pipeline import (
    Decoder, DecoderConfig, Encoder, EncoderConfig, UnknownModelError, calibration_from_projection,
    compact_calibration)
from xmodal_compress_ros.errors import ImageFormatError, PacketError, ParameterError, PointCloudError
from xmodal_compress_ros.geometry.projection import depth_condition
from xmodal_compress_ros.runtime.base import available_backends
from xmodal_compress_ros.runtime.samples import (TINY_CONFIG, committed_models, crop_frame, kitti_frames,
                                                 synthetic_frame, untrained_models)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

WIDTH, HEIGHT = 192, 128
# (backend, device, precision) every frame is encoded with and decoded with, in all combinations; the
# CUDA ones where this machine has a GPU (a GPU encoder against a CPU decoder is the deployment case).
SETTINGS = [('torch', 'cpu', 'fp32'), ('torch', 'cpu', 'fp16'), ('onnxruntime', 'cpu', 'fp32'),
            ('torch', 'cuda', 'fp32'), ('torch', 'cuda', 'fp16'), ('onnxruntime', 'cuda', 'fp32')]
REFERENCE = ('torch', 'cpu', 'fp32')


@pytest.fixture(scope='module')
def stems(tmp_path_factory):
    """(LiDAR, twin) model stems: the committed models, else tiny untrained ones."""
    return committed_models() or untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG)


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp('cache'))


def _encoder(stems, cache, backend='torch', precision='fp32', fallback=True, calib=None, device='cpu',
             **kwargs):
    config = EncoderConfig(model=stems[0], fallback_model=stems[1] if fallback else '', backend=backend,
                           device=device, precision=precision, warmup=False, cache_dir=cache, **kwargs)
    return Encoder(config, calib if calib is not None else synthetic_frame(WIDTH, HEIGHT).calib)


def _decoder(stems, cache, backend='torch', precision='fp32', models=None, device='cpu'):
    return Decoder(DecoderConfig(models=tuple(models or stems), backend=backend, device=device,
                                 precision=precision, warmup=False, cache_dir=cache,
                                 resolutions=((WIDTH, HEIGHT),)))


def _settings():
    return [(backend, device, precision) for backend, device, precision in SETTINGS
            if backend in available_backends(device)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _frame(kind: str, request):
    if kind == 'kitti':
        request.getfixturevalue('kitti_root')
        return crop_frame(kitti_frames(1)[0], WIDTH, HEIGHT)
    return synthetic_frame(WIDTH, HEIGHT, seed=1)


@pytest.fixture(scope='module')
def coders(stems, cache):
    """(encoder, decoder) per usable (backend, device, precision), for frames of WIDTH x HEIGHT."""
    calib = synthetic_frame(WIDTH, HEIGHT).calib
    built = {}
    for backend, device, precision in _settings():
        try:
            built[backend, device, precision] = (
                _encoder(stems, cache, backend, precision, calib=calib, device=device),
                _decoder(stems, cache, backend, precision, device=device))
        except ParameterError as exc:  # e.g. no CPU fp16 kernels in this PyTorch build
            if (backend, device, precision) == REFERENCE:
                raise
            warnings.warn(f'not testing {backend}/{device}/{precision}: {exc}')
    return built


@pytest.mark.parametrize('kind', ['synthetic', pytest.param('kitti', marks=pytest.mark.kitti)])
def test_every_backend_decodes_every_backend_identically(coders, kind, request):
    """Encode with each backend/device/precision, decode with each: identical symbols and scale indexes,
    reconstructions within 0.1 dB PSNR of the PyTorch fp32 CPU reference."""
    frame = _frame(kind, request)
    _, reference_decoder = coders[REFERENCE]
    packets = {}
    for key, (encoder, _) in coders.items():
        # Each encoder was built for the synthetic calibration; condition on this frame's own.
        scan = replace(encoder.encode_scan(frame.points, 10)[1], calib=compact_calibration(frame.calib))
        packets[key] = (scan, encoder.encode_image(frame.image, 20, scan))
    ref_scan, ref_image = packets[REFERENCE]
    reference = psnr(frame.image, reference_decoder.decode_image(ref_image.packet, ref_scan).rgb)
    for enc_key, (scan, encoded) in packets.items():
        assert not encoded.image_only
        for dec_key, (_, decoder) in coders.items():
            decoded = decoder.decode_image(encoded.packet, scan)
            for name in ('z_hat', 'symbols', 'indexes'):
                np.testing.assert_array_equal(getattr(decoded.latents, name), getattr(encoded.latents, name),
                                              err_msg=f'{name}: encoded {enc_key}, decoded {dec_key}')
            assert not decoded.lidar_missing and decoded.rgb.shape == frame.image.shape
            assert abs(psnr(frame.image, decoded.rgb) - reference) < 0.1, (enc_key, dec_key)


def test_pipeline_bytes_equal_model_compress(stems, cache):
    """Pipeline (torch fp32) and HyperpriorCodec.compress share one coding implementation: same bytes."""
    frame = synthetic_frame(WIDTH, HEIGHT, seed=3)
    encoder = _encoder(stems, cache)
    _, scan = encoder.encode_scan(frame.points, 1)
    encoded = encoder.encode_image(frame.image, 2, scan, quality=1)
    model = load_model(stems[0])
    x = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255.0
    depth = depth_condition(scan.points, scan.calib)
    compressed = model.compress(x, depth, quality=1)
    packet = parse_image_packet(encoded.packet)
    assert (packet.z_bytes, packet.y_bytes) == (compressed.z_bytes, compressed.y_bytes)


def test_lidar_packet_carries_the_calibration(stems, cache):
    frame = synthetic_frame(WIDTH, HEIGHT, seed=4)
    encoder, decoder = _encoder(stems, cache, calib=frame.calib), _decoder(stems, cache)
    lidar_packet, scan = encoder.encode_scan(frame.points, 123, 'velodyne')
    decoded = decoder.decode_lidar(lidar_packet)
    assert (decoded.scan_id, decoded.stamp_ns, decoded.frame_id) == (0, 123, 'velodyne')
    assert decoded.calib == scan.calib == compact_calibration(frame.calib)
    assert decoded.packet_bytes == len(lidar_packet) == scan.packet_bytes
    np.testing.assert_array_equal(decoded.points, scan.points)
    # Both ends condition on bit-identical depth maps; the compacted calibration projects like the original.
    np.testing.assert_array_equal(depth_condition(decoded.points, decoded.calib),
                                  depth_condition(scan.points, scan.calib))
    assert np.abs(scan.calib.lidar_to_pixel - frame.calib.lidar_to_pixel).max() < 1e-9
    assert calibration_from_projection(parse_lidar_packet(lidar_packet).projection) == decoded.calib
    assert encoder.encode_scan(frame.points, 124)[1].scan_id == 1


def test_lost_or_wrong_scan_still_decodes(stems, cache):
    frame = synthetic_frame(WIDTH, HEIGHT, seed=5)
    encoder, decoder = _encoder(stems, cache, calib=frame.calib), _decoder(stems, cache)
    lidar_packet, scan = encoder.encode_scan(frame.points, 50)
    encoded = encoder.encode_image(frame.image, 60, scan)
    assert decoder.scan_reference(encoded.packet) == (scan.scan_id, 50)
    full = decoder.decode_image(encoded.packet, decoder.decode_lidar(lidar_packet))
    other_scan = decoder.decode_lidar(encoder.encode_scan(frame.points[:100], 51)[0])
    for missing in (None, other_scan):
        lost = decoder.decode_image(encoded.packet, missing)
        assert lost.lidar_missing and not lost.image_only and lost.scan_id == scan.scan_id
        assert lost.rgb.shape == frame.image.shape and lost.stamp_ns == 60
        np.testing.assert_array_equal(lost.latents.symbols, full.latents.symbols)
    assert not full.lidar_missing and full.model_id == load_model(stems[0]).metadata['model_id']


def test_image_only_packets(stems, cache):
    frame = synthetic_frame(WIDTH, HEIGHT, seed=6)
    decoder = _decoder(stems, cache)
    twin_id = load_model(stems[1]).metadata['model_id']
    with_twin = _encoder(stems, cache, calib=frame.calib)
    encoded = with_twin.encode_image(frame.image, 7, None, quality=0)
    assert encoded.image_only and encoded.scan_id is None and encoded.quality == 0
    assert decoder.scan_reference(encoded.packet) is None
    decoded = decoder.decode_image(encoded.packet, None)
    assert decoded.image_only and not decoded.lidar_missing and decoded.model_id == twin_id
    # Without a twin the LiDAR model codes image-only with an all-zero map.
    without_twin = _encoder(stems, cache, fallback=False, calib=frame.calib)
    encoded = without_twin.encode_image(frame.image, 7, None)
    decoded = decoder.decode_image(encoded.packet, None)
    assert decoded.image_only and decoded.model_id != twin_id and not decoded.lidar_missing
    # An image whose size does not match the calibration is coded image-only, not rejected.
    _, scan = with_twin.encode_scan(frame.points, 1)
    other_size = with_twin.encode_image(np.zeros((HEIGHT - 64, WIDTH, 3), np.uint8), 8, scan)
    assert other_size.image_only and decoder.decode_image(other_size.packet, scan).height == HEIGHT - 64


def test_unknown_model_id(stems, cache):
    frame = synthetic_frame(WIDTH, HEIGHT, seed=7)
    encoder = _encoder(stems, cache, calib=frame.calib)
    _, scan = encoder.encode_scan(frame.points, 1)
    packet = encoder.encode_image(frame.image, 2, scan).packet
    twin_only = _decoder(stems, cache, models=[stems[1]])
    lidar_id = load_model(stems[0]).metadata['model_id']
    with pytest.raises(UnknownModelError, match=lidar_id) as info:
        twin_only.decode_image(packet, scan)
    assert isinstance(info.value, PacketError)
    assert load_model(stems[1]).metadata['model_id'] in str(info.value)
    assert list(twin_only.model_ids.values()) == [stems[1]]


def _reseal(data: bytes) -> bytes:
    return data[:-4] + struct.pack('<I', zlib.crc32(data[:-4]))


def test_corrupted_packets_raise_only_packet_error(stems, cache):
    """Bit flips, truncation and CRC-resealed edits of the sections: PacketError or a valid decode."""
    frame = synthetic_frame(128, 64, seed=8)
    encoder = _encoder(stems, cache, calib=frame.calib)
    decoder = _decoder(stems, cache)
    lidar_packet, scan = encoder.encode_scan(frame.points, 1)
    image = encoder.encode_image(frame.image, 2, scan).packet
    rng = np.random.default_rng(0)
    rejected = 0
    for trial in range(150):
        data = bytearray(image)
        if trial % 3 == 0:
            data = data[:int(rng.integers(len(data)))]
        else:
            # Edit the entropy-coded sections (after the 56-byte header) and fix the CRC.
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(56, len(data) - 4))] = int(rng.integers(256))
            data = bytearray(_reseal(bytes(data))) if trial % 3 == 1 else data
        try:
            decoded = decoder.decode_image(bytes(data), scan)
        except PacketError:
            rejected += 1
        else:
            assert decoded.rgb.shape == (64, 128, 3)
    assert rejected >= 50
    for cut in range(0, len(lidar_packet), max(1, len(lidar_packet) // 40)):
        with pytest.raises(PacketError):
            decoder.decode_lidar(lidar_packet[:cut])
    with pytest.raises(PacketError):
        decoder.decode_image(lidar_packet, None)


def test_bad_inputs(stems, cache):
    frame = synthetic_frame(WIDTH, HEIGHT, seed=9)
    encoder = _encoder(stems, cache, calib=frame.calib)
    for image in (frame.image.astype(np.float32), frame.image[..., :2], frame.image[0], 'image'):
        with pytest.raises(ImageFormatError, match=r'\(H, W, 3\) uint8'):
            encoder.encode_image(image, 0, None)
    with pytest.raises(ParameterError, match='quality 99'):
        encoder.encode_image(frame.image, 0, None, quality=99)
    with pytest.raises(PointCloudError):
        encoder.encode_scan(np.zeros((5, 2), np.float32), 0)
    with pytest.raises(ParameterError, match='quality'):
        _encoder(stems, cache, quality=-1)
    with pytest.raises(ParameterError, match='unknown backend'):
        _encoder(stems, cache, backend='tensorflow')
    # NaN points are dropped and an empty scan is valid (it conditions on zeros).
    points = frame.points.copy()
    points[::2, 0] = np.nan
    assert len(encoder.encode_scan(points, 0)[1].points) <= len(points) // 2 + 1
    _, empty = encoder.encode_scan(np.zeros((0, 4), np.float32), 0)
    assert not encoder.encode_image(frame.image, 0, empty).image_only


def test_warmup_and_timings(stems, cache):
    frame = synthetic_frame(128, 64, seed=10)
    encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], cache_dir=cache), frame.calib)
    assert encoder.last_timings == {}
    _, scan = encoder.encode_scan(frame.points, 0)
    encoded = encoder.encode_image(frame.image, 0, scan)
    assert set(encoder.last_timings) == {'preprocess', 'projection', 'encoder_network', 'mean_network',
                                         'entropy_encode', 'total'}
    assert encoded.bpp == pytest.approx(8 * encoded.image_bytes / (128 * 64))
    decoder = Decoder(DecoderConfig(models=stems, cache_dir=cache, resolutions=((128, 64),)))
    decoder.decode_image(encoded.packet, scan)
    assert set(decoder.last_timings) == {'entropy_decode', 'projection', 'decoder_network', 'total'}


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_models_with_a_post_filter_decode_as_the_model_does(tmp_path, cache, backend):
    """The decoder graph gets each packet's quality level as the post filter's plane."""
    stems = untrained_models(tmp_path, dict(TINY_CONFIG, post_filter=(8, 1)), post_filter_std=0.05)
    frame = synthetic_frame(WIDTH, HEIGHT, seed=3)
    encoder, decoder = _encoder(stems, cache, backend), _decoder(stems, cache, backend)
    _, scan = encoder.encode_scan(frame.points, 1)
    model = load_model(stems[0])
    x = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255.0
    depth = depth_condition(scan.points, scan.calib)
    for quality in (0, model.quality_levels - 1):
        packet = encoder.encode_image(frame.image, 2, scan, quality=quality).packet
        decoded = decoder.decode_image(packet, scan)
        expected = model.decompress(model.compress(x, depth, quality=quality), depth)
        expected = (expected[0].permute(1, 2, 0) * 255.0 + 0.5).floor().numpy()
        assert np.abs(decoded.rgb.astype(np.float64) - expected).max() <= 1, quality


@pytest.mark.parametrize('backend', ['torch', 'onnxruntime'])
def test_a_decoder_may_average_the_post_filter_over_views(tmp_path, cache, backend):
    stems = untrained_models(tmp_path, dict(TINY_CONFIG, post_filter=(8, 1)), post_filter_std=0.05)
    frame = synthetic_frame(WIDTH, HEIGHT, seed=3)
    encoder = _encoder(stems, cache)
    _, scan = encoder.encode_scan(frame.points, 1)
    encoded = encoder.encode_image(frame.image, 2, scan, quality=1)
    config = DecoderConfig(models=stems, backend=backend, warmup=False, cache_dir=cache, post_filter_views=4,
                           resolutions=((WIDTH, HEIGHT),))
    decoded = Decoder(config).decode_image(encoded.packet, scan)
    model = load_model(stems[0])
    assert decoded.model_id == model.metadata['model_id']
    ensemble = model.with_post_filter_views(4)
    x = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255.0
    depth = depth_condition(scan.points, scan.calib)
    expected = ensemble.decompress(ensemble.compress(x, depth, quality=1), depth)
    expected = (expected[0].permute(1, 2, 0) * 255.0 + 0.5).floor().numpy()
    assert np.abs(decoded.rgb.astype(np.float64) - expected).max() <= 1
    single = _decoder(stems, cache, backend).decode_image(encoded.packet, scan)
    assert np.abs(single.rgb.astype(np.int16) - decoded.rgb).max() > 1
    with pytest.raises(ParameterError, match='post_filter_views'):
        Decoder(DecoderConfig(models=stems, warmup=False, cache_dir=cache, post_filter_views=3))


def test_a_decoder_may_skip_the_post_filter(tmp_path, cache):
    stems = untrained_models(tmp_path, dict(TINY_CONFIG, post_filter=(8, 1)), post_filter_std=0.05)
    frame = synthetic_frame(WIDTH, HEIGHT, seed=3)
    encoder = _encoder(stems, cache)
    _, scan = encoder.encode_scan(frame.points, 1)
    encoded = encoder.encode_image(frame.image, 2, scan, quality=1)
    skipping = Decoder(DecoderConfig(models=stems, warmup=False, cache_dir=cache, post_filter=False))
    decoded = skipping.decode_image(encoded.packet, scan)
    model = load_model(stems[0])
    assert decoded.model_id == model.metadata['model_id']  # packets still name the model file
    plain = model.without_post_filter()
    x = torch.from_numpy(frame.image).permute(2, 0, 1)[None].float() / 255.0
    depth = depth_condition(scan.points, scan.calib)
    expected = plain.decompress(plain.compress(x, depth, quality=1), depth)
    expected = (expected[0].permute(1, 2, 0) * 255.0 + 0.5).floor().numpy()
    assert np.abs(decoded.rgb.astype(np.float64) - expected).max() <= 1
    filtered = _decoder(stems, cache).decode_image(encoded.packet, scan)
    assert np.abs(filtered.rgb.astype(np.int16) - decoded.rgb).max() > 1
