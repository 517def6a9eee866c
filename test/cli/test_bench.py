"""``xmodal bench`` end to end: a 2-frame KITTI run, option checks and clear errors for bad bags."""
import json

import numpy as np
import pytest

from xmodal_compress_ros.bench import sources
from xmodal_compress_ros.cli.__main__ import main
from xmodal_compress_ros.data import rosbag_io as rb
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

START = 1_700_000_000_000_000_000
MS = 1_000_000


def _calibration(width=8, height=6):
    P = np.array([[10.0, 0, 4, 0.0], [0, 10.0, 3, 0.0], [0, 0, 1, 0.0]])
    return Calibration(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=np.eye(4))


def _sensor_bag(path, lidar_offset_ms=0):
    rng = np.random.default_rng(0)
    frames = [SensorFrame(image=rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
                          points=rng.normal(0, 5, (20, 4)).astype(np.float32), calib=_calibration(),
                          image_stamp_ns=START + i * 100 * MS,
                          lidar_stamp_ns=START + i * 100 * MS + lidar_offset_ms * MS, name=str(i))
              for i in range(3)]
    rb.write_sensor_bag(path, frames)
    return path


def _custom_bag(custom_bag, path, **kwargs):
    """A bag ``write_sensor_bag`` refuses to produce, with the calibration the bench source needs."""
    custom_bag(path, **kwargs)
    _calibration().to_yaml(path / rb.CALIBRATION_FILE)
    return path


def test_bag_frames_load(tmp_path):
    data = sources.load_bag(str(_sensor_bag(tmp_path / 'good')), limit=2)
    assert len(data.frames) == 2 and data.size == (8, 6) and data.sequential
    assert data.fps == pytest.approx(10.0)


def test_bad_bags_raise_dataset_errors(tmp_path, custom_bag):
    with pytest.raises(DatasetError, match='rosbag not found'):
        sources.load_bag(str(tmp_path / 'missing'))
    good = _sensor_bag(tmp_path / 'good')
    with pytest.raises(DatasetError, match="no scan topic '/velodyne'.*/lidar/points"):
        sources.load_bag(str(good), lidar_topic='/velodyne')
    with pytest.raises(DatasetError, match='no image had a LiDAR scan within 100 ms'), \
            pytest.warns(UserWarning, match='no LiDAR scan within'):
        sources.load_bag(str(_sensor_bag(tmp_path / 'late', lidar_offset_ms=5000)))
    with pytest.raises(DatasetError, match='no LiDAR messages'):
        sources.load_bag(str(_custom_bag(custom_bag, tmp_path / 'silent', lidar_messages=0)))
    with pytest.raises(DatasetError, match='yuv422'):
        sources.load_bag(str(_custom_bag(custom_bag, tmp_path / 'yuv', image_encoding='yuv422')))


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    bag = str(_sensor_bag(tmp_path / 'good'))
    assert main(['bench', '--bag', bag, '--lidar-topic', '/velodyne', '--codecs', 'jpeg',
                 '--out', str(tmp_path / 'out')]) == 2
    assert "no scan topic '/velodyne'" in capsys.readouterr().err
    assert main(['bench', '--bag', bag, '--codecs', 'jpeg,mpeg2', '--out', str(tmp_path / 'out')]) == 2
    assert 'unknown codec mpeg2' in capsys.readouterr().err
    assert main(['bench', '--bag', bag, '--codecs', 'jpeg', '--qualities', 'webp=50',
                 '--out', str(tmp_path / 'out')]) == 2
    assert 'webp' in capsys.readouterr().err
    assert main(['bench', '--synthetic', '2', '--live', '--codecs', 'jpeg',
                 '--out', str(tmp_path / 'out')]) == 2
    assert '--live plays a rosbag' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['bench', '--bag', bag, '--kitti', bag, '--out', str(tmp_path / 'out')])


@pytest.mark.kitti
def test_two_frame_kitti_run(kitti_root, tmp_path):
    out = tmp_path / 'report'
    assert main(['bench', '--kitti', str(kitti_root / 'kitti_object'), '--frames', '2',
                 '--codecs', 'jpeg,webp',
                 '--qualities', 'jpeg=10,30,60,90', 'webp=10,30,60,90', '--quiet', '--out', str(out)]) == 0
    report = json.loads((out / 'report.json').read_text())
    assert report['dataset']['frames'] == ['training/000000', 'training/000001']
    assert report['dataset']['size'] == [1224, 370]
    assert {p['codec'] for p in report['curves']} == {'jpeg', 'webp'} and len(report['curves']) == 8
    assert report['bd_rate_vs_jpeg']['webp'] < 0
    lidar = report['lidar']
    assert len(lidar['frames']) == 2 and lidar['mean']['draco_bytes'] > lidar['mean']['xmodal_bytes'] > 0
    assert (out / 'crops.png').is_file() and (out / 'report.md').is_file()
