"""Aligning one camera frame to another from depth and the camera's motion (no motion vectors).

Three pieces, used by the P-frame mode of the codec and by its training data:

* :func:`dense_depth`: a decoded LiDAR scan -> a dense depth map of the current camera, +inf where the
  scan says nothing (sky, above the top beam, columns without returns).
* :func:`warp_to_current`: backward warp of the previous (reference) frame into the current view;
  each current pixel goes to 3-D by its depth, moves by ``T_ref_cur`` and samples the reference.
  Infinite depth keeps the direction only, so that pixel follows the rotation-only homography.
* :func:`render_from_pose`: forward splat of an image with its depth into a nearby viewpoint, to make
  a still frame into a (previous, current) pair for training.

The camera is the *rectified* camera of ``calib.P`` with its optical centre where ``P`` puts it
(KITTI's ``P[:, 3]`` shifts it by the stereo baseline), exactly as :func:`camera_intrinsics` returns
it; depth is the z coordinate in that frame, which is the ``w`` of :mod:`projection`. Pixel ``(u, v)``
covers ``[u, u+1) x [v, v+1)`` in the coordinates of ``K`` (as :func:`projection.project_points`
floors), so its centre is ``(u + 0.5, v + 0.5)``, which is also where ``grid_sample`` with
``align_corners=False`` puts it.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_compress_ros.errors import ImageFormatError
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.geometry.depth_completion import complete_depth
from xmodal_compress_ros.geometry.projection import (check_points, project_points_indexed,
                                                     project_to_depth)

#: A column whose topmost LiDAR return is within this many degrees of the scan's highest return
#: has something standing there (a wall, a tree): its depth is repeated up to the top row. Other
#: columns end where the beams stopped returning, so the pixels above their topmost return are sky.
TOP_BEAM_MARGIN_DEG = 1.0
#: ... and at least this elevation: a return below the LiDAR's horizon is the ground or the top of
#: something lower than the LiDAR, and the beams above it saw nothing (an open road: sky).
STANDING_MIN_ELEVATION_DEG = 0.0
#: Columns over which the top beam's elevation is taken (see :func:`_sky_limit`).
TOP_BEAM_WINDOW = 201
#: Width of the sliding minimum that closes the columns the top beam skipped.
SKY_SMOOTH_COLUMNS = 9
#: Points on the reference image plane or behind it (z below this, in units of depth) are invalid.
MIN_Z = 1e-6


def camera_intrinsics(calib: Calibration) -> Tuple[np.ndarray, np.ndarray]:
    """``(K, T_cam_lidar)`` of the rectified camera that ``calib.lidar_to_pixel`` projects into.

    ``K @ (T_cam_lidar @ p)[:3]`` equals ``calib.lidar_to_pixel @ p`` for every homogeneous LiDAR
    point ``p``: ``R_rect`` and the baseline term ``K^-1 P[:, 3]`` are folded into ``T_cam_lidar``.
    Both are float64 copies.
    """
    K = np.array(calib.P[:, :3], dtype=np.float64)
    shift = np.eye(4)
    shift[:3, 3] = np.linalg.solve(K, calib.P[:, 3])
    rect = np.eye(4)
    rect[:3, :3] = calib.R_rect
    return K, shift @ rect @ calib.T_cam_lidar


def dense_depth(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """Dense float32 ``(H, W)`` depth in metres of the camera from a scan; +inf where the scan cannot tell.

    The scan is projected (nearest point per pixel), completed by IP-Basic
    (:func:`depth_completion.complete_depth`, which takes metres, 0 = empty, and extends each column's
    topmost depth upwards), then the pixels above a column's topmost return become +inf unless that
    return came from the top beams (``TOP_BEAM_MARGIN_DEG``): the beams above it saw nothing, so it is
    sky or too far to matter. Columns with no return at all are +inf. A scan with no finite point in
    front of the camera (empty, all NaN) gives all +inf, which makes the warp a pure rotation.
    """
    points = check_points(points)
    height, width = calib.height, calib.width
    sparse = project_to_depth(points, calib)
    if not sparse.any():
        return np.full((height, width), np.inf, np.float32)
    dense = complete_depth(sparse, extrapolate=True)
    dense[np.arange(height)[:, None] < _sky_limit(points, calib)[None, :]] = np.inf
    dense[dense <= 0] = np.inf                      # whatever completion left empty
    return dense


def _sky_limit(points: np.ndarray, calib: Calibration) -> np.ndarray:
    """Per image column, the first row with a usable depth: the pixels above it are sky (+inf).

    A column whose topmost return is within ``TOP_BEAM_MARGIN_DEG`` of the top beam (the highest
    elevation among the returns in the image within ``TOP_BEAM_WINDOW`` columns: a tilted LiDAR's top
    beam is not level) and above the LiDAR's horizon has something standing there, so its depth goes
    up to row 0. Otherwise the
    beams above its topmost return saw nothing: sky from there up. A sliding minimum over
    ``SKY_SMOOTH_COLUMNS`` closes the columns the top beam's points skipped (the beams are sparser
    than the pixels), so that a wall does not turn into vertical stripes of sky.
    """
    import cv2

    top_row, top_elevation = _column_tops(points, calib)
    top_beam = cv2.dilate(top_elevation[None, :].astype(np.float32), np.ones((1, TOP_BEAM_WINDOW), np.uint8),
                          borderType=cv2.BORDER_REPLICATE)[0]
    reaches_top = ((top_elevation >= top_beam - np.radians(TOP_BEAM_MARGIN_DEG))
                   & (top_elevation >= np.radians(STANDING_MIN_ELEVATION_DEG)))
    limit = np.where(reaches_top, 0, top_row).astype(np.float32)
    limit = cv2.erode(limit[None, :], np.ones((1, SKY_SMOOTH_COLUMNS), np.uint8),
                      borderType=cv2.BORDER_REPLICATE)[0]
    return limit.astype(np.int64)


def _column_tops(points: np.ndarray, calib: Calibration) -> Tuple[np.ndarray, np.ndarray]:
    """Per image column: the topmost row a point lands in (``height`` if none) and that point's
    elevation angle in the LiDAR frame (-inf if none)."""
    u, v, _, rows = project_points_indexed(points, calib)
    top_row = np.full(calib.width, calib.height, np.int64)
    top_elevation = np.full(calib.width, -np.inf)
    if len(u) == 0:
        return top_row, top_elevation
    np.minimum.at(top_row, u, v)
    # Among the points on each column's top row, the highest elevation (order-independent).
    on_top = v == top_row[u]
    xyz = points[rows[on_top], :3].astype(np.float64)
    elevation = np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1]))
    np.maximum.at(top_elevation, u[on_top], elevation)
    return top_row, top_elevation


def warp_to_current(reference: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
                    T_ref_cur: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backward-warp ``reference`` into the current view.

    Args:
        reference: ``(B, C, H, W)`` float, the previous frame (or its features), differentiable.
        depth: ``(B, 1, H, W)`` depth of the *current* view in metres; +inf (and NaN or <= 0) means
            infinitely far: that pixel moves by the rotation alone.
        K: ``(B, 3, 3)`` intrinsics of the grid of ``reference`` (scale them for feature maps).
        T_ref_cur: ``(B, 4, 4)`` rigid transform from the current camera frame to the reference one.

    Returns:
        ``(warped, valid)``: ``(B, C, H, W)`` bilinear samples of ``reference`` (border padding) and
        ``(B, 1, H, W)`` 1.0 where the pixel lands inside the reference and in front of its camera.

    The per-pixel arithmetic is elementwise (no matmul, whose summation order varies between
    libraries), in the dtype of ``reference``, from a homography and epipole formed in float64, so
    equal inputs give bit-identical outputs on one backend.
    """
    batch, _, height, width = _check_warp_inputs(reference, depth, K, T_ref_cur)
    dtype, device = reference.dtype, reference.device
    H_inf, epipole = _homography_and_epipole(K, T_ref_cur)
    H_inf = H_inf.to(dtype).view(batch, 3, 3, 1, 1)
    epipole = epipole.to(dtype).view(batch, 3, 1, 1)
    inverse_depth = _inverse_depth(depth.to(device=device, dtype=dtype))[:, 0]
    x = (torch.arange(width, device=device, dtype=dtype) + 0.5).view(1, 1, width)
    y = (torch.arange(height, device=device, dtype=dtype) + 0.5).view(1, height, 1)
    # p = K R K^-1 [x, y, 1] + K t / depth: the reference pixel of the current pixel (x, y), times z_ref/z.
    p = [H_inf[:, r, 0] * x + H_inf[:, r, 1] * y + H_inf[:, r, 2] + epipole[:, r] * inverse_depth
         for r in range(3)]
    in_front = p[2] > MIN_Z
    safe_w = torch.where(in_front, p[2], torch.ones_like(p[2]))
    u_ref, v_ref = p[0] / safe_w, p[1] / safe_w
    valid = in_front & (u_ref >= 0) & (u_ref <= width) & (v_ref >= 0) & (v_ref <= height)
    grid = torch.stack([2.0 * u_ref / width - 1.0, 2.0 * v_ref / height - 1.0], dim=-1)
    # Pixels behind the camera would give meaningless coordinates; park them at the image centre.
    grid = torch.where(in_front.unsqueeze(-1), grid, torch.zeros_like(grid))
    warped = F.grid_sample(reference, grid, mode='bilinear', padding_mode='border', align_corners=False)
    return warped, valid.unsqueeze(1).to(dtype)


def _check_warp_inputs(reference: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
                       T_ref_cur: torch.Tensor) -> Tuple[int, int, int, int]:
    if reference.dim() != 4 or not reference.is_floating_point():
        raise ImageFormatError(f'reference must be a float (B, C, H, W) tensor, got {tuple(reference.shape)} '
                               f'{reference.dtype}')
    batch, channels, height, width = reference.shape
    expected = {'depth': (depth, (batch, 1, height, width)), 'K': (K, (batch, 3, 3)),
                'T_ref_cur': (T_ref_cur, (batch, 4, 4))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ImageFormatError(f'{name} must have shape {shape} for a reference of shape '
                                   f'{tuple(reference.shape)}, got {tuple(tensor.shape)}')
    return batch, channels, height, width


def _homography_and_epipole(K: torch.Tensor, T_ref_cur: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """float64 ``K R K^-1`` (B, 3, 3) and ``K t`` (B, 3) of ``T_ref_cur = [R | t]``."""
    K64 = K.detach().to(torch.float64).cpu()
    T64 = T_ref_cur.detach().to(torch.float64).cpu()
    R, t = T64[:, :3, :3], T64[:, :3, 3]
    H_inf = K64 @ R @ torch.linalg.inv(K64)
    epipole = (K64 @ t.unsqueeze(-1))[..., 0]
    return H_inf.to(K.device), epipole.to(K.device)


def _inverse_depth(depth: torch.Tensor) -> torch.Tensor:
    """``1/depth`` where depth is finite and > 0, else 0 (infinitely far)."""
    usable = torch.isfinite(depth) & (depth > 0)
    return torch.where(usable, 1.0 / torch.where(usable, depth, torch.ones_like(depth)),
                       torch.zeros_like(depth))


def render_from_pose(image: np.ndarray, depth: np.ndarray, K: np.ndarray,
                     T_new_cur: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Forward-splat ``image`` seen with ``depth`` into the camera at ``T_new_cur`` (cur -> new frame).

    Args:
        image: ``(H, W, C)`` float (or uint8, returned as float32).
        depth: ``(H, W)`` metres along the optical axis; +inf (sky) moves by the rotation alone.
        K: 3x3 intrinsics, shared by both views.
        T_new_cur: 4x4 rigid transform from the current camera frame to the new one.

    Returns:
        ``(rendered, valid)``: ``(H, W, C)`` float32 and ``(H, W)`` bool. Each source pixel lands on the
        pixel containing its projection; the nearest wins (z-buffer). Pixels that nothing lands on
        (disocclusions, the border the current view did not see) take the value of the nearest
        landed pixel and are ``False`` in ``valid``.
    """
    import cv2

    image = np.asarray(image)
    depth = np.asarray(depth, dtype=np.float64)
    height, width = depth.shape
    if image.shape[:2] != (height, width) or image.ndim != 3:
        raise ImageFormatError(f'image must be (H, W, C) matching depth {depth.shape}, got {image.shape}')
    K = np.asarray(K, np.float64)
    T = np.asarray(T_new_cur, np.float64)
    H_inf = K @ T[:3, :3] @ np.linalg.inv(K)
    epipole = K @ T[:3, 3]
    x, y = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    with np.errstate(divide='ignore', invalid='ignore'):
        inverse_depth = np.where(np.isfinite(depth) & (depth > 0), 1.0 / depth, 0.0)
    p = [H_inf[r, 0] * x + H_inf[r, 1] * y + H_inf[r, 2] + epipole[r] * inverse_depth for r in range(3)]
    in_front = p[2] > MIN_Z
    with np.errstate(divide='ignore', invalid='ignore'):
        u = np.floor(p[0] / p[2])
        v = np.floor(p[1] / p[2])
        # Inverse depth in the new view: larger is nearer; infinity (0) loses to any surface.
        new_inverse_depth = inverse_depth / p[2]
    lands = in_front & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    source = np.flatnonzero(lands)
    target = (v.ravel()[source] * width + u.ravel()[source]).astype(np.int64)
    # Farthest first, so that the nearest source pixel's write lands last.
    order = np.argsort(new_inverse_depth.ravel()[source], kind='stable')
    channels = image.shape[2]
    rendered = np.zeros((height * width, channels), np.float32)
    rendered[target[order]] = image.reshape(-1, channels)[source[order]]
    valid = np.zeros(height * width, bool)
    valid[target] = True
    rendered, valid = rendered.reshape(height, width, channels), valid.reshape(height, width)
    if valid.any() and not valid.all():
        _fill_from_nearest(rendered, valid, cv2)
    return rendered, valid


def _fill_from_nearest(image: np.ndarray, valid: np.ndarray, cv2) -> None:
    """Give each invalid pixel the value of the nearest valid one (Euclidean distance transform)."""
    # The transform measures distance to zero pixels: the valid pixels are the zeros here. With
    # DIST_LABEL_PIXEL each zero pixel gets its own label, numbered in raster order from 1.
    _, labels = cv2.distanceTransformWithLabels((~valid).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    valid_index = np.flatnonzero(valid.ravel())
    holes = np.flatnonzero(~valid.ravel())
    flat = image.reshape(-1, image.shape[2])
    flat[holes] = flat[valid_index[labels.ravel()[holes] - 1]]
