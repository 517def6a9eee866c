"""A synthetic drive: vehicle motion, sensor timing, and the stream of rendered SensorFrames.

Timing follows KITTI raw: the LiDAR spins at 10 Hz; its stamp is the moment the sweep faces
forward, and the camera is triggered then, with a fixed latency and a little jitter. Each
frame is rendered independently from (seed, index), so any frame can be regenerated alone.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterator, Optional

import numpy as np

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.data.synthetic import camera as cam
from xmodal_compress_ros.data.synthetic import lidar as lid
from xmodal_compress_ros.data.synthetic.scene import SceneConfig, generate_scene
from xmodal_compress_ros.data.synthetic.textures import Materials
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

# KITTI raw calibration of 2011-09-26 (cam_to_cam: R_rect_00, P_rect_02; velo_to_cam: R, T).
KITTI_WIDTH, KITTI_HEIGHT = 1242, 375
KITTI_R_RECT = np.array([[9.999239e-01, 9.837760e-03, -7.445048e-03],
                         [-9.869795e-03, 9.999421e-01, -4.278459e-03],
                         [7.402527e-03, 4.351614e-03, 9.999631e-01]])
KITTI_P_RECT_02 = np.array([[7.215377e+02, 0.0, 6.095593e+02, 4.485728e+01],
                            [0.0, 7.215377e+02, 1.728540e+02, 2.163791e-01],
                            [0.0, 0.0, 1.0, 2.745884e-03]])
KITTI_R_VELO = np.array([[7.533745e-03, -9.999714e-01, -6.166020e-04],
                         [1.480249e-02, 7.280733e-04, -9.998902e-01],
                         [9.998621e-01, 7.523790e-03, 1.480755e-02]])
KITTI_T_VELO = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
LIDAR_HEIGHT = 1.73
# Recording start of every synthetic drive (the calibration's day), in UTC.
START = dt.datetime(2011, 9, 26, 13, 0, 0, tzinfo=dt.timezone.utc)


def kitti_calibration(width: int = KITTI_WIDTH, height: int = KITTI_HEIGHT) -> Calibration:
    """KITTI's image_02 / Velodyne calibration, with the intrinsics scaled to ``width`` x ``height``."""
    if width < 16 or height < 16:
        raise DatasetError(f'image size {width}x{height} is too small: use at least 16x16 '
                           '(KITTI is 1242x375)')
    P = KITTI_P_RECT_02.copy()
    P[0] *= width / KITTI_WIDTH
    P[1] *= height / KITTI_HEIGHT
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = KITTI_R_VELO, KITTI_T_VELO
    return Calibration(width=width, height=height, K=P[:, :3].copy(), P=P, T_cam_lidar=T,
                       R_rect=KITTI_R_RECT.copy(), D=np.zeros(5))


def camera_model(calib: Calibration) -> cam.CameraModel:
    """The rendering camera whose projection is exactly ``calib.lidar_to_pixel``."""
    K = calib.P[:, :3]
    E = np.eye(4)
    E[:3, 3] = np.linalg.solve(K, calib.P[:, 3])
    rect = np.eye(4)
    rect[:3, :3] = calib.R_rect
    T_cam_lidar = E @ rect @ calib.T_cam_lidar
    return cam.CameraModel(K=K, width=calib.width, height=calib.height,
                           T_lidar_cam=np.linalg.inv(T_cam_lidar))


@dataclass(frozen=True)
class Trajectory:
    """The ego vehicle: a speed that swells and eases, a slight sway in the lane, pitch and roll."""

    speed: float
    surge: float
    surge_period: float
    surge_phase: float
    lane_y: float
    sway: float
    sway_period: float
    sway_phase: float

    @staticmethod
    def random(rng: np.random.Generator, lane_y: float = 0.0, speed: float = 7.5) -> 'Trajectory':
        return Trajectory(speed=speed, surge=rng.uniform(0.3, 1.5), surge_period=rng.uniform(8, 20),
                          surge_phase=rng.uniform(0, 2 * np.pi), lane_y=lane_y, sway=rng.uniform(0.05, 0.2),
                          sway_period=rng.uniform(5, 12), sway_phase=rng.uniform(0, 2 * np.pi))

    def x(self, t: np.ndarray) -> np.ndarray:
        w = 2 * np.pi / self.surge_period
        return self.speed * t - self.surge / w * (np.cos(w * t + self.surge_phase) - np.cos(self.surge_phase))

    def poses(self, t: np.ndarray) -> np.ndarray:
        """4x4 LiDAR poses in the world at times ``t`` (seconds), shape n x 4 x 4."""
        t = np.atleast_1d(np.asarray(t, np.float64))
        w, ws = 2 * np.pi / self.surge_period, 2 * np.pi / self.sway_period
        v = self.speed + self.surge * np.sin(w * t + self.surge_phase)
        accel = self.surge * w * np.cos(w * t + self.surge_phase)
        y = self.lane_y + self.sway * np.sin(ws * t + self.sway_phase)
        yaw = np.arctan2(self.sway * ws * np.cos(ws * t + self.sway_phase), v)
        # Braking dips the nose (positive rotation about y), road texture adds a little shake.
        pitch = -0.004 * accel + 0.0015 * np.sin(7.3 * t)
        roll = 0.0015 * np.sin(5.1 * t + 1.0)
        cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
        cr, sr = np.cos(roll), np.sin(roll)
        T = np.zeros((len(t), 4, 4))
        T[:, 0] = np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr, self.x(t)], 1)
        T[:, 1] = np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr, y], 1)
        T[:, 2] = np.stack([-sp, cp * sr, cp * cr, LIDAR_HEIGHT + 0.004 * np.sin(11.0 * t)], 1)
        T[:, 3, 3] = 1.0
        return T


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    Attributes:
        frames: number of frames; seed: everything follows from it.
        width, height: camera image size (the KITTI intrinsics are scaled to it).
        lidar: beam pattern and error model.
        camera_latency_s: mean delay of the camera trigger after the sweep faces forward.
    """

    frames: int = 100
    seed: int = 0
    width: int = KITTI_WIDTH
    height: int = KITTI_HEIGHT
    lidar: lid.LidarConfig = field(default_factory=lid.LidarConfig)
    camera_latency_s: float = 0.006


@dataclass
class RenderedFrame:
    """A frame plus the camera's depth buffer (metres along the optical axis, inf on the sky)."""

    frame: SensorFrame
    depth: np.ndarray


class SyntheticDrive:
    """A drive down a procedurally generated street; index it or iterate over its frames."""

    def __init__(self, config: SynthConfig = SynthConfig()):
        if config.frames < 1:
            raise DatasetError(f'frames={config.frames}: ask for at least 1 frame')
        self.config = config
        self.calib = kitti_calibration(config.width, config.height)
        self.camera = camera_model(self.calib)
        rng = np.random.default_rng([config.seed, 1])
        speed = float(rng.uniform(5.0, 10.0))
        duration = config.frames * config.lidar.period_s + 1.0
        length = speed * duration * 1.3 + 260.0
        self.scene = generate_scene(config.seed, SceneConfig(x_max=length, traffic_duration_s=duration,
                                                             ego_speed=speed))
        self.trajectory = Trajectory.random(rng, self.scene.ego_lane_y, speed)
        self.materials = Materials(self.scene)
        self.elevations = lid.beam_elevations(config.lidar, config.seed)
        self.exposure_phase = float(rng.uniform(0, 2 * np.pi))
        self.start_ns = int(START.timestamp()) * 10**9

    def __len__(self) -> int:
        return self.config.frames

    def __iter__(self) -> Iterator[SensorFrame]:
        for k in range(len(self)):
            yield self.render(k).frame

    def sweep_start_s(self, k: int) -> float:
        """Start of sweep k in seconds since the drive started; the motor runs within 0.1 ms of 10 Hz."""
        jitter = np.random.default_rng([self.config.seed, k, 2]).normal(0.0, 1e-4)
        return k * self.config.lidar.period_s + float(jitter)

    def render(self, k: int) -> RenderedFrame:
        """Render frame ``k``: the LiDAR sweep and the camera image triggered during it."""
        if not 0 <= k < len(self):
            raise DatasetError(f'frame index {k} is outside 0..{len(self) - 1}')
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, k, 3])
        start = self.sweep_start_s(k)
        lidar_t = start + cfg.lidar.period_s / 2
        camera_t = lidar_t + cfg.camera_latency_s + float(np.clip(rng.normal(0.0, 0.002), -0.004, 0.004))
        points = lid.scan(self.scene, self.materials, cfg.lidar, self.trajectory.poses, start,
                          self.elevations, rng)
        # Auto-exposure drifts slowly and flickers a little from frame to frame.
        drift = 1 + 0.05 * np.sin(2 * np.pi * camera_t / 9.0 + self.exposure_phase)
        gain = 1.1 * drift * (1 + rng.normal(0, 0.005))
        exposure = cam.Exposure(gain=float(gain), noise_seed=(cfg.seed, k, 4))
        image, depth = cam.render(self.scene, self.scene.prims.moved(camera_t), self.materials, self.camera,
                                  self.trajectory.poses(camera_t)[0], exposure)
        frame = SensorFrame(image=image, points=points, calib=self.calib,
                            image_stamp_ns=self.start_ns + int(round(camera_t * 1e9)),
                            lidar_stamp_ns=self.start_ns + int(round(lidar_t * 1e9)), name=f'{k:010d}')
        return RenderedFrame(frame=frame, depth=depth)


_worker_drive: Optional[SyntheticDrive] = None


def _start_worker(config: SynthConfig) -> None:
    global _worker_drive
    _worker_drive = SyntheticDrive(config)


def _render_in_worker(index: int) -> SensorFrame:
    return _worker_drive.render(index).frame


def render_frames(config: SynthConfig, workers: int = 1) -> Iterator[SensorFrame]:
    """Frames 0..N-1 in order, rendered by ``workers`` processes that each build the scene once.

    Frames depend only on (seed, index), so the output is identical for any number of workers.
    """
    if workers <= 1:
        yield from SyntheticDrive(config)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context('spawn')
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(config,)) as pool:
        yield from pool.map(_render_in_worker, range(config.frames))
