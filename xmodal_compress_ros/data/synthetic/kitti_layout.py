"""Writes SensorFrames in the KITTI raw layout, so the KITTI raw readers load them unchanged.

::

    <root>/<date>/calib_cam_to_cam.txt   calib_velo_to_cam.txt
    <root>/<date>/<date>_drive_<name>_sync/image_02/data/NNNNNNNNNN.png    image_02/timestamps.txt
    <root>/<date>/<date>_drive_<name>_sync/velodyne_points/data/NNNNNNNNNN.bin  velodyne_points/timestamps.txt

Scans are float32 x, y, z, reflectance: the format has no ring column, so it is dropped.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterable, Iterator, Union

import numpy as np

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

PathLike = Union[str, Path]


def kitti_timestamp(stamp_ns: int) -> str:
    """Nanoseconds since the epoch as KITTI's ``YYYY-MM-DD HH:MM:SS.nnnnnnnnn`` (UTC)."""
    seconds, nanos = divmod(int(stamp_ns), 10**9)
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc)
    return f'{moment:%Y-%m-%d %H:%M:%S}.{nanos:09d}'


def _numbers(values: np.ndarray) -> str:
    return ' '.join(f'{v:.6e}' for v in np.asarray(values, np.float64).reshape(-1))


def write_calibration(date_dir: Path, calib: Calibration, stamp_ns: int) -> None:
    """Write ``calib_cam_to_cam.txt`` (cameras 00 and 02, rectified) and ``calib_velo_to_cam.txt``."""
    when = dt.datetime.fromtimestamp(int(stamp_ns) // 10**9, tz=dt.timezone.utc).strftime('%d-%b-%Y %H:%M:%S')
    size = np.array([calib.width, calib.height], np.float64)
    P0 = calib.P.copy()
    P0[:, 3] = 0.0
    lines = [f'calib_time: {when}', 'corner_dist: 9.950000e-02']
    for cam, P in (('00', P0), ('02', calib.P)):
        K = P[:, :3]
        t = np.linalg.solve(K, P[:, 3])
        lines += [f'S_{cam}: {_numbers(size)}', f'K_{cam}: {_numbers(K)}',
                  f'D_{cam}: {_numbers(np.zeros(5))}',
                  f'R_{cam}: {_numbers(np.eye(3))}', f'T_{cam}: {_numbers(t)}',
                  f'S_rect_{cam}: {_numbers(size)}', f'R_rect_{cam}: {_numbers(calib.R_rect)}',
                  f'P_rect_{cam}: {_numbers(P)}']
    (date_dir / 'calib_cam_to_cam.txt').write_text('\n'.join(lines) + '\n')
    velo = [f'calib_time: {when}', f'R: {_numbers(calib.T_cam_lidar[:3, :3])}',
            f'T: {_numbers(calib.T_cam_lidar[:3, 3])}', 'delta_f: 0.000000e+00 0.000000e+00',
            'delta_c: 0.000000e+00 0.000000e+00']
    (date_dir / 'calib_velo_to_cam.txt').write_text('\n'.join(velo) + '\n')


def drive_dir(root: PathLike, date: str, name: str = 'synth') -> Path:
    """``<root>/<date>/<date>_drive_<name>_sync``."""
    return Path(root) / date / f'{date}_drive_{name}_sync'


def write_kitti_raw(root: PathLike, frames: Iterable[SensorFrame], date: str,
                    name: str = 'synth') -> Iterator[SensorFrame]:
    """Write ``frames`` under ``root`` as they pass through; yields each frame after writing it.

    Streaming lets one rendering pass feed this writer and a rosbag writer. Timestamp lines are
    appended as each frame is written, so an interrupted run leaves a readable drive.

    Raises:
        DatasetError: the drive folder already holds frames.
    """
    import cv2

    drive = drive_dir(root, date, name)
    image_dir, velo_dir = drive / 'image_02' / 'data', drive / 'velodyne_points' / 'data'
    if image_dir.is_dir() and any(image_dir.iterdir()):
        raise DatasetError(f'{drive} already holds frames: choose another --out folder or delete it')
    image_dir.mkdir(parents=True, exist_ok=True)
    velo_dir.mkdir(parents=True, exist_ok=True)
    image_stamps = drive / 'image_02' / 'timestamps.txt'
    lidar_stamps = drive / 'velodyne_points' / 'timestamps.txt'
    image_stamps.write_text('')
    lidar_stamps.write_text('')
    for index, frame in enumerate(frames):
        if index == 0:
            write_calibration(drive.parent, frame.calib, frame.image_stamp_ns)
        stem = f'{index:010d}'
        if not cv2.imwrite(str(image_dir / f'{stem}.png'), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)):
            raise DatasetError(f'could not write {image_dir / stem}.png: check the disk and permissions')
        frame.points[:, :4].astype('<f4').tofile(velo_dir / f'{stem}.bin')
        for path, stamp in ((image_stamps, frame.image_stamp_ns), (lidar_stamps, frame.lidar_stamp_ns)):
            with path.open('a') as stream:
                stream.write(kitti_timestamp(stamp) + '\n')
        yield frame
