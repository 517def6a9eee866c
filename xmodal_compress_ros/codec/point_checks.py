"""The per-point passes of :mod:`lidar_codec`, compiled: the checks of an input point cloud, its
intensity codes and the intensity column of a decoded scan, one pass each (numpy's passes and temporaries
cost several times as much).

Kept apart from :mod:`lidar_codec` so that the packet fuzzer can instrument that module's parsing
(instrumentation rewrites bytecode, which numba compiles from).
"""
from __future__ import annotations

import math

import numpy as np

try:
    import numba
except ImportError:  # pure Python: correct, slow
    numba = None


def split_points(points, drop_origin):
    """(float32 (N, 3) xyz, float32 (N,) intensity with non-finite values as 0 (0 without a fourth
    column), the mask of valid points, how many are not): valid means finite x, y, z in float32 and,
    with ``drop_origin``, not all zero. One compiled pass: numpy's passes for the casts, the checks
    and the count cost about twice as much."""
    n = points.shape[0]
    xyz = np.empty((n, 3), np.float32)
    intensity = np.zeros(n, np.float32)
    keep = np.empty(n, np.bool_)
    has_intensity = points.shape[1] > 3
    valid = 0
    # Without branches (& and |, not `and` and `or`): the compiler's loop then runs in a straight line.
    for i in range(n):
        x, y, z = np.float32(points[i, 0]), np.float32(points[i, 1]), np.float32(points[i, 2])
        xyz[i, 0], xyz[i, 1], xyz[i, 2] = x, y, z
        ok = math.isfinite(x) & math.isfinite(y) & math.isfinite(z)
        if drop_origin:
            ok &= (x != 0) | (y != 0) | (z != 0)
        keep[i] = ok
        valid += ok
    if has_intensity:
        for i in range(n):
            value = np.float32(points[i, 3])
            intensity[i] = value if math.isfinite(value) else np.float32(0)
    return xyz, intensity, keep, n - valid


def intensity_codes(intensity, intensity_max, top, codes):
    """Write ``rint(clip(intensity / intensity_max, 0, 1) * top)`` into ``codes`` (unsigned integers):
    numpy's float64 operations, one value at a time."""
    for i in range(intensity.shape[0]):
        value = min(max(np.float64(intensity[i]) / intensity_max, 0.0), 1.0)
        codes[i] = np.rint(value * top)
    return codes


def intensity_column(codes, values, out):
    """Write ``values[code]`` into the fourth column of the float32 (N, 4) rows ``out`` (0 without
    ``codes``); False if a code is past ``values``."""
    has_intensity = codes.shape[0] > 0
    for i in range(out.shape[0]):
        if has_intensity and (codes[i] < 0 or codes[i] >= values.shape[0]):
            return False
        out[i, 3] = values[codes[i]] if has_intensity else np.float32(0)
    return True


if numba is not None:
    split_points = numba.njit(nogil=True, cache=True)(split_points)
    intensity_codes = numba.njit(nogil=True, cache=True)(intensity_codes)
    intensity_column = numba.njit(nogil=True, cache=True)(intensity_column)
