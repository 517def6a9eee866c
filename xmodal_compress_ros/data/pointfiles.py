"""Read LiDAR scans stored as files: KITTI ``.bin`` (float32 x, y, z, reflectance) and NumPy ``.npy``."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from xmodal_compress_ros.errors import PointCloudError

KITTI_POINT_BYTES = 16  # four little-endian float32 per point


def read_points(path: Union[str, Path]) -> np.ndarray:
    """Read a scan as an ``(N, 4)`` float32 array of x, y, z, intensity (LiDAR frame, metres).

    ``.bin`` is KITTI's raw float32 layout; ``.npy`` must hold an ``(N, 3)`` or ``(N, >=4)``
    numeric array (only the first four columns are kept; a missing intensity becomes 0).
    """
    path = Path(path)
    if not path.is_file():
        raise PointCloudError(f'point file not found: {path}')
    suffix = path.suffix.lower()
    if suffix == '.bin':
        return _read_kitti_bin(path)
    if suffix == '.npy':
        return _read_npy(path)
    raise PointCloudError(f'{path}: unknown point file type {suffix!r}; accepted: KITTI .bin or NumPy .npy')


def _read_kitti_bin(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size % KITTI_POINT_BYTES:
        raise PointCloudError(
            f'{path}: {size} bytes is not a multiple of {KITTI_POINT_BYTES} (float32 x, y, z, reflectance '
            'per point): the file is truncated or not a KITTI scan')
    return np.fromfile(path, dtype='<f4').astype(np.float32, copy=False).reshape(-1, 4)


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise PointCloudError(f'{path}: not a plain numeric .npy array ({exc})') from None
    if array.ndim != 2 or array.shape[1] < 3 or array.dtype.kind not in 'fiu':
        raise PointCloudError(
            f'{path}: expected an (N, 3) or (N, >=4) numeric array of x, y, z[, intensity], '
            f'got shape {array.shape} dtype {array.dtype}')
    points = np.zeros((array.shape[0], 4), dtype=np.float32)
    columns = min(array.shape[1], 4)
    points[:, :columns] = array[:, :columns]
    return points
