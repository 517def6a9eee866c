"""``xmodal kitti2bag``: the shared raw drive converted, read back and compared with the files."""
import json

import cv2
import numpy as np
import pytest

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.data import rosbag_io as rb
from xmodal_compress_ros.data.kitti import NOMINAL_PERIOD_NS, NOMINAL_START_NS
from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.geometry.calibration import Calibration

RAW_DRIVE = 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync'


@pytest.fixture(autouse=True)
def only_kitti2bag(monkeypatch):
    # Build the parser from this subcommand alone, so this test does not depend on the others.
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {'kitti2bag': 'kitti2bag'})


def run(capsys, *argv):
    code = cli.main(['kitti2bag', *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.kitti
@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_first_frames_round_trip(kitti_root, tmp_path, capsys, storage):
    drive = kitti_root / RAW_DRIVE
    with pytest.warns(UserWarning, match='nominal 10 Hz'):
        code, out, _ = run(capsys, '--raw', drive, '--out', tmp_path / 'bag', '--frames', 3,
                           '--storage', storage)
    assert code == 0
    summary = json.loads(out)
    assert summary == {'frames': 3, 'scans': 3, 'out': str(tmp_path / 'bag'), 'storage': storage,
                       'duration_s': 0.2, 'calibration': str(tmp_path / 'bag' / 'calibration.yaml'),
                       'timestamps': 'nominal_10hz'}
    calib = Calibration.from_kitti_raw(drive.parent)
    assert rb.load_bag_calibration(tmp_path / 'bag') == calib
    frames = list(rb.pair_frames(rb.read_sensor_bag(tmp_path / 'bag'), T_cam_lidar=calib.T_cam_lidar))
    assert len(frames) == 3
    for i, frame in enumerate(frames):
        name = f'{i:010d}'
        png = cv2.imread(str(drive / 'image_02' / 'data' / f'{name}.png'))
        np.testing.assert_array_equal(frame.image, png[..., ::-1])
        scan = read_points(drive / 'velodyne_points' / 'data' / f'{name}.bin')
        np.testing.assert_array_equal(frame.points, scan)
        assert frame.image_stamp_ns == frame.lidar_stamp_ns == NOMINAL_START_NS + i * NOMINAL_PERIOD_NS
        assert frame.calib == calib


@pytest.mark.kitti
def test_extrinsic_out_and_explicit_calib_dir(kitti_root, tmp_path, capsys):
    drive = kitti_root / RAW_DRIVE
    with pytest.warns(UserWarning):
        code, out, _ = run(capsys, '--raw', drive, '--calib-dir', drive.parent, '--out', tmp_path / 'bag',
                           '--frames', 1, '--extrinsic-out', tmp_path / 'extrinsic.yaml')
    assert code == 0 and json.loads(out)['calibration'] == str(tmp_path / 'extrinsic.yaml')
    assert Calibration.from_yaml(tmp_path / 'extrinsic.yaml') == Calibration.from_kitti_raw(drive.parent)
    assert not (tmp_path / 'bag' / 'calibration.yaml').exists()


def test_bad_input_is_one_line(tmp_path, capsys):
    code, out, err = run(capsys, '--raw', tmp_path / 'nowhere', '--out', tmp_path / 'bag')
    assert code == 2 and out == ''
    assert err.startswith('xmodal kitti2bag: error:') and 'nowhere' in err and err.count('\n') == 1
    with pytest.raises(SystemExit):
        run(capsys, '--raw', tmp_path, '--out', tmp_path / 'bag', '--frames', 0)
