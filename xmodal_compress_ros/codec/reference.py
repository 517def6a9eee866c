"""The reference of a P frame: the previous decoded frame, aligned to the current view, as both ends build it.

The encoder and the decoder each keep the last frame the decoder shows (:class:`ReferenceFrame`) and
turn it into the P-frame codec's condition map with :func:`reference_input`: warped with the
current scan's dense depth and the camera motion the packet carries (:mod:`geometry.warp`,
:mod:`geometry.ego_motion`). Nothing here decides how a symbol parses; a missing scan or motion
gives the unaligned reference, a missing reference an all-invalid map.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.geometry.ego_motion import decode_pose
from xmodal_compress_ros.geometry.warp import camera_intrinsics, dense_depth, warp_to_current


@dataclass(frozen=True)
class ReferenceFrame:
    """A decoded frame kept to predict the next one: its stream number and (H, W, 3) uint8 RGB."""

    number: int
    rgb: np.ndarray = field(repr=False)

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height)."""
        return self.rgb.shape[1], self.rgb.shape[0]


def reference_planes(reference: np.ndarray, depth: np.ndarray, K: np.ndarray,
                     T_ref_cur: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8: ``reference`` (H, W, 3 uint8) warped into the current view with the current
    ``depth`` (metres, inf = far) and ``T_ref_cur`` (current camera -> reference camera), and its
    validity (0 or 255). Where the warp has nothing (validity 0), the RGB is the reference's own pixel:
    the latent prediction analyses a whole image. The P-frame codec's condition map, in training and
    in the stream alike."""
    ref = torch.from_numpy(np.ascontiguousarray(reference)).permute(2, 0, 1)[None].float()
    warped, valid = warp_to_current(ref, torch.from_numpy(np.asarray(depth, np.float32))[None, None],
                                    torch.from_numpy(np.asarray(K, np.float64))[None].float(),
                                    torch.from_numpy(np.asarray(T_ref_cur, np.float64))[None].float())
    rgb = torch.where(valid > 0, warped.round().clamp(0, 255), ref)
    planes = torch.cat([rgb, valid * 255.0], dim=1)[0]
    return planes.permute(1, 2, 0).to(torch.uint8).numpy()


def unaligned_planes(reference: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8: the reference as it is, valid everywhere (no scan or no motion to align it)."""
    valid = np.full(reference.shape[:2] + (1,), 255, np.uint8)
    return np.concatenate([reference, valid], axis=2)


def aligned_planes(reference: np.ndarray, points: Optional[np.ndarray], calib: Optional[Calibration],
                   pose: bytes) -> np.ndarray:
    """The condition map of ``reference``: aligned when a scan with its calibration and a motion are
    given, else :func:`unaligned_planes`."""
    if points is None or calib is None or not pose:
        return unaligned_planes(reference)
    K, _ = camera_intrinsics(calib)
    return reference_planes(reference, dense_depth(points, calib), K, decode_pose(pose))


def reference_input(planes: Optional[np.ndarray], height: int, width: int, padded: Tuple[int, int],
                    device: torch.device) -> torch.Tensor:
    """The graphs' (1, 4, Hp, Wp) float ``reference`` input: ``planes`` padded as the image is (edge
    replicated RGB, invalid padding), or all zeros (no reference: invalid everywhere)."""
    ph, pw = padded
    if planes is None:
        return torch.zeros(1, 4, ph, pw, device=device)
    x = torch.from_numpy(np.ascontiguousarray(planes)).to(device).permute(2, 0, 1)[None].float()
    if (ph, pw) == (height, width):
        return x
    rgb = F.pad(x[:, :3], (0, pw - width, 0, ph - height), mode='replicate')
    return torch.cat([rgb, F.pad(x[:, 3:], (0, pw - width, 0, ph - height))], dim=1)
