"""``xmodal project``: outputs, the JSON line and the 16-bit depth PNG."""
import json
import re

import cv2
import numpy as np
import pytest

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.geometry.calibration import Calibration


@pytest.fixture(autouse=True)
def only_project(monkeypatch):
    # Build the parser from this subcommand alone, so this test does not depend on the others.
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {'project': 'project'})


@pytest.fixture
def scene(tmp_path):
    """A 100x80 grey image, its YAML calibration (LiDAR frame = camera frame) and a 4-point scan."""
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    Calibration(width=100, height=80, K=K, P=np.hstack([K, np.zeros((3, 1))]),
                T_cam_lidar=np.eye(4)).to_yaml(tmp_path / 'calib.yaml')
    cv2.imwrite(str(tmp_path / 'image.png'), np.full((80, 100, 3), 128, np.uint8))
    points = np.array([
        [0.0, 0.0, 10.0, 0.5],      # pixel (50, 40), 10 m
        [0.0, 0.0, 12.0, 0.5],      # same pixel, farther: hidden by the z-buffer
        [1.0, 0.5, 4.0, 0.5],       # pixel (75, 52), 4 m
        [0.0, 0.0, 70.0, 0.5],      # would be (50, 40) too: hidden
        [0.0, 0.0, -5.0, 0.5],      # behind the camera
        [-0.2, -0.1, 80.0, 0.5],    # pixel (49, 39), 80 m: clipped to 65535 mm
    ], np.float32)
    points.tofile(tmp_path / 'scan.bin')
    return tmp_path


def run(capsys, *argv):
    code = cli.main(['project', *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_outputs_and_json_line(scene, capsys):
    code, out, _ = run(capsys, '--image', scene / 'image.png', '--points', scene / 'scan.bin',
                       '--calib', scene / 'calib.yaml', '-o', scene / 'overlay.png',
                       '--depth-out', scene / 'depth.png', '--condition-out', scene / 'cond.png')
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report['points_total'] == 6 and report['points_in_image'] == 5 and report['pixels_with_depth'] == 3
    assert (report['width'], report['height']) == (100, 80)
    assert report['depth_min_m'] == 4.0 and report['depth_max_m'] == 80.0

    depth = cv2.imread(str(scene / 'depth.png'), cv2.IMREAD_UNCHANGED)
    assert depth.dtype == np.uint16 and depth.shape == (80, 100)
    assert depth[40, 50] == 10000 and depth[52, 75] == 4000 and depth[39, 49] == 65535
    assert np.count_nonzero(depth) == 3

    condition = cv2.imread(str(scene / 'cond.png'), cv2.IMREAD_UNCHANGED)
    assert condition.dtype == np.uint8 and np.array_equal(condition > 0, depth > 0)
    assert condition[52, 75] < condition[40, 50] < condition[39, 49] == 255

    overlay = cv2.imread(str(scene / 'overlay.png'))
    assert overlay.shape == (80, 100, 3)
    assert (overlay[40, 50] != 128).any() and (overlay[0, 0] == 128).all()


def test_no_outputs_still_reports(scene, capsys):
    code, out, _ = run(capsys, '--image', scene / 'image.png', '--points', scene / 'scan.bin',
                       '--calib', scene / 'calib.yaml')
    assert code == 0 and json.loads(out)['overlay'] is None


@pytest.mark.parametrize('extra, message', [
    (['--depth-out', 'depth.jpg'], 'must be a .png'),
    (['-o', 'missing/overlay.png'], 'folder .*missing does not exist'),
    (['--scale', '0', '--condition-out', 'c.png'], 'depth scale must be finite and > 0'),
])
def test_bad_arguments_fail_with_one_line(scene, capsys, extra, message):
    extra = [str(scene / arg) if arg.endswith('.png') or arg.endswith('.jpg') else arg for arg in extra]
    code, out, err = run(capsys, '--image', scene / 'image.png', '--points', scene / 'scan.bin',
                         '--calib', scene / 'calib.yaml', *extra)
    assert code == 2 and out == ''
    assert err.startswith('xmodal project: error:') and len(err.strip().splitlines()) == 1
    assert re.search(message, err)


def test_image_size_must_match_calibration(scene, capsys):
    cv2.imwrite(str(scene / 'small.png'), np.zeros((40, 50, 3), np.uint8))
    code, _, err = run(capsys, '--image', scene / 'small.png', '--points', scene / 'scan.bin',
                       '--calib', scene / 'calib.yaml')
    assert code == 2 and 'image is 50x40 but the calibration is for 100x80' in err


def test_unreadable_inputs(scene, capsys):
    (scene / 'bad.bin').write_bytes(b'\0' * 10)
    code, _, err = run(capsys, '--image', scene / 'image.png', '--points', scene / 'bad.bin',
                       '--calib', scene / 'calib.yaml')
    assert code == 2 and 'not a multiple of 16' in err
    code, _, err = run(capsys, '--image', scene / 'scan.bin', '--points', scene / 'scan.bin',
                       '--calib', scene / 'calib.yaml')
    assert code == 2 and 'cannot read image' in err


@pytest.mark.kitti
def test_real_kitti_frame(kitti_root, tmp_path, capsys):
    split = kitti_root / 'kitti_object/training'
    code, out, _ = run(capsys, '--image', split / 'image_2/000000.png',
                       '--points', split / 'velodyne/000000.bin', '--calib', split / 'calib/000000.txt',
                       '--depth-out', tmp_path / 'depth.png')
    report = json.loads(out)
    assert code == 0 and (report['width'], report['height']) == (1224, 370)
    assert 16_000 <= report['pixels_with_depth'] <= report['points_in_image'] <= 21_000
    depth = cv2.imread(str(tmp_path / 'depth.png'), cv2.IMREAD_UNCHANGED)
    assert np.count_nonzero(depth) == report['pixels_with_depth']
    assert abs(depth[depth > 0].min() / 1000 - report['depth_min_m']) < 1e-3
