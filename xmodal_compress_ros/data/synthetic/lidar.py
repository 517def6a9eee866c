"""A spinning 64-beam LiDAR with HDL-64E-like geometry, cast into the same scene as the camera.

The sweep starts facing backwards and turns clockwise (seen from above) once per period; every
azimuth column fires at its own time, from where the vehicle is at that moment, and its points
are expressed in the sensor frame of that moment, so the scan carries the same motion
distortion as an uncompensated Velodyne scan (KITTI raw). Returns get range noise, an intensity
from the material's reflectance and the incidence angle, and drop out on sky, beyond the
maximum range, on glass, through foliage and, at random, when the echo is weak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from xmodal_compress_ros.data.synthetic import raycast
from xmodal_compress_ros.data.synthetic import scene as S
from xmodal_compress_ros.data.synthetic.textures import Materials

# Receiver gain from material reflectance to the reported value, set so that the distribution
# matches KITTI's (median about 0.19, 95th percentile about 0.46).
_REFLECTANCE_GAIN = 1.4


@dataclass(frozen=True)
class LidarConfig:
    """Beam pattern and error model.

    Attributes:
        beams: lasers; half in the upper block (top to -8.33 deg), half in the lower block.
        columns: firings per revolution per laser.
        elevation_top_deg, elevation_bottom_deg: elevation of the highest and lowest beam.
        period_s: time of one revolution (10 Hz).
        max_range, min_range: metres; returns outside are dropped.
        range_noise: standard deviation of the range error in metres.
        intensity_noise: standard deviation of the reflectance error.
        dropout: probability a return is lost at random.
        motion_distortion: fire each column from the vehicle pose at its own time.
    """

    beams: int = 64
    columns: int = 2083
    elevation_top_deg: float = 2.0
    elevation_bottom_deg: float = -24.9
    period_s: float = 0.1
    max_range: float = 120.0
    min_range: float = 1.0
    range_noise: float = 0.02
    intensity_noise: float = 0.02
    dropout: float = 0.01
    motion_distortion: bool = True


def beam_elevations(config: LidarConfig, seed: int) -> np.ndarray:
    """Beam elevations in radians, highest first: two blocks with denser spacing in the upper one.

    Each beam gets a fixed calibration offset of a few hundredths of a degree, as real lasers do.
    """
    upper = config.beams // 2
    split_deg = -8.33 if config.elevation_top_deg > -8.33 > config.elevation_bottom_deg else \
        (config.elevation_top_deg + config.elevation_bottom_deg) / 2
    top = np.linspace(config.elevation_top_deg, split_deg, upper)
    bottom = np.linspace(split_deg - 0.54, config.elevation_bottom_deg, config.beams - upper)
    jitter = np.random.default_rng([seed, 23]).normal(0.0, 0.02, config.beams)
    return np.radians(np.sort(np.concatenate([top, bottom]) + jitter)[::-1])


def _object_times(prims: S.Primitives, origin: np.ndarray, yaw: float, t0: float,
                  config: LidarConfig) -> np.ndarray:
    """Per primitive, the time at which the sweep passes the centre of its object.

    Moving cars are placed where they are at that time: the whole car at once, judged from
    where it is at mid-sweep.
    """
    centre = prims.moved(t0 + config.period_s / 2).center
    objects = prims.object_id
    count = np.bincount(objects)
    cx = np.bincount(objects, centre[:, 0]) / np.maximum(count, 1)
    cy = np.bincount(objects, centre[:, 1]) / np.maximum(count, 1)
    az = np.arctan2(cy - origin[1], cx - origin[0]) - yaw
    frac = ((np.pi - az) / (2 * np.pi)) % 1.0
    return (t0 + frac * config.period_s)[objects]


def scan(scene: S.Scene, materials: Materials, config: LidarConfig,
         pose_at: Callable[[np.ndarray], np.ndarray],
         sweep_start_s: float, elevations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One revolution of the LiDAR.

    Args:
        pose_at: maps an array of times (s) to their 4x4 LiDAR poses in the world (n x 4 x 4).
        sweep_start_s: time of the first column.
        elevations: from :func:`beam_elevations`.
    Returns:
        N x 5 float32 points [x, y, z, intensity, ring] in the sensor frame, in firing order
        (column by column, top beam first); ring 0 is the lowest beam.
    """
    W, B = config.columns, len(elevations)
    col_t = sweep_start_s + (np.arange(W) + 0.5) / W * config.period_s
    mid_pose = pose_at(np.array([sweep_start_s + config.period_s / 2]))[0]
    if config.motion_distortion:
        origins = pose_at(col_t)[:, :3, 3]
    else:
        origins = np.repeat(mid_pose[None, :3, 3], W, axis=0)
    grid = raycast.SphericalGrid(elevations, W, mid_pose[:3, :3], origins)
    prims = scene.prims.moved(_object_times(scene.prims, mid_pose[:3, 3], grid.yaw, sweep_start_s, config))
    t, prim = raycast.cast(prims, grid, config.max_range)
    # Firing order: column-major.
    t, prim = t.T.reshape(-1), prim.T.reshape(-1)
    sensor_dirs = grid.sensor_dirs.transpose(1, 0, 2).reshape(-1, 3)
    world_dirs = grid.dirs.transpose(1, 0, 2).reshape(-1, 3)
    ring = np.tile(np.arange(B - 1, -1, -1), W)
    col_origin = np.repeat(origins, B, axis=0)
    keep = np.flatnonzero((prim >= 0) & (t >= config.min_range))
    t, prim, ring = t[keep], prim[keep], ring[keep]
    d = world_dirs[keep]
    p = (col_origin[keep] + d * t[:, None]).astype(np.float32)
    n = raycast.normals(prims, prim, p, d)
    surf = materials.evaluate(prims, prim, p, n, (0.003 * t).astype(np.float32))
    cos_i = np.abs((n * d).sum(1))
    echo = _REFLECTANCE_GAIN * surf.ir * (0.35 + 0.65 * cos_i)
    rng_r = t + rng.normal(0.0, config.range_noise, len(t))
    # Foliage returns come from leaves somewhere inside the crown's outer layer.
    rng_r = rng_r + surf.leafy * rng.uniform(0.0, 0.3, len(t))
    weak = echo / np.maximum(rng_r / 40.0, 1.0) ** 2
    lost = rng.random(len(t)) < config.dropout
    lost |= surf.glass & (rng.random(len(t)) < 0.7)
    lost |= surf.leafy & (rng.random(len(t)) < 0.15)
    lost |= rng.random(len(t)) < np.exp(-weak / 0.012)
    lost |= rng_r > config.max_range
    ok = ~lost
    intensity = np.clip(echo + rng.normal(0.0, config.intensity_noise, len(t)), 0.0, 1.0)
    # KITTI reflectance comes in steps of 0.01.
    intensity = np.round(intensity * 100.0) / 100.0
    xyz = sensor_dirs[keep][ok] * rng_r[ok, None]
    return np.column_stack([xyz, intensity[ok], ring[ok]]).astype(np.float32)
