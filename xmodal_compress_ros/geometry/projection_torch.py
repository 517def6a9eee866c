"""PyTorch twin of :mod:`projection`: the same depth map and conditioning image, bit for bit, on CPU or GPU.

Every step mirrors the NumPy reference operation by operation: float64 elementwise rows in the same
order (no matmul), ``floor`` of an IEEE division, an order-independent ``amin`` scatter for the
z-buffer, half-to-even rounding, integer histogram and the same integer equalisation table.
"""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

from xmodal_compress_ros.errors import ImageFormatError, PointCloudError
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.geometry.projection import (
    DEFAULT_DEPTH_SCALE, LEVELS, MIN_DEPTH_M, NEGATIVE_OR_NAN_DEPTH, check_points_shape, check_scale,
    equalization_lut)

Device = Union[str, torch.device, None]


def project_points_torch(points: torch.Tensor, calib: Calibration,
                         device: Device = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tensor version of :func:`projection.project_points`: ``(u, v, depth)`` of points inside the image."""
    points = _as_points_tensor(points, device)
    m = calib.lidar_to_pixel.tolist()
    x, y, z = points[:, :3].T.contiguous().to(torch.float64)
    w = x * m[2][0] + y * m[2][1] + z * m[2][2] + m[2][3]
    # Index once and gather: several boolean-mask selections cost more than one nonzero().
    x, y, z, w = _gather(((w > MIN_DEPTH_M) & (w < float('inf'))), x, y, z, w)
    u = torch.floor((x * m[0][0] + y * m[0][1] + z * m[0][2] + m[0][3]) / w)
    v = torch.floor((x * m[1][0] + y * m[1][1] + z * m[1][2] + m[1][3]) / w)
    u, v, w = _gather((u >= 0) & (u < calib.width) & (v >= 0) & (v < calib.height), u, v, w)
    return u.to(torch.int64), v.to(torch.int64), w.to(torch.float32)


def project_to_depth_torch(points: torch.Tensor, calib: Calibration, device: Device = None) -> torch.Tensor:
    """Sparse depth map, float32 ``(height, width)`` tensor in metres on ``device`` (default: the points')."""
    u, v, depth = project_points_torch(points, calib, device)
    flat = torch.full((calib.height * calib.width,), float('inf'), dtype=torch.float32, device=depth.device)
    # amin is exact and order-independent, so the result is deterministic on GPU too.
    flat.scatter_reduce_(0, v * calib.width + u, depth, reduce='amin', include_self=True)
    return flat.nan_to_num_(posinf=0.0).reshape(calib.height, calib.width)


def equalize_depth_torch(depth: torch.Tensor, scale: float = DEFAULT_DEPTH_SCALE) -> torch.Tensor:
    """Tensor version of :func:`projection.equalize_depth`: uint8 ``(H, W)`` on the depth's device."""
    return _equalize(_checked_depth_tensor(depth), check_scale(scale))


def depth_condition_torch(points: torch.Tensor, calib: Calibration, scale: float = DEFAULT_DEPTH_SCALE,
                          device: Device = None) -> torch.Tensor:
    """:func:`project_to_depth_torch` then :func:`equalize_depth_torch`: uint8 ``(H, W)`` tensor."""
    scale = check_scale(scale)
    return _equalize(project_to_depth_torch(points, calib, device), scale)


def _equalize(depth: torch.Tensor, scale: float) -> torch.Tensor:
    """Equalisation of a depth map already known to be valid (see :func:`projection.equalize_depth`)."""
    flat = depth.reshape(-1)
    filled = flat.nonzero().squeeze(1)
    out = torch.zeros(flat.shape, dtype=torch.uint8, device=depth.device)
    if filled.numel() == 0:
        return out.reshape(depth.shape)
    values = flat.index_select(0, filled).to(torch.float64)
    levels = torch.clamp(torch.round((values - values.min()) * scale), 0, LEVELS - 1).to(torch.int64)
    cdf = torch.cumsum(torch.bincount(levels, minlength=LEVELS), 0)
    # The 256-entry table is built by the NumPy code itself, so both paths share one definition.
    lut = torch.from_numpy(equalization_lut(cdf.cpu().numpy())).to(depth.device)
    return out.index_copy_(0, filled, lut[levels]).reshape(depth.shape)


def _gather(mask: torch.Tensor, *tensors: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    index = mask.nonzero().squeeze(1)
    return tuple(t.index_select(0, index) for t in tensors)


def _as_points_tensor(points: Union[torch.Tensor, np.ndarray], device: Device) -> torch.Tensor:
    if isinstance(points, np.ndarray):
        if points.dtype.kind not in 'fiu':
            raise PointCloudError(f'points must be a numeric (float or int) array, got dtype {points.dtype}')
        points = torch.from_numpy(np.ascontiguousarray(points))
    if not isinstance(points, torch.Tensor):
        raise PointCloudError(f'points must be a torch.Tensor or numpy array, got {type(points).__name__}')
    if points.dtype == torch.bool or points.is_complex():
        raise PointCloudError(f'points must be a real numeric tensor, got dtype {points.dtype}')
    check_points_shape(tuple(points.shape))
    return points if device is None else points.to(device)


def _checked_depth_tensor(depth: torch.Tensor) -> torch.Tensor:
    if not isinstance(depth, torch.Tensor) or depth.dim() != 2 or not depth.is_floating_point():
        shape = tuple(depth.shape) if hasattr(depth, 'shape') else None
        raise ImageFormatError(
            f'depth map must be a 2-D float tensor (H, W) in metres, '
            f'got {type(depth).__name__} shape {shape}')
    if depth.numel() and not bool(torch.isfinite(depth).all() & (depth.min() >= 0)):
        raise ImageFormatError(NEGATIVE_OR_NAN_DEPTH)
    return depth
