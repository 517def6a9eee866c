"""Training data sources named on the command line (``KIND:LOCATION``), turned into SensorFrames.

Kinds: ``kitti-object:DIR`` (a KITTI object split folder with image_2/velodyne/calib, or a root
holding ``training/``), ``kitti-raw:DRIVE_DIR,CALIB_DIR``, ``synthetic:DIR`` (the KITTI raw layout
written by ``xmodal synth``: every ``<date>/<drive>_sync`` below DIR, calibration in its date
folder) and ``bag:PATH`` (a sensor rosbag written by ``xmodal kitti2bag``/``write_sensor_bag``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, List

from xmodal_compress_ros.errors import DatasetError

KINDS = ('kitti-object', 'kitti-raw', 'synthetic', 'bag')


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
