"""The frames a benchmark runs on: KITTI folders, rosbags or synthetic scenes, cropped to one size.

A video stream has one image size, and every codec should see the same pixels, so frames of
slightly different sizes (KITTI object frames vary by a few pixels) are all cropped to the common
minimum by dropping right columns and bottom rows. That crop keeps the intrinsics valid.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError

KITTI_FPS = 10.0


@dataclass(frozen=True)
class BenchData:
    """Frames ready to benchmark, with what the report needs to say about them."""

    dataset: str                    # short name, e.g. 'kitti_object'
    source: str                     # path or generator description
    frames: Tuple[SensorFrame, ...]
    fps: float                      # frame rate used for kbit/s
    original_sizes: Tuple[Tuple[int, int], ...]  # (width, height) before the common crop
    sequential: bool                # consecutive frames of one recording (P modes make sense)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) of every frame."""
        height, width = self.frames[0].image.shape[:2]
        return width, height

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.frames]


def every_nth(data: BenchData, stride: int) -> BenchData:
    """Every ``stride``-th frame of ``data`` (a stand-in for driving ``stride`` times faster)."""
    if stride < 1:
        raise DatasetError(f'--frame-stride must be at least 1, got {stride}')
    if stride == 1:
        return data
    return dataclasses.replace(data, frames=data.frames[::stride], fps=data.fps / stride,
                               original_sizes=data.original_sizes[::stride],
                               source=f'{data.source}, every {stride}th frame')


def crop_to_common_size(frames: Sequence[SensorFrame]) -> List[SensorFrame]:
    """Crops every frame to the smallest width and height among them (right/bottom edges)."""
    width = min(f.image.shape[1] for f in frames)
    height = min(f.image.shape[0] for f in frames)
    out = []
    for f in frames:
        if f.image.shape[:2] == (height, width):
            out.append(f)
            continue
        calib = dataclasses.replace(f.calib, width=width, height=height)
        out.append(dataclasses.replace(f, image=f.image[:height, :width].copy(), calib=calib))
    return out


def _finish(dataset: str, source: str, frames: List[SensorFrame], fps: float, sequential: bool,
            limit: Optional[int]) -> BenchData:
    if limit is not None:
        if limit < 1:
            raise DatasetError(f'--frames must be at least 1, got {limit}')
        frames = frames[:limit]
    if not frames:
        raise DatasetError(f'{source}: no frames to benchmark')
    sizes = tuple((f.image.shape[1], f.image.shape[0]) for f in frames)
    return BenchData(dataset, source, tuple(crop_to_common_size(frames)), fps, sizes, sequential)


def frame_rate(frames: Sequence[SensorFrame], default: float) -> float:
    """Frames per second from the image stamps (median spacing), else ``default``."""
    stamps = sorted(f.image_stamp_ns for f in frames)
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:]) if b > a)
    return 1e9 / gaps[len(gaps) // 2] if gaps else default


def _find_raw_drive(root: Path) -> Optional[Path]:
    """The one KITTI raw drive (a folder with image_02/) at or below ``root`` (two levels deep)."""
    if (root / 'image_02').is_dir():
        return root
    drives = (sorted(p.parent for p in root.glob('*/image_02'))
              or sorted(p.parent for p in root.glob('*/*/image_02')))
    if len(drives) > 1:
        raise DatasetError(f'{root} holds {len(drives)} KITTI raw drives ({drives[0].name}, ...); '
                           'pass one drive folder to --kitti')
    return drives[0] if drives else None


def load_kitti(path: str, limit: Optional[int] = None) -> BenchData:
    """KITTI object layout (a root with ``training``/``testing``, or one split) or one raw drive."""
    from xmodal_compress_ros.data.kitti import KittiObjectDataset, KittiRawDrive
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f'--kitti {path}: not a folder; pass a KITTI object root or a raw drive folder')
    splits = [s for s in ('training', 'testing') if (root / s / 'image_2').is_dir()]
    if splits:
        frames = []
        for split in splits:
            for frame in KittiObjectDataset(root, split):
                frames.append(dataclasses.replace(frame, name=f'{split}/{frame.name}'))
                if limit is not None and len(frames) >= limit:
                    break
        return _finish(root.name, str(root), frames, KITTI_FPS, False, limit)
    if (root / 'image_2').is_dir():
        frames = list(KittiObjectDataset(root.parent, root.name))
        return _finish(root.parent.name, str(root), frames, KITTI_FPS, False, limit)
    drive = _find_raw_drive(root)
    if drive is None:
        raise DatasetError(f'--kitti {path}: found neither training/image_2, image_2 nor a raw drive '
                           '(<drive>/image_02); point it at a KITTI object root or raw drive')
    dataset = KittiRawDrive(drive, drive.parent)
    count = len(dataset) if limit is None else min(limit, len(dataset))
    frames = [dataset[i] for i in range(count)]
    return _finish('kitti_raw/' + drive.name, str(drive), frames, frame_rate(frames, KITTI_FPS), True, limit)


def load_bag(path: str, limit: Optional[int] = None, calib_path: Optional[str] = None,
             image_topic: Optional[str] = None, lidar_topic: Optional[str] = None,
             info_topic: Optional[str] = None) -> BenchData:
    """Camera + LiDAR frames of a rosbag2, paired by nearest stamp.

    The calibration is ``calib_path`` (YAML or KITTI calib), else ``<bag>/calibration.yaml``,
    else the bag's CameraInfo (which carries no LiDAR extrinsic: then a DatasetError says so).
    """
    from xmodal_compress_ros.data import rosbag_io
    from xmodal_compress_ros.geometry.calibration import load_calibration
    bag = Path(path)
    calib = None
    if calib_path:
        calib = load_calibration(calib_path)
    elif (bag / rosbag_io.CALIBRATION_FILE).is_file():
        calib = rosbag_io.load_bag_calibration(bag)
    events = rosbag_io.read_sensor_bag(
        bag, image_topic=image_topic or rosbag_io.IMAGE_TOPIC,
        lidar_topic=lidar_topic or rosbag_io.LIDAR_TOPIC,
        info_topic=None if calib is not None else (info_topic or rosbag_io.CAMERA_INFO_TOPIC))
    frames: List[SensorFrame] = []
    for frame in rosbag_io.pair_frames(events, calib=calib):
        frames.append(frame)
        if limit is not None and len(frames) >= limit:
            break
    if not frames:
        raise DatasetError(f'rosbag {path}: no image had a LiDAR scan within '
                           f'{rosbag_io.DEFAULT_MAX_TIME_DELTA_NS / 1e6:g} ms; check the stamps and topics')
    return _finish(bag.name, str(bag), frames, frame_rate(frames, KITTI_FPS), True, limit)


def load_synthetic(count: int, seed: int, limit: Optional[int] = None) -> BenchData:
    """``count`` consecutive frames of one synthetic drive (KITTI-sized camera, 64-beam LiDAR)."""
    from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive
    if count < 1:
        raise DatasetError(f'--synthetic needs at least 1 frame, got {count}')
    drive = SyntheticDrive(SynthConfig(frames=count if limit is None else min(count, limit), seed=seed))
    frames = list(drive)
    return _finish('synthetic', f'synthetic drive, seed {seed}', frames, frame_rate(frames, KITTI_FPS), True,
                   limit)
