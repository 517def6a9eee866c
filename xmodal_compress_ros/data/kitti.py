"""KITTI on disk as sequences of :class:`SensorFrame`: the object benchmark layout and raw drives.

Object layout (``<root>/<split>/``)::

    image_2/NNNNNN.png   velodyne/NNNNNN.bin   calib/NNNNNN.txt

Raw layout (a synced drive plus its date folder)::

    <drive>/image_0C/data/NNNNNNNNNN.png        <drive>/image_0C/timestamps.txt        (optional)
    <drive>/velodyne_points/data/NNNNNNNNNN.bin <drive>/velodyne_points/timestamps.txt (optional)
    <date>/calib_cam_to_cam.txt  <date>/calib_velo_to_cam.txt

Object frames are independent snapshots without times; they get nominal 10 Hz stamps by position
so that they can still be written to a bag in order.
"""
from __future__ import annotations

import datetime
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

PathLike = Union[str, Path]
NS_PER_S = 1_000_000_000
# Nominal stamps: KITTI's 10 Hz from 2011-09-26 00:00:00 UTC, the first recording day.
NOMINAL_PERIOD_NS = 100_000_000
NOMINAL_START_NS = 1_316_995_200 * NS_PER_S


def read_rgb(path: PathLike) -> np.ndarray:
    """An 8-bit image file as H x W x 3 uint8 RGB (grey images are replicated)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f'cannot read image {path}: missing, unreadable or not an image file')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_kitti_timestamp(line: str) -> int:
    """``2011-09-26 13:02:25.964389445`` (UTC assumed) as nanoseconds since the Unix epoch."""
    text = line.strip()
    whole, _, fraction = text.partition('.')
    try:
        moment = datetime.datetime.strptime(whole, '%Y-%m-%d %H:%M:%S')
        if not fraction.isdigit() or len(fraction) > 9:
            raise ValueError(fraction)
    except ValueError:
        raise DatasetError(f'bad KITTI timestamp {text!r}; expected YYYY-MM-DD HH:MM:SS.fffffffff') from None
    seconds = int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())
    return seconds * NS_PER_S + int(fraction.ljust(9, '0'))


def read_timestamps(path: Path) -> List[int]:
    """Every line of a KITTI ``timestamps.txt`` in nanoseconds (line i belongs to frame i)."""
    return [parse_kitti_timestamp(line) for line in path.read_text().splitlines() if line.strip()]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f'{what} folder not found: {path}')
    return path


def _stems(folder: Path, suffix: str) -> List[str]:
    return sorted(p.stem for p in folder.glob('*' + suffix))


def _require_files(paths: Sequence[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
        raise DatasetError(f'missing KITTI file {missing[0]}{more}')


class KittiObjectDataset:
    """Frames of the KITTI object benchmark layout: ``<root>/<split>/{image_2,velodyne,calib}``.

    Args:
        root: the folder holding the splits (e.g. ``.../kitti_object``).
        split: ``training`` or ``testing`` (any sub-folder name works).
        frames: frame names (``'000003'``) or integer ids (``3``) to keep, in that order;
            default every ``image_2/*.png``.
    """

    def __init__(self, root: PathLike, split: str = 'training',
                 frames: Optional[Sequence[Union[str, int]]] = None) -> None:
        self.split_dir = _require_dir(Path(root) / split, f'KITTI object split {split!r}')
        self.image_dir = _require_dir(self.split_dir / 'image_2', 'KITTI object image_2')
        self.velodyne_dir = _require_dir(self.split_dir / 'velodyne', 'KITTI object velodyne')
        self.calib_dir = _require_dir(self.split_dir / 'calib', 'KITTI object calib')
        if frames is None:
            names = _stems(self.image_dir, '.png')
            if not names:
                raise DatasetError(f'no .png images in {self.image_dir}')
        else:
            names = [f'{name:06d}' if isinstance(name, int) else str(name) for name in frames]
        for name in names:
            _require_files([self._image_path(name), self._points_path(name), self._calib_path(name)])
        self.names: List[str] = names

    def _image_path(self, name: str) -> Path:
        return self.image_dir / f'{name}.png'

    def _points_path(self, name: str) -> Path:
        return self.velodyne_dir / f'{name}.bin'

    def _calib_path(self, name: str) -> Path:
        return self.calib_dir / f'{name}.txt'

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> SensorFrame:
        name = self.names[index]
        image = read_rgb(self._image_path(name))
        height, width = image.shape[:2]
        calib = Calibration.from_kitti_object(self._calib_path(name), image_size=(width, height))
        stamp = NOMINAL_START_NS + (index % len(self)) * NOMINAL_PERIOD_NS
        return SensorFrame(image=image, points=read_points(self._points_path(name)), calib=calib,
                           image_stamp_ns=stamp, lidar_stamp_ns=stamp, name=name)

    def __iter__(self) -> Iterator[SensorFrame]:
        return (self[i] for i in range(len(self)))


class KittiRawDrive:
    """Frames of one synced KITTI raw drive, with stamps from its ``timestamps.txt`` files.

    Without timestamp files the frames get nominal 10 Hz stamps (frame number x 100 ms from
    NOMINAL_START_NS) for both sensors, and a warning says so.

    Args:
        drive_dir: ``.../2011_09_26/2011_09_26_drive_0001_sync``.
        calib_dir: the date folder with ``calib_cam_to_cam.txt`` and ``calib_velo_to_cam.txt``.
        camera: KITTI camera number (2 = left colour).
    """

    def __init__(self, drive_dir: PathLike, calib_dir: PathLike, camera: int = 2) -> None:
        self.drive_dir = _require_dir(Path(drive_dir), 'KITTI raw drive')
        camera_dir = _require_dir(self.drive_dir / f'image_0{camera}', f'KITTI raw camera {camera}')
        lidar_dir = _require_dir(self.drive_dir / 'velodyne_points', 'KITTI raw velodyne_points')
        self.image_dir = _require_dir(camera_dir / 'data', f'KITTI raw image_0{camera}/data')
        self.velodyne_dir = _require_dir(lidar_dir / 'data', 'KITTI raw velodyne_points/data')
        self.calib = Calibration.from_kitti_raw(_require_dir(Path(calib_dir), 'KITTI raw calibration'),
                                                camera=camera)
        self.names: List[str] = _stems(self.image_dir, '.png')
        if not self.names:
            raise DatasetError(f'no .png images in {self.image_dir}')
        odd = [name for name in self.names if not name.isdigit()]
        if odd:
            raise DatasetError(f'{self.image_dir}/{odd[0]}.png: KITTI raw frames are named by their '
                               'number (0000000000.png); rename or remove the other files')
        _require_files([self.velodyne_dir / f'{name}.bin' for name in self.names])
        image_stamps = self._stamps(camera_dir / 'timestamps.txt')
        lidar_stamps = self._stamps(lidar_dir / 'timestamps.txt')
        # Real and nominal stamps live on different time bases: one missing file makes both nominal.
        self.timestamps_nominal = image_stamps is None or lidar_stamps is None
        if self.timestamps_nominal:
            warnings.warn(f'{self.drive_dir}: no image_0{camera}/timestamps.txt or '
                          'velodyne_points/timestamps.txt; using nominal 10 Hz stamps', stacklevel=2)
            image_stamps = lidar_stamps = [NOMINAL_START_NS + int(name) * NOMINAL_PERIOD_NS
                                           for name in self.names]
        self.image_stamps: List[int] = image_stamps
        self.lidar_stamps: List[int] = lidar_stamps

    def _stamps(self, path: Path) -> Optional[List[int]]:
        """The stamps of this drive's frames from ``path``, or None when the file is absent."""
        if not path.is_file():
            return None
        stamps = read_timestamps(path)
        last = max(int(name) for name in self.names)
        if last >= len(stamps):
            raise DatasetError(f'{path} has {len(stamps)} lines but frame {last:010d} exists; '
                               'the timestamp file belongs to another drive or is truncated')
        return [stamps[int(name)] for name in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> SensorFrame:
        name = self.names[index]
        image = read_rgb(self.image_dir / f'{name}.png')
        self.calib.check_image_size(image.shape[1], image.shape[0])
        return SensorFrame(image=image, points=read_points(self.velodyne_dir / f'{name}.bin'),
                           calib=self.calib, image_stamp_ns=self.image_stamps[index],
                           lidar_stamp_ns=self.lidar_stamps[index], name=name)

    def __iter__(self) -> Iterator[SensorFrame]:
        return (self[i] for i in range(len(self)))
