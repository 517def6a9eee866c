"""Training data sources named on the command line (``KIND:LOCATION``), turned into SensorFrames.

Kinds: ``kitti-object:DIR`` (a KITTI object split folder with image_2/velodyne/calib, or a root
holding ``training/``), ``kitti-raw:DRIVE_DIR,CALIB_DIR``, ``synthetic:DIR`` (the KITTI raw layout
written by ``xmodal synth``: every ``<date>/<drive>_sync`` below DIR, calibration in its date
folder), ``bag:PATH`` (a sensor rosbag written by ``xmodal kitti2bag``/``write_sensor_bag``) and
``photos:DIR`` (JPEG/PNG/WebP photographs without LiDAR, e.g. the wallpapers Debian packages ship:
general image statistics for the image backbone; they train with an all-zero depth map, which the
LiDAR model also sees under LiDAR dropout).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

from xmodal_compress_ros.errors import DatasetError

KINDS = ('kitti-object', 'kitti-raw', 'synthetic', 'bag', 'photos')
PHOTO_SUFFIXES = ('.jpg', '.jpeg', '.png', '.webp')
# Photographs are downscaled (area filter) so the longer side is at most this: wallpapers are 2-6k
# pixels wide, where a 256-pixel crop holds almost no structure; KITTI frames are 1242 wide.
PHOTO_MAX_SIDE = 1280


def frames_from_spec(spec: str) -> Iterator:
    """SensorFrames of one ``KIND:LOCATION`` source; frame names are prefixed with the source."""
    kind, sep, location = spec.partition(':')
    if not sep or kind not in KINDS or not location:
        raise DatasetError(f'data source {spec!r} must be KIND:LOCATION with KIND one of {list(KINDS)}, '
                           'e.g. kitti-object:/data/kitti_object/training')
    if kind == 'kitti-object':
        yield from _kitti_object(Path(location))
    elif kind == 'kitti-raw':
        drive, comma, calib = location.partition(',')
        if not comma:
            raise DatasetError(f'data source {spec!r}: kitti-raw needs DRIVE_DIR,CALIB_DIR')
        yield from _kitti_raw(Path(drive), Path(calib))
    elif kind == 'synthetic':
        drives = _synthetic_drives(Path(location))
        for drive in drives:
            yield from _kitti_raw(drive, drive.parent)
    elif kind == 'photos':
        yield from _photos(Path(location))
    else:
        from xmodal_compress_ros.data.rosbag_io import read_sensor_frames

        for i, frame in enumerate(read_sensor_frames(location)):
            frame.name = f'{Path(location).name}/{frame.name or i}'
            yield frame


def _kitti_object(path: Path) -> Iterator:
    from xmodal_compress_ros.data.kitti import KittiObjectDataset

    if (path / 'image_2').is_dir():
        dataset = KittiObjectDataset(path.parent, split=path.name)
    else:
        dataset = KittiObjectDataset(path, split='training')
    prefix = f'{dataset.split_dir.parent.name}/{dataset.split_dir.name}'
    for frame in dataset:
        frame.name = f'{prefix}/{frame.name}'
        yield frame


def _kitti_raw(drive: Path, calib: Path) -> Iterator:
    from xmodal_compress_ros.data.kitti import KittiRawDrive

    for frame in KittiRawDrive(drive, calib):
        frame.name = f'{drive.name}/{frame.name}'
        yield frame


def _synthetic_drives(root: Path) -> List[Path]:
    drives = sorted(p for p in root.glob('*/*_sync') if p.is_dir())
    if not drives:
        raise DatasetError(f'no <date>/<drive>_sync folders under {root}: give the folder written by '
                           '`xmodal synth`')
    return drives


def _photos(root: Path) -> Iterator:
    """Every photograph below ``root`` as a SensorFrame with an empty scan (so an all-zero depth map)."""
    import cv2
    import numpy as np

    from xmodal_compress_ros.data.frames import SensorFrame
    from xmodal_compress_ros.data.synthetic.sequence import kitti_calibration

    paths = sorted(p for p in root.rglob('*') if p.suffix.lower() in PHOTO_SUFFIXES)
    if not paths:
        raise DatasetError(f'no {"/".join(PHOTO_SUFFIXES)} files under {root}')
    for path in paths:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f'{path} is not a readable image')
        scale = PHOTO_MAX_SIDE / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        height, width = bgr.shape[:2]
        yield SensorFrame(image=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), points=np.zeros((0, 4), np.float32),
                          calib=kitti_calibration(width, height), name=f'photos/{path.relative_to(root)}')
