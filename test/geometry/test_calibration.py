"""Calibration readers and validation: every bad input raises CalibrationError naming the problem."""
import types

import numpy as np
import pytest

from xmodal_compress_ros.errors import CalibrationError
from xmodal_compress_ros.geometry.calibration import Calibration, load_calibration

# A KITTI object calib (values of training/000000), as the text lines the format holds.
KITTI_OBJECT_LINES = {
    'P0': '7.070493e+02 0 6.040814e+02 0 0 7.070493e+02 1.805066e+02 0 0 0 1 0',
    'P1': '7.070493e+02 0 6.040814e+02 -3.797842e+02 0 7.070493e+02 1.805066e+02 0 0 0 1 0',
    'P2': ('7.070493e+02 0 6.040814e+02 4.575831e+01 0 7.070493e+02 1.805066e+02 -3.454157e-01 '
           '0 0 1 4.981016e-03'),
    'P3': ('7.070493e+02 0 6.040814e+02 -3.341081e+02 0 7.070493e+02 1.805066e+02 2.330660e+00 '
           '0 0 1 3.201153e-03'),
    'R0_rect': ('9.999128e-01 1.009263e-02 -8.511932e-03 -1.012729e-02 9.999406e-01 -4.037671e-03 '
                '8.470675e-03 4.123522e-03 9.999556e-01'),
    'Tr_velo_to_cam': ('6.927964e-03 -9.999722e-01 -2.757829e-03 -2.457729e-02 -1.162982e-03 2.749836e-03 '
                       '-9.999955e-01 -6.127237e-02 9.999753e-01 6.931141e-03 -1.143899e-03 -3.321029e-01'),
}
CAM_TO_CAM = {
    'S_rect_02': '1.242000e+03 3.750000e+02',
    'R_rect_00': ('9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 '
                  '7.402527e-03 4.351614e-03 9.999631e-01'),
    'P_rect_02': ('7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.728540e+02 2.163791e-01 '
                  '0 0 1 2.745884e-03'),
}
VELO_TO_CAM = {
    'R': '7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 '
         '9.998621e-01 7.523790e-03 1.480755e-02',
    'T': '-4.069766e-03 -7.631618e-02 -2.717806e-01',
}


CALIB_TIME = 'calib_time: 09-Jan-2012 13:57:47\n'


def write_kv(path, entries, header=''):
    path.write_text(header + ''.join(f'{key}: {value}\n' for key, value in entries.items()))
    return path


def write_kitti_raw(directory, cam=None, velo=None):
    # Real KITTI raw files start with a non-numeric calib_time line.
    write_kv(directory / 'calib_cam_to_cam.txt', cam or CAM_TO_CAM, header=CALIB_TIME)
    write_kv(directory / 'calib_velo_to_cam.txt', velo or VELO_TO_CAM, header=CALIB_TIME)
    return directory


def simple_calibration(**overrides):
    K = np.array([[100.0, 0, 50], [0, 100, 40], [0, 0, 1]])
    kwargs = dict(width=100, height=80, K=K, P=np.hstack([K, np.zeros((3, 1))]), T_cam_lidar=np.eye(4))
    kwargs.update(overrides)
    return Calibration(**kwargs)


# ------------------------------------------------------------------------------ KITTI object

def test_kitti_object_parses_every_matrix(tmp_path):
    path = write_kv(tmp_path / 'c.txt', KITTI_OBJECT_LINES)
    calib = Calibration.from_kitti_object(path, image_size=(1242, 375))
    assert (calib.width, calib.height) == (1242, 375)
    assert calib.P[0, 3] == 45.75831 and calib.P[2, 3] == 4.981016e-03
    assert np.array_equal(calib.K, calib.P[:, :3])
    assert calib.R_rect[0, 1] == 1.009263e-02
    assert calib.T_cam_lidar[2, 3] == -3.321029e-01
    assert np.array_equal(calib.T_cam_lidar[3], [0, 0, 0, 1])


def test_kitti_object_selects_camera_and_accepts_r_rect_alias(tmp_path):
    lines = dict(KITTI_OBJECT_LINES)
    lines['R_rect'] = lines.pop('R0_rect')
    path = write_kv(tmp_path / 'c.txt', lines)
    calib = Calibration.from_kitti_object(path, camera=3, image_size=(1242, 375))
    assert calib.P[0, 3] == -334.1081


def test_kitti_object_requires_image_size(tmp_path):
    with pytest.raises(CalibrationError, match='image_size'):
        Calibration.from_kitti_object(write_kv(tmp_path / 'c.txt', KITTI_OBJECT_LINES))


@pytest.mark.parametrize('camera', [4, -1, 'left'])
def test_kitti_object_rejects_unknown_camera(tmp_path, camera):
    with pytest.raises(CalibrationError, match='camera must be one of'):
        Calibration.from_kitti_object(write_kv(tmp_path / 'c.txt', KITTI_OBJECT_LINES), camera=camera,
                                      image_size=(1242, 375))


def test_missing_key_names_key_and_file(tmp_path):
    lines = {k: v for k, v in KITTI_OBJECT_LINES.items() if k != 'Tr_velo_to_cam'}
    path = write_kv(tmp_path / 'c.txt', lines)
    with pytest.raises(CalibrationError, match=r'c\.txt: missing key Tr_velo_to_cam'):
        Calibration.from_kitti_object(path, image_size=(1242, 375))


def test_wrong_value_count(tmp_path):
    lines = dict(KITTI_OBJECT_LINES, P2='1 0 0 0 0 1 0 0 0 0 1')
    with pytest.raises(CalibrationError, match='P2 has 11 values, expected 12'):
        Calibration.from_kitti_object(write_kv(tmp_path / 'c.txt', lines), image_size=(1242, 375))


def test_nan_value(tmp_path):
    lines = dict(KITTI_OBJECT_LINES, R0_rect='1 0 0 0 nan 0 0 0 1')
    with pytest.raises(CalibrationError, match='R0_rect has non-finite'):
        Calibration.from_kitti_object(write_kv(tmp_path / 'c.txt', lines), image_size=(1242, 375))


def test_non_rigid_extrinsic(tmp_path):
    lines = dict(KITTI_OBJECT_LINES, Tr_velo_to_cam='2 0 0 0 0 1 0 0 0 0 1 0')
    with pytest.raises(CalibrationError, match='T_cam_lidar rotation part is not a rotation'):
        Calibration.from_kitti_object(write_kv(tmp_path / 'c.txt', lines), image_size=(1242, 375))


def test_reflection_is_not_a_rotation():
    with pytest.raises(CalibrationError, match='det = -1'):
        simple_calibration(T_cam_lidar=np.diag([1.0, 1.0, -1.0, 1.0]))


def test_extrinsic_bottom_row():
    T = np.eye(4)
    T[3, 0] = 0.5
    with pytest.raises(CalibrationError, match='bottom row'):
        simple_calibration(T_cam_lidar=T)


def test_rectification_must_be_rotation():
    with pytest.raises(CalibrationError, match='R_rect'):
        simple_calibration(R_rect=np.eye(3) * 1.01)


@pytest.mark.parametrize('overrides, message', [
    (dict(width=0), 'width must be a positive integer'),
    (dict(height=-3), 'height must be a positive integer'),
    (dict(width=10.5), 'width must be a positive integer'),
    (dict(K=np.zeros((3, 3))), r'K \(camera_matrix\) has focal lengths'),
    (dict(P=np.zeros((3, 4))), 'never calibrated'),
    (dict(P=np.eye(3)), r'P must be 3x4, got shape \(3, 3\)'),
    (dict(K=np.full((3, 3), np.inf)), 'K has non-finite'),
    (dict(T_cam_lidar=np.eye(3)), 'T_cam_lidar must be 4x4'),
    (dict(P=np.array([[100.0, 0, 50, 0], [0, 100, 40, 0], [0, 0, 2, 0]])), 'third row'),
    (dict(distortion_model='fisheye62'), 'distortion_model'),
    (dict(K='identity'), 'K must be numeric'),
])
def test_constructor_validation(overrides, message):
    with pytest.raises(CalibrationError, match=message):
        simple_calibration(**overrides)


def test_calibration_is_frozen_and_hashable():
    calib = simple_calibration()
    with pytest.raises(ValueError):
        calib.K[0, 0] = 1.0
    assert calib == simple_calibration() and hash(calib) == hash(simple_calibration())
    assert calib != simple_calibration(width=101)


def test_lidar_to_pixel_composes_p_rect_and_extrinsic():
    T = np.eye(4)
    T[:3, 3] = (1.0, 2.0, 3.0)
    calib = simple_calibration(T_cam_lidar=T)
    assert np.allclose(calib.lidar_to_pixel @ [0, 0, 7, 1], calib.P @ [1, 2, 10, 1])


def test_check_image_size_names_both_sizes():
    calib = simple_calibration()
    calib.check_image_size(100, 80)
    with pytest.raises(CalibrationError, match='image is 1242x375 but the calibration is for 100x80'):
        calib.check_image_size(1242, 375)


# ---------------------------------------------------------------------------------- KITTI raw

def test_kitti_raw_ignores_calib_time_and_reads_size(tmp_path):
    calib = Calibration.from_kitti_raw(write_kitti_raw(tmp_path))
    assert calib.image_size == (1242, 375)
    assert calib.T_cam_lidar[1, 3] == -7.631618e-02 and calib.T_cam_lidar[0, 1] == -9.999714e-01
    assert calib.P[1, 3] == 2.163791e-01


def test_kitti_raw_size_mismatch(tmp_path):
    with pytest.raises(CalibrationError, match='image is 1224x370 but S_rect_02 says 1242x375'):
        load_calibration(write_kitti_raw(tmp_path), image_size=(1224, 370))


def test_kitti_raw_without_s_rect_needs_image_size(tmp_path):
    cam = {k: v for k, v in CAM_TO_CAM.items() if k != 'S_rect_02'}
    write_kitti_raw(tmp_path, cam=cam)
    with pytest.raises(CalibrationError, match='missing key S_rect_02'):
        Calibration.from_kitti_raw(tmp_path)
    assert Calibration.from_kitti_raw(tmp_path, image_size=(1242, 375)).width == 1242


def test_kitti_raw_missing_camera_key(tmp_path):
    with pytest.raises(CalibrationError, match='missing key P_rect_03'):
        Calibration.from_kitti_raw(write_kitti_raw(tmp_path), camera=3)


def test_kitti_raw_missing_file(tmp_path):
    write_kv(tmp_path / 'calib_cam_to_cam.txt', CAM_TO_CAM)
    with pytest.raises(CalibrationError, match='not found: .*calib_velo_to_cam.txt'):
        Calibration.from_kitti_raw(tmp_path)


def test_kitti_raw_non_integer_size(tmp_path):
    write_kitti_raw(tmp_path, cam=dict(CAM_TO_CAM, S_rect_02='1242.5 375'))
    with pytest.raises(CalibrationError, match='S_rect_02 width must be a positive integer'):
        Calibration.from_kitti_raw(tmp_path)


# --------------------------------------------------------------------------------------- YAML

def test_yaml_round_trip_is_exact(tmp_path):
    calib = Calibration.from_kitti_raw(write_kitti_raw(tmp_path))
    calib = Calibration(calib.width, calib.height, calib.K, calib.P, calib.T_cam_lidar, calib.R_rect,
                        D=np.array([-0.1, 0.01, 1e-4, -2e-4, 0.0]))
    calib.to_yaml(tmp_path / 'calib.yaml')
    loaded = load_calibration(tmp_path / 'calib.yaml')
    assert loaded == calib
    assert np.array_equal(loaded.lidar_to_pixel, calib.lidar_to_pixel)


def test_yaml_accepts_flat_lists(tmp_path):
    path = tmp_path / 'c.yml'
    path.write_text(
        'image_width: 100\nimage_height: 80\n'
        'camera_matrix: [100, 0, 50, 0, 100, 40, 0, 0, 1]\n'
        'distortion_model: plumb_bob\ndistortion_coefficients: [0, 0, 0, 0, 0]\n'
        'rectification_matrix: [1, 0, 0, 0, 1, 0, 0, 0, 1]\n'
        'projection_matrix: [100, 0, 50, 0, 0, 100, 40, 0, 0, 0, 1, 0]\n'
        'T_cam_lidar: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]\n')
    assert load_calibration(path, image_size=(100, 80)) == simple_calibration()
    with pytest.raises(CalibrationError, match='image is 50x40'):
        load_calibration(path, image_size=(50, 40))


@pytest.mark.parametrize('text, message', [
    ('image_width: 100\n', 'missing key.*image_height.*camera_matrix.*projection_matrix.*T_cam_lidar'),
    ('- 1\n- 2\n', 'expected a mapping'),
    ('image_width: [\n', 'not valid YAML'),
])
def test_yaml_structure_errors(tmp_path, text, message):
    path = tmp_path / 'c.yaml'
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_yaml(path)


@pytest.mark.parametrize('key, value, message', [
    ('projection_matrix', '[1, 2, 3]', 'projection_matrix has 3 values, expected 12'),
    ('camera_matrix', '{rows: 3, cols: 3, data: [1, 2]}', 'camera_matrix says 3x3 but has 2 values'),
    ('T_cam_lidar', '[a, b]', 'T_cam_lidar must be a list of numbers'),
    ('T_cam_lidar', '[2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]', 'not a rotation'),
    ('image_width', '0', 'width must be a positive integer'),
])
def test_yaml_value_errors(tmp_path, key, value, message):
    simple_calibration().to_yaml(tmp_path / 'c.yaml')
    lines = [f'{key}: {value}' if line.startswith(key + ':') else line
             for line in (tmp_path / 'c.yaml').read_text().splitlines()]
    # Drop the indented rows/cols/data block of the replaced key.
    text, skip = [], False
    for line in lines:
        if line.startswith(key + ':'):
            text.append(line)
            skip = True
        elif skip and line.startswith(' '):
            continue
        else:
            skip = False
            text.append(line)
    (tmp_path / 'c.yaml').write_text('\n'.join(text) + '\n')
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_yaml(tmp_path / 'c.yaml')


# --------------------------------------------------------------------------------- CameraInfo

def camera_info(**overrides):
    fields = dict(width=100, height=80, distortion_model='plumb_bob', d=[0.1, 0.0, 0.0, 0.0, 0.0],
                  k=[100.0, 0, 50, 0, 100, 40, 0, 0, 1], r=[1.0, 0, 0, 0, 1, 0, 0, 0, 1],
                  p=[100.0, 0, 50, 0, 0, 100, 40, 0, 0, 0, 1, 0], binning_x=0, binning_y=0,
                  roi=types.SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False))
    fields.update(overrides)
    return types.SimpleNamespace(**fields)


def test_from_camera_info():
    calib = Calibration.from_camera_info(camera_info(), np.eye(4)[:3])
    assert calib.image_size == (100, 80) and calib.D[0] == 0.1
    assert np.array_equal(calib.lidar_to_pixel, simple_calibration().lidar_to_pixel)


def test_camera_info_all_zero_r_means_identity():
    assert np.array_equal(Calibration.from_camera_info(camera_info(r=[0.0] * 9), np.eye(4)).R_rect, np.eye(3))


@pytest.mark.parametrize('overrides, message', [
    (dict(p=[0.0] * 12), 'CameraInfo: P .*never calibrated'),
    (dict(k=[1.0] * 4), 'CameraInfo.k has 4 values, expected 9'),
    (dict(binning_x=2), 'binning'),
    (dict(roi=types.SimpleNamespace(x_offset=10, y_offset=0, width=50, height=80)), 'roi 50x80'),
])
def test_camera_info_errors(overrides, message):
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_camera_info(camera_info(**overrides), np.eye(4))


def test_camera_info_missing_field_and_bad_extrinsic():
    with pytest.raises(CalibrationError, match='lacks field.*p'):
        Calibration.from_camera_info(types.SimpleNamespace(width=1, height=1, k=[], d=[], r=[]), np.eye(4))
    with pytest.raises(CalibrationError, match=r'T_cam_lidar must be 4x4 \(or 3x4\)'):
        Calibration.from_camera_info(camera_info(), np.eye(3))


# ------------------------------------------------------------------------------- dispatching

def test_load_calibration_unknown_type_lists_accepted_forms(tmp_path):
    path = tmp_path / 'calib.json'
    path.write_text('{}')
    message = 'accepted: a KITTI raw date folder.*KITTI object calib .txt.*yaml'
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)


def test_load_calibration_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match='not found'):
        load_calibration(tmp_path / 'nope.yaml')


def test_load_calibration_dispatches_txt(tmp_path):
    path = write_kv(tmp_path / '000000.txt', KITTI_OBJECT_LINES)
    assert load_calibration(path, image_size=(1224, 370)).image_size == (1224, 370)


# -------------------------------------------------------------------------------- real files

@pytest.mark.kitti
def test_real_kitti_object_values_read_by_hand(kitti_root):
    calib = load_calibration(kitti_root / 'kitti_object/training/calib/000000.txt', image_size=(1224, 370))
    assert calib.P[0, 0] == 7.070493e+02 and calib.P[0, 3] == 4.575831e+01 and calib.P[1, 3] == -3.454157e-01
    assert calib.R_rect[2, 2] == 9.999556e-01
    assert calib.T_cam_lidar[0, 1] == -9.999722e-01 and calib.T_cam_lidar[2, 3] == -3.321029e-01


@pytest.mark.kitti
def test_real_kitti_raw_values_read_by_hand(kitti_root):
    calib = load_calibration(kitti_root / 'kitti_raw/2011_09_26', image_size=(1242, 375))
    assert calib.image_size == (1242, 375)
    assert calib.P[0, 2] == 6.095593e+02 and calib.P[0, 3] == 4.485728e+01
    assert calib.R_rect[0, 1] == 9.837760e-03
    assert np.array_equal(calib.T_cam_lidar[:3, 3], [-4.069766e-03, -7.631618e-02, -2.717806e-01])
