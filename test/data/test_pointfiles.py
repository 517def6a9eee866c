"""Reading LiDAR scans from KITTI .bin and NumPy .npy files."""
import numpy as np
import pytest

from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.errors import PointCloudError


def test_kitti_bin_round_trip(tmp_path):
    points = np.arange(24, dtype=np.float32).reshape(6, 4)
    points.tofile(tmp_path / 'scan.bin')
    loaded = read_points(tmp_path / 'scan.bin')
    assert loaded.dtype == np.float32 and np.array_equal(loaded, points)


def test_kitti_bin_size_must_be_multiple_of_16(tmp_path):
    (tmp_path / 'scan.bin').write_bytes(b'\0' * 20)
    with pytest.raises(PointCloudError, match='20 bytes is not a multiple of 16'):
        read_points(tmp_path / 'scan.bin')


def test_npy_xyz_gets_zero_intensity_and_extra_columns_are_dropped(tmp_path):
    np.save(tmp_path / 'xyz.npy', np.array([[1.0, 2.0, 3.0]]))
    assert read_points(tmp_path / 'xyz.npy').tolist() == [[1.0, 2.0, 3.0, 0.0]]
    np.save(tmp_path / 'wide.npy', np.array([[1, 2, 3, 4, 5]], np.int16))
    assert read_points(tmp_path / 'wide.npy').tolist() == [[1.0, 2.0, 3.0, 4.0]]


@pytest.mark.parametrize('array', [np.zeros((4, 2)), np.zeros(12), np.array([['a', 'b', 'c']])])
def test_npy_bad_shape_or_dtype(tmp_path, array):
    np.save(tmp_path / 'bad.npy', array)
    with pytest.raises(PointCloudError, match=r'expected an \(N, 3\)'):
        read_points(tmp_path / 'bad.npy')


def test_npy_object_array_is_refused(tmp_path):
    np.save(tmp_path / 'obj.npy', np.array([[1, None, 3]], dtype=object), allow_pickle=True)
    with pytest.raises(PointCloudError, match='not a plain numeric'):
        read_points(tmp_path / 'obj.npy')


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(PointCloudError, match='not found'):
        read_points(tmp_path / 'none.bin')
    (tmp_path / 'scan.pcd').write_text('x')
    with pytest.raises(PointCloudError, match='accepted: KITTI .bin or NumPy .npy'):
        read_points(tmp_path / 'scan.pcd')


@pytest.mark.kitti
def test_real_kitti_scan(kitti_root):
    points = read_points(kitti_root / 'kitti_object/training/velodyne/000000.bin')
    assert points.shape == (1846144 // 16, 4)
    assert 0.0 <= points[:, 3].min() and points[:, 3].max() <= 1.0
