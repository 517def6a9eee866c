"""The vehicle's motion between two frames: LiDAR scan registration and its few-byte encoding.

The encoder registers each raw scan to the previous one (GICP from ``small_gicp``), turns the LiDAR
motion into the camera's (:func:`lidar_to_camera_motion`) and sends it in 12 bytes
(:func:`encode_pose`). Both ends warp with the decoded matrix (:func:`quantize_pose` on the encoder),
so they use bit-identical poses: :func:`decode_pose` builds the matrix from integers with additions,
multiplications and one square root, which IEEE 754 rounds the same way on every machine.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np

from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.projection import check_points

#: Translation step: 1 mm (0.07 px of parallax at 5 m for KITTI's 721 px focal length).
TRANSLATION_UNIT_M = 1e-3
#: Step of the quaternion's vector part: 1e-5, i.e. a rotation step of 2e-5 rad (0.015 px at 721 px).
QUATERNION_UNIT = 1e-5
#: Largest translation an encoded pose may carry (int16 millimetres reach 32.767 m).
MAX_TRANSLATION_M = 30.0
_LAYOUT = struct.Struct('<6h')      # tx, ty, tz in mm; qx, qy, qz (w >= 0) in QUATERNION_UNIT
POSE_BYTES = _LAYOUT.size
_INT16_MAX = 32767
#: Largest rotation an encoded pose may carry (|q_i| <= 0.32767 on each axis; about 38 degrees).
MAX_ROTATION_RAD = 2.0 * math.asin(_INT16_MAX * QUATERNION_UNIT)


def lidar_to_camera_motion(T_lidar: np.ndarray, T_cam_lidar: np.ndarray) -> np.ndarray:
    """The camera's motion ``T_cam_lidar @ T_lidar @ inv(T_cam_lidar)`` of a LiDAR motion, float64.

    ``T_lidar`` is ``T_prev_cur`` in the LiDAR frame (as :meth:`ScanRegistration.register` returns);
    the result is ``T_prev_cur`` of the camera, the ``T_ref_cur`` of :func:`warp.warp_to_current`.
    Use the ``T_cam_lidar`` of :func:`warp.camera_intrinsics` (the rectified camera).
    """
    T_cam_lidar = _rigid(T_cam_lidar, 'T_cam_lidar')
    return T_cam_lidar @ _rigid(T_lidar, 'T_lidar') @ np.linalg.inv(T_cam_lidar)


def encode_pose(T: np.ndarray) -> bytes:
    """``POSE_BYTES`` (12) bytes: translation in mm and the rotation as a unit quaternion's vector part.

    Raises ValueError for a matrix that is not rigid, a translation above ``MAX_TRANSLATION_M`` or a
    rotation above ``MAX_ROTATION_RAD`` (neither is a vehicle's motion between two frames: the
    registration failed; send the identity instead).
    """
    T = _rigid(T, 'pose')
    translation = T[:3, 3]
    if np.abs(translation).max() > MAX_TRANSLATION_M:
        raise ValueError(f'pose translation {translation.tolist()} m exceeds {MAX_TRANSLATION_M} m per axis')
    q = _quaternion(T[:3, :3])
    if np.abs(q[1:]).max() * (1.0 / QUATERNION_UNIT) > _INT16_MAX:
        angle = 2.0 * math.acos(min(1.0, q[0]))
        raise ValueError(f'pose rotation of {math.degrees(angle):.1f} degrees exceeds the '
                         f'{math.degrees(MAX_ROTATION_RAD):.1f} degrees an encoded pose can carry per axis')
    values = np.concatenate([translation / TRANSLATION_UNIT_M, q[1:] / QUATERNION_UNIT])
    return _LAYOUT.pack(*(int(v) for v in np.rint(values)))


def decode_pose(data: bytes) -> np.ndarray:
    """The float64 4x4 pose of :func:`encode_pose`'s bytes; PacketError for a wrong length."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PacketError(f'pose must be bytes, got {type(data).__name__}')
    if len(data) != POSE_BYTES:
        raise PacketError(f'pose must be {POSE_BYTES} bytes, got {len(data)}')
    tx, ty, tz, qx, qy, qz = _LAYOUT.unpack(bytes(data))
    x, y, z = qx * QUATERNION_UNIT, qy * QUATERNION_UNIT, qz * QUATERNION_UNIT
    # |(x, y, z)| <= sqrt(3) * 0.32767 < 1, so w is real; sqrt is correctly rounded everywhere.
    w = math.sqrt(1.0 - (x * x + y * y + z * z))
    T = np.eye(4)
    T[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    T[:3, 3] = (tx * TRANSLATION_UNIT_M, ty * TRANSLATION_UNIT_M, tz * TRANSLATION_UNIT_M)
    return T


def quantize_pose(T: np.ndarray) -> np.ndarray:
    """``decode_pose(encode_pose(T))``: the pose the decoder will use; the encoder warps with it too."""
    return decode_pose(encode_pose(T))


def _rigid(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise ValueError(f'{name} must be a finite 4x4 matrix, got shape {T.shape}')
    R = T[:3, :3]
    if (np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or abs(np.linalg.det(R) - 1) > 1e-4
            or np.abs(T[3] - (0, 0, 0, 1)).max() > 1e-9):
        raise ValueError(f'{name} is not a rigid transform (rotation and translation, last row 0 0 0 1)')
    return T


def _quaternion(R: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` with ``w >= 0`` of a rotation matrix (Shepperd's method)."""
    trace = np.trace(R)
    candidates = np.array([trace, R[0, 0], R[1, 1], R[2, 2]])
    k = int(np.argmax(candidates))
    if k == 0:
        s = 2.0 * math.sqrt(1.0 + trace)
        q = np.array([s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    else:
        i, j, m = k - 1, k % 3, (k + 1) % 3
        s = 2.0 * math.sqrt(max(1.0 + R[i, i] - R[j, j] - R[m, m], 1e-300))
        q = np.empty(4)
        q[0] = (R[m, j] - R[j, m]) / s
        q[1 + i] = s / 4
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + m] = (R[m, i] + R[i, m]) / s
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


@dataclass(frozen=True)
class RegistrationResult:
    """What the last :meth:`ScanRegistration.register` call found.

    Attributes:
        T_prev_cur: the returned 4x4 LiDAR motion.
        ok: False when the motion is the identity because there was nothing to register (the first
            scan, a scan after ``reset()``, an empty or all-NaN scan, or one after it) or because GICP
            did not converge.
        points: points of the current scan after filtering and downsampling.
        inliers: correspondences GICP used (0 when it did not run).
    """

    T_prev_cur: np.ndarray
    ok: bool
    points: int
    inliers: int


class ScanRegistration:
    """Each raw scan registered to the previous one with GICP (``small_gicp``, one thread by default).

    Points nearer than ``min_range_m`` (the vehicle itself) or farther than ``max_range_m`` (sparse,
    noisy) are dropped; the rest is downsampled on a ``coarse_voxel_m`` grid for a first, wide
    registration and on a ``voxel_m`` grid for the accurate one. The previous motion seeds the next
    registration (constant velocity).
    """

    def __init__(self, voxel_m: float = 0.5, max_correspondence_m: float = 1.0, min_range_m: float = 3.0,
                 max_range_m: float = 80.0, max_iterations: int = 20, threads: int = 1,
                 min_points: int = 200, coarse_voxel_m: float = 1.0,
                 coarse_correspondence_m: float = 3.0) -> None:
        import small_gicp  # noqa: F401 (fail here, at construction, when the extra is not installed)

        self.voxel_m = float(voxel_m)
        self.max_correspondence_m = float(max_correspondence_m)
        self.coarse_voxel_m = float(coarse_voxel_m)
        self.coarse_correspondence_m = float(coarse_correspondence_m)
        self.min_range_m = float(min_range_m)
        self.max_range_m = float(max_range_m)
        self.max_iterations = int(max_iterations)
        self.threads = int(threads)
        self.min_points = int(min_points)
        self.last: Optional[RegistrationResult] = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous scan: the next one is registered to nothing (identity)."""
        self._previous = None
        self._velocity = np.eye(4)

    def register(self, points: np.ndarray) -> np.ndarray:
        """``T_prev_cur`` (float64 4x4, previous LiDAR frame <- current) of this scan; see :attr:`last`."""
        import small_gicp

        xyz = self._filter(points)
        if len(xyz) < self.min_points:
            # Nothing to register against next time either: the next scan starts afresh.
            self.reset()
            return self._finish(np.eye(4), False, len(xyz), 0)
        clouds = [small_gicp.preprocess_points(xyz, downsampling_resolution=voxel, num_threads=self.threads)
                  for voxel in (self.coarse_voxel_m, self.voxel_m)]
        previous, self._previous = self._previous, clouds
        points = clouds[1][0].size()
        if previous is None:
            return self._finish(np.eye(4), False, points, 0)
        # Coarse then fine: the wide coarse search catches motions beyond the fine correspondence
        # distance (3 m between frames at 30 m/s or at a frame stride of 3), the fine one is accurate.
        T = self._velocity
        for (target, target_tree), (source, _), distance in zip(
                previous, clouds, (self.coarse_correspondence_m, self.max_correspondence_m)):
            result = small_gicp.align(target, source, target_tree, init_T_target_source=T,
                                      registration_type='GICP', max_correspondence_distance=distance,
                                      num_threads=self.threads, max_iterations=self.max_iterations)
            T = np.array(result.T_target_source, dtype=np.float64)
        if not result.converged or not np.isfinite(T).all():
            self._velocity = np.eye(4)
            return self._finish(np.eye(4), False, points, int(result.num_inliers))
        self._velocity = T
        return self._finish(T, True, points, int(result.num_inliers))

    def _filter(self, points: np.ndarray) -> np.ndarray:
        xyz = check_points(points)[:, :3].astype(np.float64)
        with np.errstate(invalid='ignore'):
            distance = np.sqrt((xyz * xyz).sum(axis=1))
            keep = (distance >= self.min_range_m) & (distance <= self.max_range_m)
        return np.ascontiguousarray(xyz[keep])

    def _finish(self, T: np.ndarray, ok: bool, points: int, inliers: int) -> np.ndarray:
        self.last = RegistrationResult(T_prev_cur=T, ok=ok, points=points, inliers=inliers)
        return T
