"""Scan registration and the pose carried in the P packet (geometry/ego_motion.py)."""
import math

import numpy as np
import pytest

from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.ego_motion import (MAX_TRANSLATION_M, POSE_BYTES, QUATERNION_UNIT,
                                                     TRANSLATION_UNIT_M, ScanRegistration, decode_pose,
                                                     encode_pose, lidar_to_camera_motion, quantize_pose)

small_gicp = pytest.importorskip('small_gicp')


def _rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _pose(axis=(0, 0, 1), angle=0.0, t=(0.0, 0.0, 0.0)):
    T = np.eye(4)
    T[:3, :3] = _rotation(axis, angle)
    T[:3, 3] = t
    return T


def _angle_between(A, B):
    cos = (np.trace(A[:3, :3].T @ B[:3, :3]) - 1) / 2
    return math.acos(min(1.0, max(-1.0, cos)))


def _random_poses(count, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield _pose(rng.normal(size=3), rng.uniform(0, 0.5), rng.uniform(-29.9, 29.9, 3))


def test_pose_round_trip_has_a_fixed_size_and_bounded_error():
    for T in _random_poses(200):
        data = encode_pose(T)
        assert isinstance(data, bytes) and len(data) == POSE_BYTES <= 16
        decoded = decode_pose(data)
        assert decoded.dtype == np.float64 and decoded.shape == (4, 4)
        assert np.abs(decoded[:3, 3] - T[:3, 3]).max() <= TRANSLATION_UNIT_M / 2 + 1e-12
        # Each quaternion component is off by at most half a step: the angle by at most sqrt(3) steps.
        assert _angle_between(decoded, T) <= math.sqrt(3) * QUATERNION_UNIT * 1.01
        np.testing.assert_allclose(decoded[:3, :3].T @ decoded[:3, :3], np.eye(3), atol=1e-12)
        np.testing.assert_array_equal(decoded[3], (0, 0, 0, 1))


def test_quantized_pose_is_a_fixed_point_bit_for_bit():
    for T in _random_poses(50, seed=1):
        once = quantize_pose(T)
        assert encode_pose(once) == encode_pose(T)
        assert quantize_pose(once).tobytes() == once.tobytes()


def test_identity_and_a_half_turn_round_trip():
    assert np.array_equal(decode_pose(encode_pose(np.eye(4))), np.eye(4))
    assert encode_pose(np.eye(4)) == bytes(POSE_BYTES)
    # Rotations whose quaternion has w < 0 are encoded as the equivalent w >= 0 one.
    T = _pose((0, 1, 0), -0.3, (1.0, -2.0, 0.5))
    np.testing.assert_allclose(quantize_pose(T), T, atol=1e-4)


@pytest.mark.parametrize('data', [b'', bytes(POSE_BYTES - 1), bytes(POSE_BYTES + 1)])
def test_decoding_the_wrong_number_of_bytes_is_a_packet_error(data):
    with pytest.raises(PacketError, match=f'{POSE_BYTES} bytes'):
        decode_pose(data)


def test_decoding_something_else_than_bytes_is_a_packet_error():
    with pytest.raises(PacketError):
        decode_pose('x' * POSE_BYTES)


def test_out_of_range_or_non_rigid_motion_is_refused_at_encode():
    with pytest.raises(ValueError, match='translation'):
        encode_pose(_pose(t=(MAX_TRANSLATION_M + 1, 0, 0)))
    with pytest.raises(ValueError, match='rotation'):
        encode_pose(_pose((0, 0, 1), math.radians(60)))
    scaled = np.eye(4)
    scaled[:3, :3] *= 1.1
    for bad in (scaled, np.full((4, 4), np.nan), np.eye(3)):
        with pytest.raises(ValueError):
            encode_pose(bad)


def test_lidar_motion_becomes_the_camera_motion_of_the_same_points():
    T_cam_lidar = _pose((1, -1, 1), 2.1, (0.0, -0.08, -0.27))
    T_lidar = _pose((0, 0, 1), 0.02, (0.9, 0.05, 0.01))
    T_cam = lidar_to_camera_motion(T_lidar, T_cam_lidar)
    point = np.array([12.0, -3.0, 0.5, 1.0])          # a point of the current LiDAR frame
    np.testing.assert_allclose(T_cam @ (T_cam_lidar @ point), T_cam_lidar @ (T_lidar @ point), atol=1e-12)


@pytest.fixture(scope='module')
def synthetic_scan():
    from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive

    return SyntheticDrive(SynthConfig(frames=1, seed=5, width=64, height=32)).render(0).frame.points


def _moved(points, T_prev_cur):
    """The scan as seen from a LiDAR at ``T_prev_cur`` in the previous frame."""
    moved = points.copy()
    T = np.linalg.inv(T_prev_cur)
    moved[:, :3] = (points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
    return moved


def test_registration_recovers_a_known_motion(synthetic_scan):
    truth = _pose((0.05, -0.02, 1.0), math.radians(1.5), (0.8, 0.1, 0.02))
    registration = ScanRegistration()
    first = registration.register(synthetic_scan)
    assert np.array_equal(first, np.eye(4)) and not registration.last.ok
    estimate = registration.register(_moved(synthetic_scan, truth))
    assert registration.last.ok and registration.last.inliers > 100
    assert np.linalg.norm(estimate[:3, 3] - truth[:3, 3]) < 0.02
    assert math.degrees(_angle_between(estimate, truth)) < 0.1


def test_reset_empty_and_nan_scans_give_the_identity_and_a_flag(synthetic_scan):
    registration = ScanRegistration()
    registration.register(synthetic_scan)
    registration.reset()
    assert np.array_equal(registration.register(synthetic_scan), np.eye(4)) and not registration.last.ok
    for bad in (np.zeros((0, 4), np.float32), np.full((1000, 4), np.nan, np.float32)):
        assert np.array_equal(registration.register(bad), np.eye(4)) and not registration.last.ok
    # After a bad scan the next one starts afresh, then registration resumes.
    assert np.array_equal(registration.register(synthetic_scan), np.eye(4)) and not registration.last.ok
    registration.register(synthetic_scan)
    assert registration.last.ok


def test_consecutive_kitti_raw_scans_register_to_a_forward_motion(kitti_root):
    from xmodal_compress_ros.data.pointfiles import read_points

    scans = sorted((kitti_root / 'kitti_raw/2011_09_26').glob('*/velodyne_points/data/*.bin'))
    if len(scans) < 2:
        pytest.skip('KITTI raw drive not found')
    registration = ScanRegistration()
    registration.register(read_points(scans[0]))
    T = registration.register(read_points(scans[1]))
    assert registration.last.ok
    # The vehicle creeps forward (+x) at about 2 m/s in stop-and-go traffic: 0.1-0.4 m in 0.1 s.
    assert 0.1 < T[0, 3] < 0.4 and abs(T[1, 3]) < 0.05 and abs(T[2, 3]) < 0.05
    assert math.degrees(_angle_between(T, np.eye(4))) < 1.0
