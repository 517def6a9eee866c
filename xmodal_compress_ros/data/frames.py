"""The unit every data source yields: one camera image with its LiDAR scan and calibration."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xmodal_compress_ros.geometry.calibration import Calibration


@dataclass
class SensorFrame:
    """A camera image paired with the LiDAR scan nearest in time.

    Attributes:
        image: H x W x 3 uint8, RGB.
        points: N x C float32, columns x, y, z, intensity[, ring]; LiDAR frame, metres.
        calib: the calibration of this camera/LiDAR pair.
        image_stamp_ns, lidar_stamp_ns: acquisition times in nanoseconds.
        name: a stable identifier (file stem or sequence index) for reports.
    """

    image: np.ndarray
    points: np.ndarray
    calib: Calibration
    image_stamp_ns: int = 0
    lidar_stamp_ns: int = 0
    name: str = ''
