"""Camera + LiDAR rosbag2 files (MCAP or sqlite3) written and read without a ROS install.

A sensor bag holds three topics, every message stamped (header and bag time) at acquisition:

=========================  ===========================  =========  ==============================
topic                      type                         frame_id   content
=========================  ===========================  =========  ==============================
``/camera/image_raw``      sensor_msgs/msg/Image        camera     rgb8 (or bgr8), packed rows
``/camera/camera_info``    sensor_msgs/msg/CameraInfo   camera     K, D, R, P; one per image
``/lidar/points``          sensor_msgs/msg/PointCloud2  lidar      x, y, z, intensity float32[, ring uint16]
=========================  ===========================  =========  ==============================

CameraInfo has no field for the LiDAR extrinsic, so :func:`write_sensor_bag` also writes the full
calibration as YAML (``<bag>/calibration.yaml`` by default; rosbag2 tools ignore extra files).

Reading is split in two steps: :func:`read_sensor_bag` yields raw, time-ordered events and
:func:`pair_frames` pairs each image with the scan nearest in stamp into :class:`SensorFrame`.
"""
from __future__ import annotations

import functools
import math
import shutil
import sys
import warnings
from collections import deque
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Deque, Dict, Iterable, Iterator, NamedTuple, Optional, Tuple, Union

import numpy as np

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError, ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.ros import conversions

PathLike = Union[str, Path]

IMAGE_TOPIC = '/camera/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'
LIDAR_TOPIC = '/lidar/points'
CAMERA_FRAME = 'camera'
LIDAR_FRAME = 'lidar'
CALIBRATION_FILE = 'calibration.yaml'

IMAGE_TYPE = 'sensor_msgs/msg/Image'
CAMERA_INFO_TYPE = 'sensor_msgs/msg/CameraInfo'
POINTCLOUD_TYPE = 'sensor_msgs/msg/PointCloud2'

# Event kinds yielded by read_sensor_bag.
IMAGE = 'image'
SCAN = 'scan'
CAMERA_INFO = 'camera_info'

STORAGES = ('mcap', 'sqlite3')
# rosbag2 metadata format: 9 is what ROS 2 Jazzy and newer write.
BAG_VERSION = 9
WRITE_ENCODINGS = ('rgb8', 'bgr8')
# One period of a 10 Hz LiDAR: an image farther than this from every scan is skipped.
DEFAULT_MAX_TIME_DELTA_NS = 100_000_000
# Scans kept for pairing; more than enough for a camera a few times faster than the LiDAR.
SCAN_HISTORY = 16


class BagEvent(NamedTuple):
    """One message of a sensor bag.

    ``payload`` is an H x W x 3 uint8 RGB array (IMAGE), an N x 4 or N x 5 float32 array of
    x, y, z, intensity[, ring] (SCAN), or the CameraInfo message itself (CAMERA_INFO).
    """

    kind: str
    stamp_ns: int
    payload: Any
    frame_id: str


@dataclass(frozen=True)
class BagWriteSummary:
    """What :func:`write_sensor_bag` wrote."""

    path: str
    storage: str
    frames: int
    scans: int
    start_ns: int
    end_ns: int
    calibration_path: str

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags typestore used for sensor bags (the sensor_msgs types are equal in Humble..Kilted)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


# --- writing ----------------------------------------------------------------------------------

def write_sensor_bag(out_path: PathLike, frames: Iterable[SensorFrame], storage: str = 'mcap',
                     image_encoding: str = 'rgb8',
                     calibration_out: Optional[PathLike] = None) -> BagWriteSummary:
    """Write ``frames`` to a new rosbag2 directory ``out_path`` with the three sensor topics.

    Each frame gives an Image and a CameraInfo at ``image_stamp_ns`` and a PointCloud2 at
    ``lidar_stamp_ns``; a frame whose LiDAR stamp equals the previous frame's does not write its
    scan again (a camera faster than the LiDAR). The first frame's calibration goes to
    ``calibration_out`` (default ``<out_path>/calibration.yaml``); later frames with another
    extrinsic raise a warning, as one file cannot describe them. A failed write removes the bag.

    Raises:
        DatasetError: ``out_path`` exists, unknown storage, no frames.
        ImageFormatError: an encoding other than rgb8/bgr8, or a bad image.
        PointCloudError: a bad scan.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    out_path = Path(out_path)
    if storage not in STORAGES:
        raise DatasetError(f'unknown rosbag2 storage {storage!r}; choose one of {", ".join(STORAGES)}')
    if image_encoding not in WRITE_ENCODINGS:
        raise ImageFormatError(f'cannot write images as {image_encoding!r}; choose one of '
                               f'{", ".join(WRITE_ENCODINGS)}')
    if out_path.exists():
        raise DatasetError(f'{out_path} exists already; rosbag2 writers never overwrite: pick a new '
                           'path or delete the old bag')
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise DatasetError(f'no frames to write to {out_path}')
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    writer = Writer(out_path, version=BAG_VERSION, storage_plugin=plugin)
    progress = tqdm(chain([first], frames), unit='frame', desc=f'writing {out_path.name}',
                    disable=not sys.stderr.isatty())
    try:
        with writer:
            counts = _write_frames(writer, progress, image_encoding)
        calibration_path = Path(calibration_out) if calibration_out else out_path / CALIBRATION_FILE
        first.calib.to_yaml(calibration_path)
    except BaseException:
        shutil.rmtree(out_path, ignore_errors=True)
        raise
    finally:
        progress.close()
    return BagWriteSummary(path=str(out_path), storage=storage, calibration_path=str(calibration_path),
                           **counts)


def _write_frames(writer: Any, frames: Iterable[SensorFrame], image_encoding: str) -> Dict[str, int]:
    """Serialise every frame into ``writer``; returns the counts and the stamp range."""
    store = typestore()
    types = {name: store.types[name] for name in (IMAGE_TYPE, CAMERA_INFO_TYPE, POINTCLOUD_TYPE)}
    header_type = store.types['std_msgs/msg/Header']
    connections = {name: writer.add_connection(topic, name, typestore=store) for topic, name in (
        (IMAGE_TOPIC, IMAGE_TYPE), (CAMERA_INFO_TOPIC, CAMERA_INFO_TYPE), (LIDAR_TOPIC, POINTCLOUD_TYPE))}
    counts = {'frames': 0, 'scans': 0, 'start_ns': 2 ** 63, 'end_ns': 0}
    first_extrinsic: Optional[np.ndarray] = None
    previous_lidar_stamp: Optional[int] = None
    for frame in frames:
        if first_extrinsic is None:
            first_extrinsic = frame.calib.T_cam_lidar
        elif not np.array_equal(frame.calib.T_cam_lidar, first_extrinsic):
            warnings.warn(f'frame {frame.name!r} has another LiDAR extrinsic than the first frame; '
                          f'{CALIBRATION_FILE} holds only the first', stacklevel=3)
            first_extrinsic = frame.calib.T_cam_lidar
        camera_header = conversions.make_header(frame.image_stamp_ns, CAMERA_FRAME, header_type)
        image = frame.image[..., ::-1] if image_encoding == 'bgr8' else frame.image
        messages = [
            (frame.image_stamp_ns, conversions.numpy_to_image(
                image, image_encoding, camera_header, types[IMAGE_TYPE])),
            (frame.image_stamp_ns, conversions.camera_info_from_calibration(
                frame.calib, camera_header, types[CAMERA_INFO_TYPE])),
        ]
        if frame.lidar_stamp_ns != previous_lidar_stamp:
            lidar_header = conversions.make_header(frame.lidar_stamp_ns, LIDAR_FRAME, header_type)
            messages.append((frame.lidar_stamp_ns, conversions.numpy_to_pointcloud2(
                frame.points, lidar_header, msg_type=types[POINTCLOUD_TYPE])))
            previous_lidar_stamp = frame.lidar_stamp_ns
            counts['scans'] += 1
        # Stable sort: within a stamp the image precedes its CameraInfo.
        for stamp, msg in sorted(messages, key=lambda item: item[0]):
            writer.write(connections[msg.__msgtype__], stamp, store.serialize_cdr(msg, msg.__msgtype__))
            counts['start_ns'] = min(counts['start_ns'], stamp)
            counts['end_ns'] = max(counts['end_ns'], stamp)
        counts['frames'] += 1
    return counts


# --- reading ----------------------------------------------------------------------------------

def _open_reader(path: Path) -> Any:
    from rosbags.rosbag2 import Reader, ReaderError

    if not path.exists():
        raise DatasetError(f'rosbag not found: {path}')
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, FileNotFoundError) as exc:
        raise DatasetError(f'cannot read rosbag {path}: {exc}') from None
    return reader


def bag_topics(path: PathLike) -> Dict[str, Tuple[str, int]]:
    """Every topic of a rosbag2 (directory, .mcap or .db3) as ``topic -> (msgtype, message count)``."""
    reader = _open_reader(Path(path))
    try:
        return {topic: (info.msgtype, info.msgcount) for topic, info in reader.topics.items()}
    finally:
        reader.close()


def read_sensor_bag(path: PathLike, image_topic: str = IMAGE_TOPIC, lidar_topic: str = LIDAR_TOPIC,
                    info_topic: Optional[str] = CAMERA_INFO_TOPIC) -> Iterator[BagEvent]:
    """The image, scan and camera-info messages of a bag as :class:`BagEvent`, in bag-time order.

    The topics are checked before this returns; messages are decoded while iterating. Stamps
    are the header stamps (the bag time when a header stamp is zero). Images of any encoding
    that :func:`conversions.image_to_rgb` knows become RGB; scans keep ``ring`` when present.
    Payload arrays are owned and writable. Pass ``info_topic=None`` for bags without CameraInfo.

    Raises:
        DatasetError: missing bag, a topic missing or of the wrong type (the message lists the
            bag's topics), no LiDAR messages, and (while iterating) undecodable images or scans.
    """
    path = Path(path)
    topics = bag_topics(path)
    wanted = {image_topic: (IMAGE, IMAGE_TYPE), lidar_topic: (SCAN, POINTCLOUD_TYPE)}
    if info_topic is not None:
        wanted[info_topic] = (CAMERA_INFO, CAMERA_INFO_TYPE)
    listing = ', '.join(f'{topic} ({msgtype}, {count} messages)'
                        for topic, (msgtype, count) in topics.items())
    for topic, (kind, msgtype) in wanted.items():
        if topic not in topics:
            raise DatasetError(f'rosbag {path} has no {kind} topic {topic!r}; its topics: '
                               f'{listing or "none"}')
        if topics[topic][0] != msgtype:
            raise DatasetError(f'rosbag {path} topic {topic!r} carries {topics[topic][0]}, '
                               f'expected {msgtype}')
    if topics[lidar_topic][1] == 0:
        raise DatasetError(f'rosbag {path} has no LiDAR messages on {lidar_topic!r}')
    return _events(path, wanted)


def _events(path: Path, wanted: Dict[str, Tuple[str, str]]) -> Iterator[BagEvent]:
    store = typestore()
    reader = _open_reader(path)
    try:
        connections = [c for c in reader.connections if c.topic in wanted]
        for connection, bag_stamp, raw in reader.messages(connections=connections):
            kind = wanted[connection.topic][0]
            msg = store.deserialize_cdr(raw, connection.msgtype)
            stamp = conversions.stamp_to_ns(msg.header.stamp) or bag_stamp
            try:
                payload = _payload(kind, msg)
            except (ImageFormatError, PointCloudError) as exc:
                raise DatasetError(
                    f'rosbag {path}: {kind} on {connection.topic!r} at {stamp} ns: {exc}') from exc
            yield BagEvent(kind, stamp, payload, msg.header.frame_id)
    finally:
        reader.close()


def _payload(kind: str, msg: Any) -> Any:
    if kind == CAMERA_INFO:
        return msg
    if kind == IMAGE:
        array = conversions.image_to_rgb(msg)
    else:
        fields = ('x', 'y', 'z', 'intensity') + (
            ('ring',) if 'ring' in conversions.pointcloud2_fields(msg) else ())
        array = conversions.pointcloud2_to_numpy(msg, fields=fields)
    # Deserialised messages are views of the bag's read-only bytes: hand out owned arrays.
    return array if array.flags.writeable and array.flags.owndata else np.array(array)


# --- pairing ----------------------------------------------------------------------------------

class _CameraInfoCalibration:
    """Calibration from the latest CameraInfo plus a fixed extrinsic, rebuilt only when K/D/R/P change."""

    def __init__(self, T_cam_lidar: Optional[np.ndarray]) -> None:
        self.T_cam_lidar = T_cam_lidar
        self.info: Any = None
        self.calib: Optional[Calibration] = None

    def update(self, info: Any) -> None:
        if self.info is not None and _same_camera_info(self.info, info):
            return
        self.info = info
        if self.T_cam_lidar is not None:
            self.calib = Calibration.from_camera_info(info, self.T_cam_lidar)

    def current(self) -> Calibration:
        if self.calib is not None:
            return self.calib
        if self.info is None:
            raise DatasetError('no CameraInfo before the first image and no calib given: pass calib= '
                               '(e.g. load_bag_calibration(bag)) or read the CameraInfo topic')
        raise DatasetError('CameraInfo carries no LiDAR extrinsic: pass T_cam_lidar= (4x4 LiDAR to '
                           'camera) or a full calib= (e.g. load_bag_calibration(bag))')


def _same_camera_info(a: Any, b: Any) -> bool:
    return (a.width, a.height, a.distortion_model) == (b.width, b.height, b.distortion_model) and all(
        np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name))) for name in 'kdrp')


class _Pairer:
    """The buffers of :func:`pair_frames`: recent scans and images still waiting for their scan."""

    def __init__(self, calib: Optional[Calibration], T_cam_lidar: Optional[np.ndarray],
                 max_time_delta_ns: int) -> None:
        self.calib = calib
        self.from_info = _CameraInfoCalibration(None if T_cam_lidar is None else np.asarray(T_cam_lidar))
        self.max_time_delta_ns = max_time_delta_ns
        self.scans: Deque[Tuple[int, np.ndarray]] = deque(maxlen=SCAN_HISTORY)
        self.pending: Deque[Tuple[int, np.ndarray]] = deque()
        self.emitted = 0
        self.skipped = 0

    def settle(self, limit_ns: float) -> Iterator[SensorFrame]:
        """Pair every waiting image stamped at or before ``limit_ns``."""
        while self.pending and self.pending[0][0] <= limit_ns:
            stamp, image = self.pending.popleft()
            scan = self._nearest_scan(stamp)
            if scan is None:
                self.skipped += 1
                continue
            calib = self.from_info.current() if self.calib is None else self.calib
            calib.check_image_size(image.shape[1], image.shape[0])
            yield SensorFrame(image=image, points=scan[1], calib=calib, image_stamp_ns=stamp,
                              lidar_stamp_ns=scan[0], name=f'{self.emitted:06d}')
            self.emitted += 1

    def _nearest_scan(self, stamp: int) -> Optional[Tuple[int, np.ndarray]]:
        """The buffered scan nearest to ``stamp`` within reach; on a tie the later one."""
        in_reach = [scan for scan in self.scans if abs(scan[0] - stamp) <= self.max_time_delta_ns]
        return min(in_reach, key=lambda scan: (abs(scan[0] - stamp), -scan[0]), default=None)


def pair_frames(events: Iterable[BagEvent], calib: Optional[Calibration] = None,
                T_cam_lidar: Optional[np.ndarray] = None,
                max_time_delta_ns: int = DEFAULT_MAX_TIME_DELTA_NS) -> Iterator[SensorFrame]:
    """Pair each image with the scan nearest in stamp (before or after it) into SensorFrames.

    An image waits until a scan at or after its stamp arrives, or until the events have moved
    more than ``max_time_delta_ns`` past it; ties go to the later scan (a spinning LiDAR stamps
    at the end of its sweep). Images without a scan within ``max_time_delta_ns`` are skipped,
    with one warning at the end. A scan may serve several images. The calibration is ``calib``
    if given, else the latest CameraInfo combined with ``T_cam_lidar``. Frames are named by their
    index in the output.

    Raises:
        DatasetError: an image needs a calibration that neither ``calib`` nor the CameraInfo
            plus ``T_cam_lidar`` provide.
        CalibrationError: an image whose size differs from the calibration's.
    """
    pairer = _Pairer(calib, T_cam_lidar, max_time_delta_ns)
    for event in events:
        if event.kind == CAMERA_INFO:
            pairer.from_info.update(event.payload)
        elif event.kind == SCAN:
            pairer.scans.append((event.stamp_ns, event.payload))
            # Later scans are farther from the images stamped at or before this one.
            yield from pairer.settle(event.stamp_ns)
        elif event.kind == IMAGE:
            pairer.pending.append((event.stamp_ns, event.payload))
        # Events come in time order: no later scan can reach images this old.
        yield from pairer.settle(event.stamp_ns - max_time_delta_ns - 1)
    yield from pairer.settle(math.inf)
    if pairer.skipped:
        warnings.warn(f'{pairer.skipped} image(s) had no LiDAR scan within '
                      f'{max_time_delta_ns / 1e6:g} ms and were skipped', stacklevel=2)


def load_bag_calibration(path: PathLike) -> Calibration:
    """The calibration written beside a sensor bag (``<bag>/calibration.yaml``)."""
    yaml_path = Path(path) / CALIBRATION_FILE
    if not yaml_path.is_file():
        raise DatasetError(f'{yaml_path} not found: pass the calibration explicitly (the bag was not '
                           'written by write_sensor_bag, or its calibration was written elsewhere)')
    return Calibration.from_yaml(yaml_path)


def read_sensor_frames(path: PathLike, calib: Optional[Calibration] = None,
                       max_time_delta_ns: int = DEFAULT_MAX_TIME_DELTA_NS) -> Iterator[SensorFrame]:
    """SensorFrames of a bag written by :func:`write_sensor_bag` (default topics).

    The calibration is ``calib`` or, by default, ``<bag>/calibration.yaml`` (so the per-message
    CameraInfo is not needed).
    """
    calib = calib or load_bag_calibration(path)
    return pair_frames(read_sensor_bag(path, info_topic=None), calib=calib,
                       max_time_delta_ns=max_time_delta_ns)
