"""Camera intrinsics and LiDAR-to-camera extrinsics, validated, with the composed projection.

Readers for the supported formats (KITTI object, KITTI raw, the project's YAML, CameraInfo plus an
extrinsic) live in this module and all return :class:`Calibration`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """A rectified camera and a LiDAR rigidly mounted next to it.

    Attributes:
        width, height: image size in pixels the intrinsics refer to.
        K: 3x3 camera matrix (as CameraInfo.k).
        D: distortion coefficients (as CameraInfo.d); zeros for rectified images.
        P: 3x4 projection matrix of the rectified image (as CameraInfo.p).
        R_rect: 3x3 rectification rotation (as CameraInfo.r); identity if not rectified.
        T_cam_lidar: 4x4 rigid transform taking LiDAR points into the camera frame.
    """

    width: int
    height: int
    K: np.ndarray
    P: np.ndarray
    T_cam_lidar: np.ndarray
    R_rect: np.ndarray = field(default_factory=lambda: np.eye(3))
    D: np.ndarray = field(default_factory=lambda: np.zeros(5))

    @property
    def lidar_to_pixel(self) -> np.ndarray:
        """3x4 matrix M with ``[u*w, v*w, w]^T = M @ [x, y, z, 1]^T`` (w is the depth)."""
        rect = np.eye(4)
        rect[:3, :3] = self.R_rect
        return self.P @ rect @ self.T_cam_lidar
