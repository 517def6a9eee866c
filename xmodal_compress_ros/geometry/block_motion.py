"""Block motion on top of the LiDAR alignment: what the scan and the ego-motion do not explain.

The warp (:mod:`geometry.warp`) moves the previous frame by the scene's depth and the vehicle's
motion; other road users, depth errors and a registration's error are left. The encoder searches,
for each ``block`` x ``block`` block of the current image, the integer displacement of the aligned
reference that matches it best (:func:`search_motion`, OpenCV's template matching on luma), and the
P packet carries the field; both ends then move the reference's blocks by it (:func:`apply_motion`,
integer copies, identical everywhere). The field moves the reference only: it never decides how a
symbol parses.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Side of a motion block in pixels, and the largest displacement searched in each direction.
DEFAULT_BLOCK = 32
DEFAULT_RANGE = 8
MAX_RANGE = 32
#: Cost of one pixel of displacement in the search, in luma SAD per pixel of the block: a vector
#: must earn its bits, and flat blocks stay still.
MOTION_PENALTY = 1.0 / 8.0


@dataclass(frozen=True)
class BlockMotion:
    """Displacements (dy, dx) of the reference for each block, int8 (rows, cols, 2)."""

    block: int
    field: np.ndarray

    @staticmethod
    def grid(height: int, width: int, block: int) -> tuple:
        """(rows, cols) of blocks covering a ``height`` x ``width`` image."""
        return -(-height // block), -(-width // block)

    @classmethod
    def zero(cls, height: int, width: int, block: int = DEFAULT_BLOCK) -> 'BlockMotion':
        return cls(block, np.zeros(cls.grid(height, width, block) + (2,), np.int8))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY).astype(np.float32)


def search_motion(image: np.ndarray, reference: np.ndarray, block: int = DEFAULT_BLOCK,
                  search_range: int = DEFAULT_RANGE) -> BlockMotion:
    """The field that moves ``reference`` (H, W, >=3 uint8) closest to ``image`` (H, W, 3 uint8).

    Per block the displacement minimising luma SAD plus :data:`MOTION_PENALTY` per pixel of
    displacement (L1), zero on ties. Encoder only: the decoder reads the field from the packet.
    """
    if not 1 <= search_range <= MAX_RANGE:
        raise ValueError(f'search_range {search_range} outside 1..{MAX_RANGE}')
    height, width = image.shape[:2]
    target, ref = _luma(image), _luma(reference)
    padded = cv2.copyMakeBorder(ref, search_range, search_range, search_range, search_range,
                                cv2.BORDER_REPLICATE)
    steps = np.arange(-search_range, search_range + 1)
    rows, cols = BlockMotion.grid(height, width, block)
    field = np.zeros((rows, cols, 2), np.int8)
    penalty_per_pixel = MOTION_PENALTY * (np.abs(steps)[:, None] + np.abs(steps)[None, :])
    for r in range(rows):
        y0, y1 = r * block, min((r + 1) * block, height)
        for c in range(cols):
            x0, x1 = c * block, min((c + 1) * block, width)
            patch = target[y0:y1, x0:x1]
            window = padded[y0:y1 + 2 * search_range, x0:x1 + 2 * search_range]
            # TM_SQDIFF is an L2 match; its square root per pixel ranks like an RMS difference.
            cost = np.sqrt(cv2.matchTemplate(window, patch, cv2.TM_SQDIFF) / patch.size)
            cost = cost + penalty_per_pixel
            best = np.unravel_index(int(np.argmin(cost)), cost.shape)
            if cost[best] < cost[search_range, search_range]:
                field[r, c] = (steps[best[0]], steps[best[1]])
    return BlockMotion(block, field)


def apply_motion(planes: np.ndarray, motion: BlockMotion) -> np.ndarray:
    """``planes`` (H, W, C) with each block copied from its displaced position (edges clamped)."""
    height, width = planes.shape[:2]
    if motion.field.shape[:2] != BlockMotion.grid(height, width, motion.block):
        raise ValueError(f'motion field {motion.field.shape[:2]} does not cover a {width}x{height} image '
                         f'in blocks of {motion.block}')
    if not motion.field.any():
        return planes
    moves = np.repeat(np.repeat(motion.field.astype(np.int64), motion.block, 0), motion.block, 1)
    rows = np.clip(np.arange(height)[:, None] + moves[:height, :width, 0], 0, height - 1)
    cols = np.clip(np.arange(width)[None, :] + moves[:height, :width, 1], 0, width - 1)
    return planes[rows, cols]
