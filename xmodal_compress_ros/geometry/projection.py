"""LiDAR points -> sparse depth map -> the uint8 conditioning image of the codec (NumPy reference).

The steps, each defined exactly so that :mod:`projection_torch` reproduces them bit for bit:

1. ``[a, b, w] = M @ [x, y, z, 1]`` with ``M = calib.lidar_to_pixel``, each row evaluated in float64
   as ``((x*M[r,0] + y*M[r,1]) + z*M[r,2]) + M[r,3]`` (no matmul: its summation order is
   library-specific). ``w`` is the depth in metres.
2. Keep finite points with ``w > MIN_DEPTH_M`` whose pixel ``u = floor(a/w)``, ``v = floor(b/w)``
   lies inside the image; the nearest point wins each pixel (z-buffer); 0 marks empty pixels.
3. :func:`equalize_depth`: ``d' = clip(round((d - d_min) * scale), 0, 255)`` over non-empty pixels,
   then integer histogram equalisation of ``d'`` onto 1..255 (empty pixels stay 0).

See ``docs/projection.md`` for the reasons behind each choice.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from xmodal_compress_ros.errors import ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration

# 1/3 m steps over an 85 m span: covers KITTI's in-image depths (about 2-80 m) in 255 levels.
DEFAULT_DEPTH_SCALE = 3.0
# Points nearer than this are on the vehicle or behind the image plane.
MIN_DEPTH_M = 0.1
LEVELS = 256
# 16384 float64 values = 128 KiB: temporaries of this size are recycled by malloc, not mmapped.
CHUNK_POINTS = 16384
NEGATIVE_OR_NAN_DEPTH = 'depth map must hold finite depths >= 0 (0 = no point); it has NaN, inf or < 0'


def project_points(points: np.ndarray, calib: Calibration) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of the points that land in the image, before the z-buffer.

    ``points`` is ``(N, >=3)`` numeric (x, y, z first, in the LiDAR frame); other columns are ignored.
    Returns ``(u, v, depth)``: int64 column and row, float32 depth in metres, one entry per point that
    is finite, more than ``MIN_DEPTH_M`` in front of the camera and inside the image, in input order.
    """
    u, v, depth, _ = project_points_indexed(points, calib)
    return u, v, depth


def project_points_indexed(points: np.ndarray,
                           calib: Calibration) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project_points` and, fourth, the int64 row in ``points`` of each projected point (for
    the point's other columns, such as reflectance)."""
    points = check_points(points)
    m = calib.lidar_to_pixel
    # Chunks keep every temporary small enough for malloc's free lists; whole-scan temporaries are
    # fresh mmaps whose page faults cost more than the arithmetic. Results do not depend on chunking.
    chunks = [_project_chunk(points[start:start + CHUNK_POINTS], m, calib.width, calib.height, start)
              for start in range(0, len(points), CHUNK_POINTS)]
    if not chunks:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.int64)
    u, v, depth, rows = (np.concatenate(parts) for parts in zip(*chunks))
    return u, v, depth, rows


def _project_chunk(points: np.ndarray, m: np.ndarray, width: int, height: int,
                   first_row: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y, z = points[:, :3].T.astype(np.float64, order='C')
    # NaN/inf coordinates are expected in real scans; they are dropped below, silently.
    with np.errstate(invalid='ignore', over='ignore'):
        w = x * m[2, 0] + y * m[2, 1] + z * m[2, 2] + m[2, 3]
        # NaN fails both comparisons; an inf coordinate makes w inf or NaN, so this drops non-finite points.
        front = np.flatnonzero((w > MIN_DEPTH_M) & (w < np.inf))
        x, y, z, w = x[front], y[front], z[front], w[front]
        u = np.floor((x * m[0, 0] + y * m[0, 1] + z * m[0, 2] + m[0, 3]) / w)
        v = np.floor((x * m[1, 0] + y * m[1, 1] + z * m[1, 2] + m[1, 3]) / w)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    return (u[inside].astype(np.int64), v[inside].astype(np.int64), w[inside].astype(np.float32),
            front[inside] + first_row)


def project_to_depth(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """Sparse depth map, float32 ``(height, width)`` in metres, 0 where no point lands.

    The nearest point wins each pixel; see :func:`project_points` for which points count.
    """
    u, v, depth = project_points(points, calib)
    index = v * calib.width + u
    nearest = np.full(calib.height * calib.width, np.inf, dtype=np.float32)
    # minimum.at is order-independent: the nearest point wins whatever the input order.
    np.minimum.at(nearest, index, depth)
    # Clear and rewrite only the hit pixels: a memset is cheaper than masking every empty pixel's inf.
    hits = nearest[index]
    nearest.fill(0.0)
    nearest[index] = hits
    return nearest.reshape(calib.height, calib.width)


def equalize_depth(depth: np.ndarray, scale: float = DEFAULT_DEPTH_SCALE) -> np.ndarray:
    """The conditioning image: uint8 ``(H, W)``, 0 where empty, 1..255 (equalised depth rank) elsewhere."""
    return _equalize(check_depth(depth), check_scale(scale))


def depth_condition(points: np.ndarray, calib: Calibration, scale: float = DEFAULT_DEPTH_SCALE) -> np.ndarray:
    """:func:`project_to_depth` then :func:`equalize_depth`: the codec's LiDAR input, uint8 ``(H, W)``."""
    scale = check_scale(scale)
    return _equalize(project_to_depth(points, calib), scale)


def reflectance_map(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """uint8 ``(H, W)``: the reflectance (fourth column, clipped to [0, 1]) of each pixel's nearest
    point as 1..255, 0 where no point lands; the pixels and the nearest point as in
    :func:`project_to_depth`. A scan without a fourth column gives an empty map."""
    height, width = calib.height, calib.width
    points = check_points(points)
    if len(points) == 0 or points.shape[1] < 4:
        return np.zeros((height, width), np.uint8)
    u, v, depth, rows = project_points_indexed(points, calib)
    # Farthest first, so that the nearest point's write lands last.
    far_first = np.argsort(-depth, kind='stable')
    out = np.zeros(height * width, np.uint8)
    reflectance = np.nan_to_num(points[rows[far_first], 3].astype(np.float64))
    value = np.rint(255.0 * np.clip(reflectance, 0.0, 1.0)).astype(np.uint8)
    out[v[far_first] * width + u[far_first]] = np.maximum(value, 1)
    return out.reshape(height, width)


def _equalize(depth: np.ndarray, scale: float) -> np.ndarray:
    """Equalisation of a depth map already known to be valid."""
    out = np.zeros(depth.size, dtype=np.uint8)
    # Indices beat a boolean mask on a sparse map (and nonzero of a bool array beats that of floats).
    filled = np.flatnonzero(depth > 0)
    if filled.size == 0:
        return out.reshape(depth.shape)
    values = depth.ravel()[filled].astype(np.float64)
    levels = np.clip(np.rint((values - values.min()) * scale), 0, LEVELS - 1).astype(np.int64)
    cdf = np.cumsum(np.bincount(levels, minlength=LEVELS))
    out[filled] = equalization_lut(cdf)[levels]
    return out.reshape(depth.shape)


def equalization_lut(cdf: np.ndarray) -> np.ndarray:
    """uint8 table level -> 1..255 from the integer cdf of the 256 levels (shared by both implementations).

    ``lut = 1 + round_half_up(254 * (cdf - cdf[0]) / (n - cdf[0]))`` in integer arithmetic, with
    ``n = cdf[-1]``; ``cdf[0] > 0`` since the nearest pixel has level 0. If all pixels share one
    level the denominator is 0 and every pixel maps to 1.
    """
    cdf = np.asarray(cdf, dtype=np.int64)
    span = max(int(cdf[-1] - cdf[0]), 1)
    return (1 + (2 * (LEVELS - 2) * (cdf - cdf[0]) + span) // (2 * span)).astype(np.uint8)


def check_points(points: np.ndarray) -> np.ndarray:
    """``points`` as an ndarray of shape ``(N, >=3)`` with a real numeric dtype, else PointCloudError."""
    array = np.asarray(points)
    if array.dtype.kind not in 'fiu':
        raise PointCloudError(f'points must be a numeric (float or int) array, got dtype {array.dtype}')
    check_points_shape(tuple(array.shape))
    return array


def check_points_shape(shape: Tuple[int, ...]) -> None:
    """PointCloudError unless ``shape`` is ``(N, >=3)``."""
    if len(shape) != 2 or shape[1] < 3:
        raise PointCloudError(
            f'points must have shape (N, >=3) with x, y, z first, got {shape}: pass one row per point')


def check_depth(depth: np.ndarray) -> np.ndarray:
    """``depth`` as a 2-D float array of finite values >= 0, else ImageFormatError."""
    array = np.asarray(depth)
    if array.ndim != 2 or array.dtype.kind != 'f':
        raise ImageFormatError(
            f'depth map must be a 2-D float array (H, W) in metres, '
            f'got shape {array.shape} dtype {array.dtype}')
    if array.size and not (np.isfinite(array).all() and array.min() >= 0):
        raise ImageFormatError(NEGATIVE_OR_NAN_DEPTH)
    return array


def check_scale(scale: float) -> float:
    """The depth normalisation scale (levels per metre) as a finite float > 0, else ImageFormatError."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ImageFormatError(f'depth scale must be a number of levels per metre, got {scale!r}') from None
    if not np.isfinite(value) or value <= 0:
        raise ImageFormatError(
            f'depth scale must be finite and > 0 (levels per metre, default {DEFAULT_DEPTH_SCALE}), '
            f'got {scale!r}')
    return value
