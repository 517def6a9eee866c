"""Depth + pose warp of the previous frame (geometry/warp.py)."""
import numpy as np
import pytest
import torch

from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive, kitti_calibration
from xmodal_compress_ros.errors import ImageFormatError
from xmodal_compress_ros.geometry.warp import (camera_intrinsics, dense_depth, render_from_pose,
                                               warp_to_current)

K_SMALL = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 25.0], [0.0, 0.0, 1.0]])
H, W = 50, 80


def _pose(yaw_deg=0.0, pitch_deg=0.0, t=(0.0, 0.0, 0.0)):
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    Ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])   # about camera y
    Rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    T = np.eye(4)
    T[:3, :3] = Ry @ Rx
    T[:3, 3] = t
    return T


def _warp(reference, depth, K, T):
    ref = torch.as_tensor(reference, dtype=torch.float32)
    if ref.dim() == 3:
        ref = ref[None]
    batch = ref.shape[0]
    depth = torch.as_tensor(depth, dtype=torch.float32).reshape(batch, 1, *ref.shape[-2:])
    K = torch.as_tensor(K, dtype=torch.float32).reshape(-1, 3, 3).expand(batch, 3, 3)
    T = torch.as_tensor(T, dtype=torch.float32).reshape(-1, 4, 4).expand(batch, 4, 4)
    return warp_to_current(ref, depth, K, T)


def _linear_image(a=0.7, b=-0.4, c=60.0):
    """A 3-channel image linear in the pixel-centre coordinates: bilinear sampling reproduces it exactly."""
    x = np.arange(W) + 0.5
    y = np.arange(H)[:, None] + 0.5
    plane = a * x + b * y + c
    return np.stack([plane, 2 * plane, plane + 5.0]).astype(np.float32), (a, b, c)


def test_identity_pose_returns_the_reference_valid_everywhere():
    rng = np.random.default_rng(0)
    reference = rng.uniform(0, 255, (2, 3, H, W)).astype(np.float32)
    depth = rng.uniform(2, 50, (2, 1, H, W)).astype(np.float32)
    depth[0, 0, :10] = np.inf
    warped, valid = _warp(reference, depth, K_SMALL, np.eye(4))
    np.testing.assert_allclose(warped.numpy(), reference, atol=1e-3)
    assert valid.shape == (2, 1, H, W) and valid.dtype == torch.float32
    assert bool((valid == 1).all())


def test_translation_of_a_fronto_parallel_plane_shifts_by_f_t_over_z():
    reference, _ = _linear_image()
    # Reference camera 0.3 m to the left of the current one (x_ref = x_cur + 0.3): at 10 m and f = 100
    # every pixel of the current view comes from 3 pixels further right in the reference.
    warped, valid = _warp(reference, np.full((H, W), 10.0), K_SMALL, _pose(t=(0.3, 0.0, 0.0)))
    np.testing.assert_allclose(warped[0, :, :, :W - 3].numpy(), reference[:, :, 3:], atol=2e-3)
    assert bool((valid[0, 0, :, :W - 3] == 1).all()) and bool((valid[0, 0, :, W - 3:] == 0).all())


def test_infinite_depth_is_the_rotation_homography_and_ignores_translation():
    reference, (a, b, c) = _linear_image()
    T = _pose(yaw_deg=2.0, pitch_deg=-1.0, t=(0.5, 0.1, 1.0))
    warped, valid = _warp(reference, np.full((H, W), np.inf), K_SMALL, T)
    homography = K_SMALL @ T[:3, :3] @ np.linalg.inv(K_SMALL)
    x, y = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    p = np.einsum('ij,jhw->ihw', homography, np.stack([x, y, np.ones_like(x)]))
    xr, yr = p[0] / p[2], p[1] / p[2]
    # Where all four bilinear neighbours are inside, the sample of a linear image is exact.
    inside = (xr >= 0.5) & (xr <= W - 0.5) & (yr >= 0.5) & (yr <= H - 0.5)
    assert inside.mean() > 0.5
    expected = a * xr + b * yr + c
    np.testing.assert_allclose(warped[0, 0].numpy()[inside], expected[inside], atol=5e-3)
    expected_valid = (xr >= 0) & (xr <= W) & (yr >= 0) & (yr <= H)
    np.testing.assert_array_equal(valid[0, 0].numpy() == 1, expected_valid)
    no_translation, _ = _warp(reference, np.full((H, W), np.inf), K_SMALL, _pose(yaw_deg=2.0, pitch_deg=-1.0))
    np.testing.assert_allclose(warped.numpy(), no_translation.numpy(), atol=1e-4)


def test_nan_and_non_positive_depth_count_as_infinitely_far():
    reference, _ = _linear_image()
    T = _pose(yaw_deg=1.0, t=(0.2, 0.0, 0.5))
    far, _ = _warp(reference, np.full((H, W), np.inf), K_SMALL, T)
    for bad in (np.nan, 0.0, -3.0):
        warped, _ = _warp(reference, np.full((H, W), bad), K_SMALL, T)
        np.testing.assert_array_equal(warped.numpy(), far.numpy())


def test_points_behind_the_reference_camera_are_invalid():
    reference, _ = _linear_image()
    # The reference camera 5 m ahead of a plane 3 m away: everything is behind it.
    _, valid = _warp(reference, np.full((H, W), 3.0), K_SMALL, _pose(t=(0.0, 0.0, -5.0)))
    assert bool((valid == 0).all())


def test_batch_is_per_item_deterministic_and_differentiable():
    rng = np.random.default_rng(1)
    reference = torch.tensor(rng.uniform(0, 1, (2, 3, H, W)), dtype=torch.float32, requires_grad=True)
    depth = torch.tensor(rng.uniform(3, 30, (2, 1, H, W)), dtype=torch.float32)
    K = torch.tensor(K_SMALL, dtype=torch.float32).expand(2, 3, 3)
    T = torch.tensor(np.stack([_pose(yaw_deg=1.5, t=(0.1, 0, 0.4)), _pose(pitch_deg=-1, t=(0, 0.05, 1.0))]),
                     dtype=torch.float32)
    warped, valid = warp_to_current(reference, depth, K, T)
    again, _ = warp_to_current(reference, depth, K, T)
    assert torch.equal(warped, again)
    for i in range(2):
        single, single_valid = warp_to_current(reference[i:i + 1], depth[i:i + 1], K[i:i + 1], T[i:i + 1])
        assert torch.equal(single, warped[i:i + 1]) and torch.equal(single_valid, valid[i:i + 1])
    (warped * valid).sum().backward()
    assert reference.grad is not None and reference.grad.abs().sum() > 0


def test_bad_shapes_are_refused():
    reference = torch.zeros(1, 3, H, W)
    with pytest.raises(ImageFormatError):
        warp_to_current(reference, torch.ones(1, 1, H, W + 1), torch.eye(3)[None], torch.eye(4)[None])
    with pytest.raises(ImageFormatError):
        warp_to_current(reference, torch.ones(1, 1, H, W), torch.eye(3)[None], torch.eye(3)[None])


def test_camera_intrinsics_reproduce_the_calibrated_projection():
    calib = kitti_calibration()
    K, T_cam_lidar = camera_intrinsics(calib)
    points = np.random.default_rng(2).uniform(-20, 20, (100, 3)) + (25.0, 0.0, 0.0)
    homogeneous = np.c_[points, np.ones(len(points))]
    np.testing.assert_allclose((K @ (T_cam_lidar @ homogeneous.T)[:3]), calib.lidar_to_pixel @ homogeneous.T,
                               rtol=1e-9, atol=1e-6)
    np.testing.assert_array_equal(T_cam_lidar[3], (0, 0, 0, 1))


@pytest.mark.parametrize('points', [np.zeros((0, 4), np.float32), np.full((500, 4), np.nan, np.float32),
                                    np.tile([[-10.0, 0.0, 0.0, 0.5]], (50, 1))])   # behind the camera
def test_dense_depth_of_a_scan_without_points_in_view_is_all_infinite(points):
    calib = kitti_calibration(160, 48)
    depth = dense_depth(points, calib)
    assert depth.shape == (48, 160) and depth.dtype == np.float32
    assert np.isposinf(depth).all()


@pytest.fixture(scope='module')
def synthetic_frame():
    drive = SyntheticDrive(SynthConfig(frames=1, seed=3, width=310, height=94))
    rendered = drive.render(0)
    return rendered.frame, rendered.depth.astype(np.float32), drive


def test_dense_depth_matches_the_rendered_depth(synthetic_frame):
    frame, truth, _ = synthetic_frame
    depth = dense_depth(frame.points, frame.calib)
    both = np.isfinite(depth) & np.isfinite(truth)
    assert both.mean() > 0.9
    relative = np.abs(depth[both] - truth[both]) / truth[both]
    assert np.median(relative) < 0.05


def _beam_scan(range_of, elevations_deg=np.linspace(-24.0, 2.0, 64), azimuths_deg=np.arange(-50, 50, 0.1)):
    """A LiDAR scan (x forward, z up) whose beam at (elevation, azimuth) returns at ``range_of(e, a)`` (NaN:
    no return)."""
    e, a = np.meshgrid(np.radians(elevations_deg), np.radians(azimuths_deg), indexing='ij')
    r = range_of(e, a)
    points = np.stack([r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e),
                       np.full_like(r, 0.3)], axis=-1).reshape(-1, 4)
    return points[np.isfinite(points).all(axis=1)].astype(np.float32)


def test_dense_depth_is_infinite_above_the_last_return_of_an_open_road():
    calib = kitti_calibration(310, 94)
    # Only the ground returns (1.73 m below the LiDAR): everything above the horizon is sky.
    with np.errstate(divide='ignore', invalid='ignore'):
        ground = _beam_scan(lambda e, a: np.where(e < -0.01, 1.73 / np.sin(-e), np.nan))
    depth = dense_depth(ground, calib)
    assert np.isinf(depth[:20]).all()                      # well above the horizon (row ~43)
    assert np.isfinite(depth[-20:]).all()
    assert np.all(np.diff(np.median(depth[-20:], axis=1)) < 0)   # the ground nears towards the bottom


def test_dense_depth_extends_a_wall_hit_by_the_top_beam_to_the_top_row():
    calib = kitti_calibration(310, 94)
    wall = _beam_scan(lambda e, a: 15.0 / (np.cos(e) * np.cos(a)))    # the plane x = 15 m
    depth = dense_depth(wall, calib)
    assert np.isfinite(depth).all()
    # The camera's z axis is nearly the LiDAR's x axis, offset by the mounting (0.27 m behind).
    np.testing.assert_allclose(np.median(depth), 15.0 + camera_intrinsics(calib)[1][2, 3], rtol=0.01)


def test_render_from_the_identity_pose_returns_the_image(synthetic_frame):
    frame, truth, drive = synthetic_frame
    image = frame.image.astype(np.float32)
    rendered, valid = render_from_pose(image, truth, drive.calib.P[:, :3], np.eye(4))
    assert valid.all()
    np.testing.assert_array_equal(rendered, image)


def test_render_then_warp_back_is_close_to_identity_on_valid_pixels(synthetic_frame):
    frame, truth, drive = synthetic_frame
    K = camera_intrinsics(drive.calib)[0]
    image = frame.image.astype(np.float32)
    # The previous camera 1 m behind the current one, turned 1 degree.
    T_prev_cur = _pose(yaw_deg=1.0, t=(0.05, 0.0, 1.0))
    previous, rendered_valid = render_from_pose(image, truth, K, T_prev_cur)
    assert not rendered_valid.all() and rendered_valid.mean() > 0.7
    assert previous.dtype == np.float32 and previous.min() >= image.min() and previous.max() <= image.max()
    stacked = np.concatenate([previous, rendered_valid[..., None].astype(np.float32)], axis=2)
    warped, valid = _warp(stacked.transpose(2, 0, 1), truth, K, T_prev_cur)
    warped = warped[0].numpy().transpose(1, 2, 0)
    # Pixels whose four bilinear neighbours were all rendered (not inpainted).
    usable = (valid[0, 0].numpy() == 1) & (warped[..., 3] > 0.999)
    assert usable.mean() > 0.6
    error = warped[..., :3][usable] - image[usable]
    psnr = 10 * np.log10(255.0 ** 2 / np.mean(error ** 2))
    unwarped = 10 * np.log10(255.0 ** 2 / np.mean((previous[usable] - image[usable]) ** 2))
    print(f'render then warp back: {psnr:.2f} dB, unwarped {unwarped:.2f} dB')
    # Nearest-pixel splatting moves each pixel by up to half a pixel, then bilinear sampling smooths:
    # on the synthetic textures that costs a few dB, far from the error of not warping at all.
    assert psnr > 24.0 and psnr > unwarped + 8.0
