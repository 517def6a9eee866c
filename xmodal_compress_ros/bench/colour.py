"""Exact BT.601 full-range RGB <-> YCbCr conversion and chroma resampling for the video baselines.

ffmpeg's own RGB -> YUV conversion (swscale) works in fixed point, defaults to limited range and
costs a baseline 0.2-0.9 dB before any coding happens. The benchmark therefore converts in NumPy,
in float, rounding once, and hands raw ``yuv420p``/``yuv444p`` planes to the encoders; decoded
planes come back raw and are converted back here. JPEG/JFIF uses the same matrix.

Chroma siting is centred (JPEG style): 4:2:0 chroma is the mean of each 2x2 block, and is
upsampled bilinearly with half-pixel centres. Both ends are ours, so the siting is consistent.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from xmodal_compress_ros.errors import ImageFormatError

# JFIF / BT.601 full range: rows give Y, Cb, Cr from R, G, B (Cb and Cr offset by 128).
_RGB_TO_YCBCR = np.array([
    [0.299, 0.587, 0.114],
    [-0.168735891647856, -0.331264108352144, 0.5],
    [0.5, -0.418687589158970, -0.081312410841030],
])
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_CHROMA_OFFSET = np.array([0.0, 128.0, 128.0])

CHROMA_FORMATS = ('420', '444')


@dataclass(frozen=True)
class YuvPlanes:
    """Three uint8 planes; for 4:2:0 the chroma planes are half size in both axes."""

    y: np.ndarray
    cb: np.ndarray
    cr: np.ndarray
    chroma: str

    def tobytes(self) -> bytes:
        """The planar layout ffmpeg's rawvideo ``yuv420p``/``yuv444p`` expects."""
        return self.y.tobytes() + self.cb.tobytes() + self.cr.tobytes()


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageFormatError(
            f'expected an (H, W, 3) uint8 RGB image, got dtype {rgb.dtype} shape {rgb.shape}; '
            'convert it with np.asarray(image, np.uint8)')


def _check_chroma(chroma: str) -> None:
    if chroma not in CHROMA_FORMATS:
        raise ImageFormatError(f'chroma format {chroma!r} is not one of {CHROMA_FORMATS}')


def pad_to_even(rgb: np.ndarray) -> np.ndarray:
    """Replicates the last row/column so both sides are even (4:2:0 encoders need that)."""
    h, w = rgb.shape[:2]
    return np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode='edge')


def rgb_to_ycbcr_float(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) float64 Y, Cb, Cr in [0, 255], unrounded."""
    _check_rgb(rgb)
    return rgb.astype(np.float64) @ _RGB_TO_YCBCR.T + _CHROMA_OFFSET


def ycbcr_float_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """(H, W, 3) float Y, Cb, Cr -> uint8 RGB, rounded once and clipped."""
    rgb = (ycc.astype(np.float64) - _CHROMA_OFFSET) @ _YCBCR_TO_RGB.T
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _to_u8(plane: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(plane), 0, 255).astype(np.uint8)


def rgb_to_planes(rgb: np.ndarray, chroma: str) -> YuvPlanes:
    """RGB -> YCbCr planes. For 4:2:0 the image must have even sides (see :func:`pad_to_even`)."""
    _check_chroma(chroma)
    ycc = rgb_to_ycbcr_float(rgb)
    h, w = ycc.shape[:2]
    cb, cr = ycc[..., 1], ycc[..., 2]
    if chroma == '420':
        if h % 2 or w % 2:
            raise ImageFormatError(f'4:2:0 needs even image sides, got {w}x{h}; pad with pad_to_even()')
        # Mean of each 2x2 block, still in float: the only rounding is the one below.
        cb = cb.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        cr = cr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return YuvPlanes(_to_u8(ycc[..., 0]), _to_u8(cb), _to_u8(cr), chroma)


def planes_to_rgb(planes: YuvPlanes) -> np.ndarray:
    """YCbCr planes -> uint8 RGB of the luma plane's size (chroma upsampled bilinearly, centred)."""
    _check_chroma(planes.chroma)
    h, w = planes.y.shape
    cb = planes.cb.astype(np.float32)
    cr = planes.cr.astype(np.float32)
    if planes.chroma == '420':
        cb = cv2.resize(cb, (w, h), interpolation=cv2.INTER_LINEAR)
        cr = cv2.resize(cr, (w, h), interpolation=cv2.INTER_LINEAR)
    ycc = np.stack([planes.y.astype(np.float64), cb.astype(np.float64), cr.astype(np.float64)], axis=-1)
    return ycbcr_float_to_rgb(ycc)


def planes_from_bytes(data: bytes, width: int, height: int, chroma: str) -> YuvPlanes:
    """Splits one raw planar frame (as ffmpeg's rawvideo writes it) into its three planes."""
    _check_chroma(chroma)
    cw, ch = (width // 2, height // 2) if chroma == '420' else (width, height)
    luma, chroma_size = width * height, cw * ch
    if len(data) != luma + 2 * chroma_size:
        raise ImageFormatError(
            f'raw {chroma} frame of {width}x{height} needs {luma + 2 * chroma_size} bytes, got {len(data)}')
    buf = np.frombuffer(data, np.uint8)
    return YuvPlanes(
        buf[:luma].reshape(height, width),
        buf[luma:luma + chroma_size].reshape(ch, cw),
        buf[luma + chroma_size:].reshape(ch, cw),
        chroma)


def frame_bytes(width: int, height: int, chroma: str) -> int:
    """Size in bytes of one raw planar frame."""
    _check_chroma(chroma)
    return width * height + 2 * ((width // 2) * (height // 2) if chroma == '420' else width * height)
