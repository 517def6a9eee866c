"""Projection to the sparse depth map and the equalised conditioning image, NumPy and PyTorch."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.errors import ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration, load_calibration
from xmodal_compress_ros.geometry import projection
from xmodal_compress_ros.geometry.projection import (
    DEFAULT_DEPTH_SCALE, depth_condition, equalization_lut, equalize_depth, project_points,
    project_points_indexed, project_to_depth, reflectance_map)
from xmodal_compress_ros.geometry.projection_torch import (
    depth_condition_torch, equalize_depth_torch, project_to_depth_torch)

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
# LiDAR axes (x forward, y left, z up) -> camera axes (x right, y down, z forward), as on KITTI.
LIDAR_TO_CAMERA_AXES = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


@pytest.fixture(autouse=True, scope='module')
def one_torch_thread():
    """Run torch single-threaded here: on a shared 2-core machine intra-op threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def camera_frame_calib():
    """100x80 pinhole camera whose LiDAR frame is the camera frame: hand-computable pixels."""
    return Calibration(width=100, height=80, K=K, P=np.hstack([K, np.zeros((3, 1))]), T_cam_lidar=np.eye(4))


# --------------------------------------------------------------------------- hand computations

def test_point_on_optical_axis_lands_on_principal_point():
    depth = project_to_depth(np.array([[0.0, 0.0, 10.0]]), camera_frame_calib())
    assert depth.dtype == np.float32 and depth.shape == (80, 100)
    assert depth[40, 50] == 10.0 and np.count_nonzero(depth) == 1


def test_off_axis_point_by_hand():
    # u = floor((100*1 + 50*10) / 10) = 60, v = floor((100*0.5 + 40*10) / 10) = 45.
    depth = project_to_depth(np.array([[1.0, 0.5, 10.0]]), camera_frame_calib())
    assert depth[45, 60] == 10.0 and np.count_nonzero(depth) == 1


def test_pixel_is_floor_of_coordinate():
    # u = 50 + 100 * 0.0299 = 52.99 -> 52; v = 40 - 100 * 0.001 = 39.9 -> 39.
    depth = project_to_depth(np.array([[0.299, -0.01, 10.0]]), camera_frame_calib())
    assert depth[39, 52] == 10.0


def test_kitti_axes_point_ahead_lands_on_principal_point():
    calib = Calibration(width=100, height=80, K=K, P=np.hstack([K, np.zeros((3, 1))]),
                        T_cam_lidar=LIDAR_TO_CAMERA_AXES)
    depth = project_to_depth(np.array([[10.0, 0.0, 0.0], [10.0, 1.0, 0.0]]), calib)
    assert depth[40, 50] == 10.0
    assert depth[40, 40] == 10.0  # 1 m to the left: 10 px left of the centre


def test_z_buffer_keeps_the_nearer_point_in_any_order():
    points = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 5.0], [0.0, 0.0, 7.0]])
    for order in ([0, 1, 2], [1, 0, 2], [2, 0, 1]):
        depth = project_to_depth(points[order], camera_frame_calib())
        assert depth[40, 50] == 5.0 and np.count_nonzero(depth) == 1


def test_dropped_points():
    points = np.array([
        [0.0, 0.0, -10.0],      # behind the camera
        [0.0, 0.0, 0.05],       # nearer than 0.1 m
        [np.nan, 0.0, 10.0],
        [0.0, np.inf, 10.0],
        [0.0, 0.0, np.inf],
        [10.0, 0.0, 10.0],      # u = 150: right of the image
        [0.0, -5.0, 10.0],      # v = -10: above the image
        [4.99, 0.0, 10.0],      # u = 99.9 -> 99: last column, kept
        [0.0, 0.0, 20.0],
    ])
    u, v, depth = project_points(points, camera_frame_calib())
    assert u.tolist() == [99, 50] and v.tolist() == [40, 40] and depth.tolist() == [10.0, 20.0]


def test_indexed_projection_names_each_points_row_across_chunks(monkeypatch):
    monkeypatch.setattr(projection, 'CHUNK_POINTS', 3)
    points = np.array([[0.0, 0.0, -10.0], [1.0, 0.0, 10.0], [np.nan, 0.0, 10.0], [10.0, 0.0, 10.0],
                       [0.0, 1.0, 20.0], [0.0, 0.0, 0.05], [0.0, 0.0, 30.0]])
    u, v, depth, rows = project_points_indexed(points, camera_frame_calib())
    assert rows.tolist() == [1, 4, 6]
    assert u.tolist() == [60, 50, 50] and v.tolist() == [40, 45, 40] and depth.tolist() == [10.0, 20.0, 30.0]


def test_extra_columns_and_integer_points_are_accepted():
    calib = camera_frame_calib()
    expected = project_to_depth(np.array([[0.0, 0.0, 10.0]]), calib)
    wide = np.array([[0.0, 0.0, 10.0, 0.7, 3.0]], np.float32)
    assert np.array_equal(project_to_depth(wide, calib), expected)
    assert np.array_equal(project_to_depth(np.array([[0, 0, 10]], np.int32), calib), expected)


def test_empty_cloud_gives_empty_map():
    assert not project_to_depth(np.empty((0, 4), np.float32), camera_frame_calib()).any()
    assert not depth_condition(np.empty((0, 3)), camera_frame_calib()).any()
    assert not depth_condition_torch(torch.empty((0, 3)), camera_frame_calib()).any()


@pytest.mark.parametrize('points, message', [
    (np.zeros((5, 2)), r'shape \(N, >=3\).*got \(5, 2\)'),
    (np.zeros(6), r'got \(6,\)'),
    (np.array([['a', 'b', 'c']]), 'numeric'),
    (np.zeros((3, 3), bool), 'numeric'),
])
def test_bad_points_raise(points, message):
    with pytest.raises(PointCloudError, match=message):
        project_to_depth(points, camera_frame_calib())
    with pytest.raises(PointCloudError):
        project_to_depth_torch(torch.from_numpy(points) if points.dtype.kind != 'U' else points,
                               camera_frame_calib())


def test_the_reflectance_map_holds_the_nearest_points_reflectance_where_the_depth_map_has_a_point():
    k = np.array([[50.0, 0, 16], [0, 50.0, 12], [0, 0, 1]])
    calib = Calibration(width=32, height=24, K=k, P=np.hstack([k, np.zeros((3, 1))]), T_cam_lidar=np.eye(4))
    # Two points on one pixel (the nearer one's reflectance wins), one elsewhere, one behind the camera.
    points = np.array([[0.0, 0.0, 10.0, 0.9], [0.0, 0.0, 5.0, 0.2], [1.0, 0.5, 8.0, 0.0],
                       [0.0, 0.0, -3.0, 0.7]], np.float32)
    reflectance = reflectance_map(points, calib)
    assert np.array_equal(reflectance > 0, project_to_depth(points, calib) > 0)
    assert reflectance[12, 16] == 51                 # round(0.2 x 255), the nearer point's
    assert reflectance[15, 22] == 1                  # zero reflectance still marks a point
    assert reflectance.sum() == 52


def test_a_scan_without_reflectance_gives_an_empty_reflectance_map_and_nan_reflectance_reads_as_zero():
    calib = camera_frame_calib()
    xyz = np.array([[0.0, 0.0, 10.0]], np.float32)
    assert not reflectance_map(xyz, calib).any()
    assert reflectance_map(np.array([[0.0, 0.0, 10.0, np.nan]], np.float32), calib)[40, 50] == 1


# -------------------------------------------------------------------------------- equalisation

def test_equalisation_by_hand():
    depth = np.zeros((2, 3), np.float32)
    depth[0, 0] = depth[0, 1] = 2.0
    depth[1, 0] = 5.0
    depth[1, 2] = 12.0
    # scale 1: levels 0, 0, 3, 10; cdf 2, 3, 4; lut = 1 + (508 * (cdf - 2) + 2) // 4 -> 1, 128, 255.
    assert equalize_depth(depth, scale=1.0).tolist() == [[1, 1, 0], [128, 0, 255]]


def test_far_points_clip_to_the_last_level():
    depth = np.array([[1.0, 200.0, 300.0, 1.1]], np.float32)
    # scale 3: levels 0, 255 (597 clipped), 255 (897 clipped), 0.
    assert equalize_depth(depth).tolist() == [[1, 255, 255, 1]]


def test_single_level_maps_to_one():
    assert equalize_depth(np.array([[0.0, 7.0], [7.0, 0.0]], np.float32)).tolist() == [[0, 1], [1, 0]]


def test_lut_is_monotonic_and_spans_1_to_255():
    cdf = np.cumsum(np.random.default_rng(0).integers(0, 50, 256))
    cdf[0] = max(cdf[0], 1)
    lut = equalization_lut(np.maximum.accumulate(cdf))
    assert lut[0] == 1 and lut[-1] == 255 and np.all(np.diff(lut.astype(int)) >= 0)


@pytest.mark.parametrize('depth', [np.zeros((2, 2, 1), np.float32), np.zeros((2, 2), np.uint16),
                                   np.array([[np.nan, 1.0]]), np.array([[-1.0, 1.0]])])
def test_bad_depth_raises(depth):
    with pytest.raises(ImageFormatError):
        equalize_depth(depth)
    with pytest.raises(ImageFormatError):
        equalize_depth_torch(torch.from_numpy(depth))


@pytest.mark.parametrize('scale', [0, -1.0, float('nan'), float('inf'), 'big'])
def test_bad_scale_raises(scale):
    with pytest.raises(ImageFormatError, match='depth scale'):
        equalize_depth(np.ones((2, 2), np.float32), scale)


# ---------------------------------------------------------------------------- property tests

def random_calib(rotation_seed):
    """A KITTI-sized camera rotated by a random small angle about each axis, offset from the LiDAR."""
    angles = np.random.default_rng(rotation_seed).uniform(-0.2, 0.2, 3)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    T = LIDAR_TO_CAMERA_AXES.copy()
    T[:3, :3] = rx @ ry @ rz @ T[:3, :3]
    T[:3, 3] = (0.03, -0.08, -0.27)
    k = np.array([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    P = np.hstack([k, [[44.85728], [0.2163791], [0.002745884]]])
    return Calibration(width=1242, height=375, K=k, P=P, T_cam_lidar=T)


coordinates = st.floats(-80, 80, width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0])
clouds = arrays(np.float32, st.tuples(st.integers(0, 400), st.just(4)), elements=coordinates)


@settings(max_examples=60, deadline=None)
@given(clouds, st.integers(0, 2**16), st.floats(0.05, 20))
def test_numpy_and_torch_agree_and_maps_are_consistent(points, seed, scale):
    calib = random_calib(seed)
    depth = project_to_depth(points, calib)
    assert np.all(np.isfinite(depth)) and np.all(depth >= 0)
    assert np.all((depth == 0) | (depth > 0.1))
    condition = equalize_depth(depth, scale)
    assert np.array_equal(condition == 0, depth == 0)
    tensor = torch.from_numpy(points)
    assert np.array_equal(project_to_depth_torch(tensor, calib).numpy(), depth)
    assert np.array_equal(depth_condition_torch(tensor, calib, scale).numpy(), condition)


@settings(max_examples=30, deadline=None)
@given(clouds, st.randoms(use_true_random=False))
def test_depth_map_does_not_depend_on_point_order(points, rnd):
    order = list(range(len(points)))
    rnd.shuffle(order)
    calib = random_calib(1)
    assert np.array_equal(project_to_depth(points[order], calib), project_to_depth(points, calib))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_matches_numpy_bit_for_bit():
    rng = np.random.default_rng(7)
    points = rng.uniform(-60, 60, (120_000, 4)).astype(np.float32)
    calib = random_calib(3)
    depth = project_to_depth_torch(torch.from_numpy(points), calib, device='cuda')
    assert depth.device.type == 'cuda'
    assert np.array_equal(depth.cpu().numpy(), project_to_depth(points, calib))
    assert np.array_equal(depth_condition_torch(torch.from_numpy(points), calib, device='cuda').cpu().numpy(),
                          depth_condition(points, calib))


# ------------------------------------------------------------------------------- real KITTI

def kitti_object_frames(kitti_root):
    for scan in sorted((kitti_root / 'kitti_object').glob('*/velodyne/*.bin')):
        split = scan.parent.parent
        yield scan, split / 'calib' / (scan.stem + '.txt'), split / 'image_2' / (scan.stem + '.png')


def image_size(path):
    import cv2
    height, width = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
    return width, height


def count_with_matmul(points, calib):
    """Independent count: homogeneous matmul, then the same in-front and in-image test."""
    projected = np.c_[points[:, :3], np.ones(len(points))] @ calib.lidar_to_pixel.T
    front = projected[:, 2] > 0.1
    u, v = (projected[front, :2] / projected[front, 2:]).T
    return int(np.count_nonzero((u >= 0) & (u < calib.width) & (v >= 0) & (v < calib.height)))


@pytest.mark.kitti
def test_kitti_object_scans_land_16k_to_21k_points_and_torch_agrees(kitti_root):
    frames = list(kitti_object_frames(kitti_root))
    assert len(frames) >= 13
    for scan, calib_path, image_path in frames:
        points = read_points(scan)
        calib = load_calibration(calib_path, image_size=image_size(image_path))
        u, _, _ = project_points(points, calib)
        depth = project_to_depth(points, calib)
        assert 16_000 <= len(u) <= 21_000, scan
        assert abs(len(u) - count_with_matmul(points, calib)) <= 2
        assert 0.95 * len(u) <= np.count_nonzero(depth) <= len(u)
        assert np.array_equal(project_to_depth_torch(torch.from_numpy(points), calib).numpy(), depth)
        assert np.array_equal(depth_condition_torch(torch.from_numpy(points), calib).numpy(),
                              equalize_depth(depth, DEFAULT_DEPTH_SCALE))


@pytest.mark.kitti
def test_kitti_raw_scans_land_15k_to_17k_points(kitti_root):
    calib = load_calibration(kitti_root / 'kitti_raw/2011_09_26', image_size=(1242, 375))
    scans = sorted((kitti_root / 'kitti_raw/2011_09_26').glob('*/velodyne_points/data/*.bin'))
    assert len(scans) == 50
    for scan in scans[::7]:
        points = read_points(scan)
        count = len(project_points(points, calib)[0])
        # The data README says "about 16k-17k"; frames 3-15 (the car slowing behind its lead) hold 15.2k-16k.
        assert 15_000 <= count <= 17_500, scan
        assert abs(count - count_with_matmul(points, calib)) <= 2
    points = read_points(scans[0])
    assert np.array_equal(depth_condition_torch(torch.from_numpy(points), calib).numpy(),
                          depth_condition(points, calib))
