"""rosbag2 sensor bags: write/read round trips on MCAP and sqlite3, pairing, and every error."""
import warnings

import numpy as np
import pytest

from xmodal_compress_ros.data import rosbag_io as rb
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import CalibrationError, DatasetError, ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration

START = 1_700_000_000_000_000_000
MS = 1_000_000


def _calibration(width=8, height=6, tx=0.0):
    P = np.array([[10.0, 0, 4, 0.5], [0, 10.0, 3, 0.1], [0, 0, 1, 0.002]])
    T = np.eye(4)
    T[:3, 3] = (tx, -0.1, 0.3)
    return Calibration(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=T)


def _frames(count=4, columns=5, lidar_every=1, calib=None):
    """Small random frames at 10 Hz; with lidar_every=2 two images share each scan."""
    rng = np.random.default_rng(0)
    calib = calib or _calibration()
    frames = []
    for i in range(count):
        points = rng.normal(0, 10, (50 + i, columns)).astype(np.float32)
        if columns == 5:
            points[:, 4] = rng.integers(0, 64, len(points))
        frames.append(SensorFrame(
            image=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), points=points, calib=calib,
            image_stamp_ns=START + i * 100 * MS + 3 * MS,
            lidar_stamp_ns=START + (i // lidar_every) * lidar_every * 100 * MS, name=f'{i:06d}'))
    if lidar_every > 1:  # frames sharing a stamp share the scan too
        for i, frame in enumerate(frames):
            frame.points = frames[i - i % lidar_every].points
    return frames


@pytest.mark.parametrize('storage', rb.STORAGES)
def test_round_trip_is_bit_exact(tmp_path, storage):
    frames = _frames()
    summary = rb.write_sensor_bag(tmp_path / 'bag', frames, storage=storage)
    assert (summary.frames, summary.scans, summary.storage) == (4, 4, storage)
    assert summary.start_ns == START and summary.duration_s == pytest.approx(0.303)
    assert rb.bag_topics(tmp_path / 'bag') == {
        rb.IMAGE_TOPIC: (rb.IMAGE_TYPE, 4), rb.CAMERA_INFO_TOPIC: (rb.CAMERA_INFO_TYPE, 4),
        rb.LIDAR_TOPIC: (rb.POINTCLOUD_TYPE, 4)}
    back = list(rb.read_sensor_frames(tmp_path / 'bag'))
    assert len(back) == 4
    for written, read in zip(frames, back):
        np.testing.assert_array_equal(read.image, written.image)
        np.testing.assert_array_equal(read.points, written.points)
        assert read.points.dtype == np.float32 and read.image.flags.writeable and read.points.flags.writeable
        assert (read.image_stamp_ns, read.lidar_stamp_ns) == (written.image_stamp_ns, written.lidar_stamp_ns)
        assert read.calib == written.calib


@pytest.mark.parametrize('storage', rb.STORAGES)
def test_raw_events(tmp_path, storage):
    frames = _frames(count=2, columns=4)
    rb.write_sensor_bag(tmp_path / 'bag', frames, storage=storage, image_encoding='bgr8')
    events = list(rb.read_sensor_bag(tmp_path / 'bag'))
    assert [e.kind for e in events] == [rb.SCAN, rb.IMAGE, rb.CAMERA_INFO] * 2
    assert [e.frame_id for e in events[:3]] == [rb.LIDAR_FRAME, rb.CAMERA_FRAME, rb.CAMERA_FRAME]
    assert [e.stamp_ns for e in events[:3]] == [START, START + 3 * MS, START + 3 * MS]
    np.testing.assert_array_equal(events[1].payload, frames[0].image)  # bgr8 in the bag, RGB out
    assert events[0].payload.shape == (50, 4)
    info = events[2].payload
    assert info.distortion_model == 'plumb_bob' and Calibration.from_camera_info(
        info, frames[0].calib.T_cam_lidar) == frames[0].calib


def test_pairing_from_camera_info_plus_extrinsic(tmp_path):
    frames = _frames(count=3)
    rb.write_sensor_bag(tmp_path / 'bag', frames)
    T = frames[0].calib.T_cam_lidar
    back = list(rb.pair_frames(rb.read_sensor_bag(tmp_path / 'bag'), T_cam_lidar=T))
    assert [f.calib for f in back] == [frames[0].calib] * 3
    assert back[0].calib is back[2].calib  # rebuilt only when the CameraInfo changes
    with pytest.raises(DatasetError, match='T_cam_lidar'):
        list(rb.pair_frames(rb.read_sensor_bag(tmp_path / 'bag')))
    with pytest.raises(DatasetError, match='no CameraInfo'):
        list(rb.pair_frames(rb.read_sensor_bag(tmp_path / 'bag', info_topic=None), T_cam_lidar=T))


def test_camera_faster_than_lidar_writes_each_scan_once(tmp_path):
    frames = _frames(count=6, lidar_every=2)
    summary = rb.write_sensor_bag(tmp_path / 'bag', frames, storage='sqlite3')
    assert (summary.frames, summary.scans) == (6, 3)
    assert rb.bag_topics(tmp_path / 'bag')[rb.LIDAR_TOPIC] == (rb.POINTCLOUD_TYPE, 3)
    back = list(rb.read_sensor_frames(tmp_path / 'bag', max_time_delta_ns=200 * MS))
    # Images at 3, 103, ..., 503 ms, scans at 0, 200, 400 ms: the nearest scan, before or after.
    assert [f.lidar_stamp_ns - START for f in back] == [0, 200 * MS, 200 * MS, 400 * MS, 400 * MS, 400 * MS]
    scans = {frame.lidar_stamp_ns: frame.points for frame in frames}
    for read in back:
        np.testing.assert_array_equal(read.points, scans[read.lidar_stamp_ns])


def test_calibration_written_elsewhere_and_extrinsic_change_warns(tmp_path):
    frames = _frames(count=2)
    frames[1].calib = _calibration(tx=0.5)
    with pytest.warns(UserWarning, match='another LiDAR extrinsic'):
        summary = rb.write_sensor_bag(tmp_path / 'bag', frames, calibration_out=tmp_path / 'calib.yaml')
    assert summary.calibration_path == str(tmp_path / 'calib.yaml')
    assert Calibration.from_yaml(tmp_path / 'calib.yaml') == frames[0].calib
    with pytest.raises(DatasetError, match='calibration.yaml not found'):
        rb.load_bag_calibration(tmp_path / 'bag')


def _event(kind, stamp_ms, payload=None):
    return rb.BagEvent(kind, START + stamp_ms * MS, payload, '')


def _image(value):
    return np.full((6, 8, 3), value, np.uint8)


def test_pair_frames_nearest_either_side_and_ties():
    scans = {stamp: np.full((1, 4), stamp, np.float32) for stamp in (0, 100, 200)}
    events = [_event(rb.IMAGE, -20, _image(0)), _event(rb.SCAN, 0, scans[0]),
              _event(rb.IMAGE, 40, _image(1)), _event(rb.IMAGE, 60, _image(2)),
              _event(rb.SCAN, 100, scans[100]), _event(rb.IMAGE, 150, _image(3)),
              _event(rb.SCAN, 200, scans[200])]
    frames = list(rb.pair_frames(events, calib=_calibration()))
    assert [f.lidar_stamp_ns - START for f in frames] == [0, 0, 100 * MS, 200 * MS]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 2, 3]
    assert [f.name for f in frames] == ['000000', '000001', '000002', '000003']


def test_pair_frames_skips_images_without_scan_within_reach():
    events = [_event(rb.SCAN, 0, np.zeros((1, 4), np.float32)), _event(rb.IMAGE, 30, _image(1)),
              _event(rb.IMAGE, 500, _image(2)), _event(rb.IMAGE, 900, _image(3))]
    with pytest.warns(UserWarning, match='2 image'):
        frames = list(rb.pair_frames(events, calib=_calibration(), max_time_delta_ns=50 * MS))
    assert [int(f.image[0, 0, 0]) for f in frames] == [1]


def test_pair_frames_checks_image_size():
    events = [_event(rb.SCAN, 0, np.zeros((1, 4), np.float32)), _event(rb.IMAGE, 0, _image(0))]
    with pytest.raises(CalibrationError, match='8x6'):
        list(rb.pair_frames(events, calib=_calibration(width=10)))


def test_write_errors(tmp_path):
    (tmp_path / 'exists').mkdir()
    with pytest.raises(DatasetError, match='exists already'):
        rb.write_sensor_bag(tmp_path / 'exists', _frames(1))
    with pytest.raises(DatasetError, match='mcap, sqlite3'):
        rb.write_sensor_bag(tmp_path / 'a', _frames(1), storage='bag')
    with pytest.raises(ImageFormatError, match='rgb8, bgr8'):
        rb.write_sensor_bag(tmp_path / 'a', _frames(1), image_encoding='mono8')
    with pytest.raises(DatasetError, match='no frames'):
        rb.write_sensor_bag(tmp_path / 'a', [])
    frames = _frames(3)
    frames[2].points = np.zeros((5, 2), np.float32)
    with pytest.raises(PointCloudError):
        rb.write_sensor_bag(tmp_path / 'a', frames)
    assert not (tmp_path / 'a').exists()  # a failed write leaves nothing behind


def test_read_errors(tmp_path, custom_bag):
    with pytest.raises(DatasetError, match='rosbag not found'):
        rb.read_sensor_bag(tmp_path / 'missing')
    (tmp_path / 'empty_dir').mkdir()
    with pytest.raises(DatasetError, match='cannot read rosbag'):
        rb.bag_topics(tmp_path / 'empty_dir')

    custom_bag(tmp_path / 'renamed', lidar_topic='/velodyne_points')
    with pytest.raises(DatasetError, match=r"no scan topic '/lidar/points'.*/velodyne_points \(sensor_msgs"):
        rb.read_sensor_bag(tmp_path / 'renamed', info_topic=None)
    assert len(list(rb.read_sensor_bag(tmp_path / 'renamed', lidar_topic='/velodyne_points',
                                       info_topic=None))) == 2
    with pytest.raises(DatasetError, match="no camera_info topic '/camera/camera_info'"):
        rb.read_sensor_bag(tmp_path / 'renamed', lidar_topic='/velodyne_points')

    custom_bag(tmp_path / 'silent', lidar_messages=0)
    with pytest.raises(DatasetError, match='no LiDAR messages'):
        rb.read_sensor_bag(tmp_path / 'silent', info_topic=None)

    custom_bag(tmp_path / 'wrongtype', lidar_type=rb.IMAGE_TYPE)
    with pytest.raises(DatasetError, match='carries sensor_msgs/msg/Image, expected .*PointCloud2'):
        rb.read_sensor_bag(tmp_path / 'wrongtype', info_topic=None)

    custom_bag(tmp_path / 'yuv', image_encoding='yuv422')
    events = rb.read_sensor_bag(tmp_path / 'yuv', info_topic=None)
    with pytest.raises(DatasetError, match="yuv422"):
        list(events)


def test_read_single_storage_file(tmp_path):
    rb.write_sensor_bag(tmp_path / 'bag', _frames(2), storage='mcap')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        events = list(rb.read_sensor_bag(tmp_path / 'bag' / 'bag.mcap'))
    assert len(events) == 6
