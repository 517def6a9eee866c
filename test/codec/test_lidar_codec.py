"""Draco LiDAR stream: the decoder gets exactly the points the encoder conditions on."""
import numpy as np
import pytest

from xmodal_compress_ros.codec.bitstream import pack_lidar_packet, parse_lidar_packet
from xmodal_compress_ros.codec.lidar_codec import (
    LidarCodecConfig, config_from_packet, decode_packet, decode_scan, draco_reference_size, encode_scan,
    frustum_mask,
)
from xmodal_compress_ros.errors import CalibrationError, PacketError, ParameterError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration

DRACO = LidarCodecConfig(codec='draco')


def scan(count=1500, seed=0):
    rng = np.random.default_rng(seed)
    points = np.empty((count, 4), np.float32)
    points[:, :3] = rng.uniform(-40, 40, (count, 3))
    points[:, 3] = rng.uniform(0, 1, count)
    return points


def camera():
    """100x50 pinhole looking along the LiDAR's +x axis (KITTI-like axes)."""
    K = np.array([[50.0, 0, 50], [0, 50, 25], [0, 0, 1]])
    T = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    return Calibration(width=100, height=50, K=K, P=np.hstack([K, np.zeros((3, 1))]), T_cam_lidar=T)


def nearest(decoded, original):
    """Index of the nearest decoded point of each original point, and its distance."""
    distance = np.linalg.norm(original[:, None, :3] - decoded[None, :, :3], axis=2)
    index = distance.argmin(axis=1)
    return index, distance[np.arange(len(original)), index]


def test_round_trip_through_a_packet_returns_the_encoders_points():
    points = scan()
    config = DRACO
    encoded = encode_scan(points, config)
    packet = encoded.to_packet(scan_id=7, stamp_ns=123, frame_id='velodyne')
    packet = parse_lidar_packet(pack_lidar_packet(packet))
    decoded = decode_packet(packet)
    assert decoded.dtype == np.float32 and decoded.shape == (len(points), 4)
    np.testing.assert_array_equal(decoded, encoded.points)
    assert config_from_packet(packet) == config
    # Every original point has a decoded twin within half a grid step per axis.
    step = float((points[:, :3].max(0) - points[:, :3].min(0)).max()) / (2 ** 11 - 1)
    index, distance = nearest(decoded, points)
    assert np.all(distance <= np.sqrt(3) * step / 2 * 1.001)
    assert len(np.unique(index)) == len(points)
    np.testing.assert_allclose(decoded[index, 3], np.round(points[:, 3] * 255) / 255, atol=1e-6)


def test_decoded_coordinates_lie_exactly_on_the_declared_grid():
    encoded = encode_scan(scan(), LidarCodecConfig(codec='draco', quantization_bits=9))
    grid = np.frombuffer(encoded.payload[:16], '<f4')
    origin, extent = grid[:3], grid[3]
    step = np.float64(extent) / 511
    codes = (encoded.points[:, :3].astype(np.float64) - origin) / step
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-3)
    np.testing.assert_array_equal(encoded.points[:, :3], (origin + np.rint(codes) * step).astype(np.float32))


def test_lossless_positions_and_wide_intensity():
    points = scan(500)
    config = LidarCodecConfig(codec='draco', quantization_bits=0, intensity_bits=16, intensity_max=2.0)
    encoded = encode_scan(points, config)
    order = np.lexsort(encoded.points[:, :3].T)
    original = points[np.lexsort(points[:, :3].T)]
    np.testing.assert_array_equal(encoded.points[order, :3], original[:, :3])
    np.testing.assert_allclose(encoded.points[order, 3], original[:, 3], atol=2.0 / 65535)


def test_without_intensity_and_with_three_columns():
    encoded = encode_scan(scan()[:, :3], LidarCodecConfig(codec='draco', keep_intensity=False))
    assert np.all(encoded.points[:, 3] == 0)
    assert encoded.to_packet(0, 0, '').intensity_bits == 0
    with_intensity = encode_scan(scan(), DRACO)
    assert len(encoded.payload) < len(with_intensity.payload)


def test_intensity_is_clipped_to_its_range():
    points = scan(50)
    points[:3, 3] = [-5.0, 7.0, np.nan]
    decoded = encode_scan(points, LidarCodecConfig(codec='draco', quantization_bits=0)).points
    index, _ = nearest(decoded, points[:3])
    np.testing.assert_allclose(decoded[index, 3], [0.0, 1.0, 0.0])


def test_non_finite_and_empty_clouds():
    points = scan(100)
    points[::10, 1] = np.nan
    points[5, 2] = np.inf
    encoded = encode_scan(points, DRACO)
    assert encoded.num_points == 89 and encoded.input_points == 100
    for empty in (np.full((20, 4), np.nan, np.float32), np.zeros((0, 4), np.float32)):
        encoded = encode_scan(empty, DRACO)
        assert encoded.payload == b'' and encoded.num_points == 0 and encoded.points.shape == (0, 4)
        packet = parse_lidar_packet(pack_lidar_packet(encoded.to_packet(1, 2, 'f')))
        assert decode_packet(packet).shape == (0, 4)
    one = encode_scan(np.array([[1.0, 2.0, 3.0, 0.5]], np.float32), DRACO)
    np.testing.assert_allclose(one.points, [[1.0, 2.0, 3.0, 128 / 255]], atol=1e-6)


@pytest.mark.parametrize('codec', ['predictive', 'draco'])
def test_valid_points_as_numpy_defines_them_for_every_dtype_and_layout(codec):
    """The encoder's compiled validity pass keeps, counts and casts as numpy's float32 casts,
    isfinite and nan_to_num would, whatever the input's dtype, byte order or strides."""
    rng = np.random.default_rng(5)
    points = rng.normal(0, 20, (3000, 4)).astype(np.float32)
    points[rng.integers(0, 3000, 200), rng.integers(0, 4, 200)] = np.nan
    points[rng.integers(0, 3000, 50), rng.integers(0, 4, 50)] = -np.inf
    points[rng.integers(0, 3000, 50), :3] = 0.0
    points[7] = [1e39, 0, 0, 1]  # finite in float64, infinite in float32
    integers = np.nan_to_num(points * 100, posinf=0, neginf=0).astype(np.int32)
    for cloud in (points.astype(np.float64), points, points[:, :3], points[::3], points.astype('>f4'),
                  points.astype(np.float16), integers):
        xyz = cloud[:, :3].astype(np.float32)
        valid = np.isfinite(xyz).all(axis=1) & ((xyz != 0).any(axis=1) if codec == 'predictive' else True)
        intensity = (np.nan_to_num(cloud[:, 3].astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
                     if cloud.shape[1] > 3 else np.zeros(len(cloud), np.float32))
        config = LidarCodecConfig(codec=codec, max_error=0.01) if codec == 'predictive' else DRACO
        encoded = encode_scan(cloud, config)
        assert encoded.invalid_points == np.count_nonzero(~valid)
        if codec == 'predictive':  # every valid point kept, its lossless 8-bit intensity code too
            assert encoded.num_points == np.count_nonzero(valid)
            codes = np.rint(np.clip(intensity[valid], 0, 1) * 255)
            np.testing.assert_array_equal(np.sort(np.rint(encoded.points[:, 3] * 255)), np.sort(codes))


def test_exact_duplicates_are_dropped_consistently():
    points = scan(200)
    encoded = encode_scan(np.concatenate([points, points[:30]]), DRACO)
    assert encoded.num_points == 200
    np.testing.assert_array_equal(decode_scan(encoded.payload, 200, encoded.config), encoded.points)


def test_frustum_only_keeps_the_points_seen_by_the_camera():
    calib = camera()
    points = scan(3000)
    with pytest.raises(CalibrationError, match='frustum_only needs'):
        encode_scan(points, LidarCodecConfig(codec='draco', frustum_only=True))
    mask = frustum_mask(points, calib)
    assert 0 < mask.sum() < len(points)
    encoded = encode_scan(points, LidarCodecConfig(codec='draco', frustum_only=True), calib)
    assert encoded.num_points == mask.sum() and encoded.to_packet(0, 0, 'v').frustum_only
    _, distance = nearest(encoded.points, points[mask])
    assert distance.max() < 0.1
    # At 10 m ahead, u = 50 - 5 y and v = 25 - 5 z: keep u in [-2, 102) and v in [-2, 52).
    edge = np.array([[10.0, 0, 0], [-10.0, 0, 0], [10.0, 10.4, 0], [10.0, 10.5, 0], [10.0, -10.38, 0],
                     [10.0, -10.4, 0], [10.0, 0, 5.5], [10.0, 0, -5.38]])
    expected = [True, False, True, False, True, False, False, True]
    np.testing.assert_array_equal(frustum_mask(edge, calib), expected)


@pytest.mark.parametrize('changes', [
    dict(quantization_bits=31), dict(quantization_bits=-1), dict(compression_level=11),
    dict(intensity_bits=0), dict(intensity_bits=17), dict(intensity_max=0.0),
    dict(intensity_max=float('inf')),
    dict(quantization_bits=True),
])
def test_bad_config_is_a_parameter_error(changes):
    with pytest.raises(ParameterError):
        LidarCodecConfig(**changes)


def test_bad_points_are_a_point_cloud_error():
    with pytest.raises(PointCloudError):
        encode_scan(np.zeros((10, 2), np.float32))


def test_corrupted_payloads_raise_packet_error():
    encoded = encode_scan(scan(800), DRACO)
    config, payload = encoded.config, encoded.payload
    for bad, count, message in [
        (payload[:10], 800, 'truncated'),
        (payload[:16] + b'not draco at all', 800, 'not a valid Draco'),
        (payload, 801, 'declares 801'),
        (b'x', 0, 'must be empty'),
        (np.float32([np.nan, 0, 0, 1]).tobytes() + payload[16:], 800, 'grid is invalid'),
    ]:
        with pytest.raises(PacketError, match=message):
            decode_scan(bad, count, config)
    plain = encode_scan(scan(800), LidarCodecConfig(codec='draco', keep_intensity=False))
    with pytest.raises(PacketError, match='lacks the intensity'):
        decode_scan(plain.payload, 800, config)
    with pytest.raises(PacketError, match='exceed'):
        decode_scan(payload, 800, LidarCodecConfig(codec='draco', intensity_bits=4))


def test_random_damage_never_crashes():
    encoded = encode_scan(scan(300), DRACO)
    rng = np.random.default_rng(5)
    payload = encoded.payload
    for trial in range(150):
        damaged = bytearray(payload)
        if trial % 2:
            for _ in range(int(rng.integers(1, 6))):
                position = int(rng.integers(16, len(damaged)))
                damaged[position] ^= 1 << int(rng.integers(8))
        else:
            damaged = damaged[:int(rng.integers(len(damaged)))]
        try:
            points = decode_scan(bytes(damaged), 300, encoded.config)
        except PacketError:
            continue
        assert points.shape == (300, 4) and points.dtype == np.float32 and np.isfinite(points).all()


def test_reference_size_at_plugin_defaults_is_lossless():
    points = scan(2000)
    lossless = draco_reference_size(points)
    assert 14 * 2000 < lossless < 17 * 2000 + 200  # x, y, z, intensity as float32
    assert draco_reference_size(points, force_quantization=True) < lossless / 2
    assert draco_reference_size(np.full((3, 4), np.nan)) == 0


@pytest.mark.kitti
def test_real_scan_sizes(kitti_root):
    from xmodal_compress_ros.data.pointfiles import read_points
    from xmodal_compress_ros.geometry.calibration import load_calibration

    frame = kitti_root / 'kitti_object' / 'training'
    points = read_points(frame / 'velodyne' / '000000.bin')
    calib = load_calibration(frame / 'calib' / '000000.txt', image_size=(1242, 375))
    full = encode_scan(points, DRACO)
    cut = encode_scan(points, LidarCodecConfig(codec='draco', frustum_only=True), calib)
    assert full.num_points == len(points) and 15_000 < cut.num_points < 25_000
    assert len(full.payload) < 200_000 and len(cut.payload) < 50_000
    np.testing.assert_array_equal(decode_scan(cut.payload, cut.num_points, cut.config), cut.points)


_COMPILED_AFTER_WARM_UP = '''
import json, numpy as np
from xmodal_compress_ros.codec import lidar_codec, lidar_predictive, point_checks, rans_kernels

def compiled():
    modules = (lidar_codec, lidar_predictive, point_checks, rans_kernels)
    return {f'{m.__name__}.{name}': len(getattr(m, name).signatures) for m in modules for name in dir(m)
            if hasattr(getattr(m, name), 'signatures')}

lidar_codec.warm_up()
before = compiled()
points, rings = lidar_codec._synthetic_scan(lasers=64, firings=1800)
points[:, :3] += np.random.default_rng(1).normal(0, 0.02, (len(points), 3)).astype(np.float32)
for scan_rings in (None, rings):
    encoded = lidar_codec.encode_scan(points, rings=scan_rings)
    lidar_codec.decode_scan(encoded.payload, encoded.num_points, lidar_codec.LidarCodecConfig())
# Shuffled, its lasers are found from the elevation (the noise above would blur them).
points, _ = lidar_codec._synthetic_scan(lasers=64, firings=1800)
encoded = lidar_codec.encode_scan(points[np.random.default_rng(3).permutation(len(points))])
assert lidar_predictive.read_info(encoded.payload).mode == 'spinning'
lidar_codec.decode_scan(encoded.payload, encoded.num_points, lidar_codec.LidarCodecConfig())
cloud = np.random.default_rng(2).uniform(-50, 50, (20000, 4)).astype(np.float32)
encoded = lidar_codec.encode_scan(cloud)
lidar_codec.decode_scan(encoded.payload, encoded.num_points, lidar_codec.LidarCodecConfig())
print(json.dumps({name: count for name, count in compiled().items() if count != before.get(name)}))
'''


def test_warm_up_compiles_every_kernel_a_scan_runs():
    """After warm_up in a fresh process, a full-size noisy spinning scan (with and without rings, and
    shuffled) and an unstructured cloud compile nothing more: the first scan a node codes is not the
    slow one."""
    pytest.importorskip('numba')
    import json
    import subprocess
    import sys
    result = subprocess.run([sys.executable, '-c', _COMPILED_AFTER_WARM_UP], capture_output=True, text=True,
                            timeout=600, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}
