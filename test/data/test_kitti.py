"""KITTI object and raw layouts read as SensorFrames, on the real shared frames."""
import warnings

import cv2
import numpy as np
import pytest

from xmodal_compress_ros.data import kitti
from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.errors import DatasetError
from xmodal_compress_ros.geometry.calibration import Calibration

RAW_DRIVE = 'kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync'
RAW_CALIB = 'kitti_raw/2011_09_26'


def test_parse_kitti_timestamp():
    assert kitti.parse_kitti_timestamp('2011-09-26 13:02:25.964389445\n') == 1317042145_964389445
    assert kitti.parse_kitti_timestamp('1970-01-01 00:00:01.5') == 1_500_000_000


@pytest.mark.parametrize('line', ['2011-09-26 13:02:25', '2011-09-26T13:02:25.1',
                                  '2011-09-26 13:02:25.1234567890',
                                  'yesterday'])
def test_bad_kitti_timestamp(line):
    with pytest.raises(DatasetError, match='YYYY-MM-DD'):
        kitti.parse_kitti_timestamp(line)


@pytest.mark.kitti
def test_object_dataset(kitti_root):
    dataset = kitti.KittiObjectDataset(kitti_root / 'kitti_object')
    assert len(dataset) == 12 and dataset.names[0] == '000000'
    frame = dataset[1]
    split = kitti_root / 'kitti_object' / 'training'
    bgr = cv2.imread(str(split / 'image_2' / '000001.png'))
    np.testing.assert_array_equal(frame.image, bgr[..., ::-1])
    assert frame.image.dtype == np.uint8 and frame.image.flags.c_contiguous
    np.testing.assert_array_equal(frame.points, read_points(split / 'velodyne' / '000001.bin'))
    height, width = bgr.shape[:2]
    expected_calib = Calibration.from_kitti_object(split / 'calib' / '000001.txt', image_size=(width, height))
    assert frame.calib == expected_calib
    assert frame.name == '000001'
    assert frame.lidar_stamp_ns == frame.image_stamp_ns == kitti.NOMINAL_START_NS + kitti.NOMINAL_PERIOD_NS


@pytest.mark.kitti
def test_object_dataset_frame_selection_and_splits(kitti_root):
    dataset = kitti.KittiObjectDataset(kitti_root / 'kitti_object', frames=[3, '000005'])
    assert dataset.names == ['000003', '000005']
    assert [frame.name for frame in dataset] == ['000003', '000005']
    assert len(kitti.KittiObjectDataset(kitti_root / 'kitti_object', split='testing')) == 1
    fov = kitti.KittiObjectDataset(kitti_root / 'kitti_object_fov')
    assert len(fov) == 84 and fov[-1].name == '000100'


@pytest.mark.kitti
def test_object_dataset_errors_name_the_path(kitti_root, tmp_path):
    with pytest.raises(DatasetError, match='000999.png'):
        kitti.KittiObjectDataset(kitti_root / 'kitti_object', frames=[999])
    with pytest.raises(DatasetError, match=str(tmp_path / 'validation')):
        kitti.KittiObjectDataset(tmp_path, split='validation')
    (tmp_path / 'training' / 'image_2').mkdir(parents=True)
    with pytest.raises(DatasetError, match='velodyne'):
        kitti.KittiObjectDataset(tmp_path)


@pytest.mark.kitti
def test_raw_drive_nominal_stamps_warn(kitti_root):
    with pytest.warns(UserWarning, match='nominal 10 Hz'):
        drive = kitti.KittiRawDrive(kitti_root / RAW_DRIVE, kitti_root / RAW_CALIB)
    assert len(drive) == 50 and drive.timestamps_nominal
    frame = drive[2]
    assert frame.name == '0000000002' and frame.image.shape == (375, 1242, 3)
    expected_stamp = kitti.NOMINAL_START_NS + 2 * kitti.NOMINAL_PERIOD_NS
    assert frame.image_stamp_ns == frame.lidar_stamp_ns == expected_stamp
    assert frame.calib == Calibration.from_kitti_raw(kitti_root / RAW_CALIB)
    np.testing.assert_array_equal(
        frame.points, read_points(kitti_root / RAW_DRIVE / 'velodyne_points' / 'data' / '0000000002.bin'))


def _linked_drive(kitti_root, tmp_path, image_lines, lidar_lines):
    """A drive folder whose data/ links to the shared frames, with our own timestamp files."""
    drive = tmp_path / 'drive'
    for sensor, lines in (('image_02', image_lines), ('velodyne_points', lidar_lines)):
        (drive / sensor).mkdir(parents=True)
        (drive / sensor / 'data').symlink_to(kitti_root / RAW_DRIVE / sensor / 'data')
        if lines is not None:
            (drive / sensor / 'timestamps.txt').write_text(''.join(line + '\n' for line in lines))
    return drive


@pytest.mark.kitti
def test_raw_drive_reads_timestamp_files(kitti_root, tmp_path):
    image_lines = [f'2011-09-26 13:02:{25 + i // 10:02d}.{i % 10}00000001' for i in range(50)]
    lidar_lines = [f'2011-09-26 13:02:{25 + i // 10:02d}.{i % 10}50000000' for i in range(50)]
    drive_dir = _linked_drive(kitti_root, tmp_path, image_lines, lidar_lines)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        drive = kitti.KittiRawDrive(drive_dir, kitti_root / RAW_CALIB)
    assert not drive.timestamps_nominal
    frame = drive[12]
    assert frame.image_stamp_ns == kitti.parse_kitti_timestamp('2011-09-26 13:02:26.200000001')
    assert frame.lidar_stamp_ns == frame.image_stamp_ns + 49_999_999


@pytest.mark.kitti
def test_raw_drive_one_missing_timestamp_file_makes_both_nominal(kitti_root, tmp_path):
    drive_dir = _linked_drive(kitti_root, tmp_path, ['2011-09-26 13:02:25.0'] * 50, None)
    with pytest.warns(UserWarning, match='nominal'):
        drive = kitti.KittiRawDrive(drive_dir, kitti_root / RAW_CALIB)
    assert drive.image_stamps[1] - drive.image_stamps[0] == kitti.NOMINAL_PERIOD_NS
    assert drive.image_stamps == drive.lidar_stamps


@pytest.mark.kitti
def test_raw_drive_errors(kitti_root, tmp_path):
    line = '2011-09-26 13:02:25.0'
    short = _linked_drive(kitti_root, tmp_path, [line] * 10, [line] * 50)
    with pytest.raises(DatasetError, match='10 lines'):
        kitti.KittiRawDrive(short, kitti_root / RAW_CALIB)
    with pytest.raises(DatasetError, match='image_03'):
        kitti.KittiRawDrive(kitti_root / RAW_DRIVE, kitti_root / RAW_CALIB, camera=3)
    with pytest.raises(DatasetError, match='nowhere'):
        kitti.KittiRawDrive(tmp_path / 'nowhere', kitti_root / RAW_CALIB)
