"""Rate and quality metrics from real bytes and decoded pixels, and the Bjontegaard delta rate."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np


def bpp(num_bytes: int, width: int, height: int) -> float:
    """Bits per pixel of ``num_bytes`` over a ``width`` x ``height`` image (its original size)."""
    if width <= 0 or height <= 0:
        raise ValueError(f'image size {width}x{height} must be positive')
    return 8.0 * num_bytes / (width * height)


def psnr(reference: np.ndarray, decoded: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB over all pixels and channels (uint8 images: peak 255); inf when identical."""
    reference, decoded = np.asarray(reference), np.asarray(decoded)
    if reference.shape != decoded.shape:
        raise ValueError(f'shapes differ: {reference.shape} vs {decoded.shape}')
    mse = np.mean((reference.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else float(10.0 * np.log10(peak ** 2 / mse))


@dataclass(frozen=True)
class BDResult:
    """Bjontegaard delta rate: ``percent`` (negative = test needs fewer bits), None without overlap."""

    percent: Optional[float]
    overlap: Optional[Tuple[float, float]]
    note: str = ''


def bd_rate(rate_anchor: Sequence[float], quality_anchor: Sequence[float], rate_test: Sequence[float],
            quality_test: Sequence[float]) -> BDResult:
    """Average bitrate difference of ``test`` vs ``anchor`` at equal quality (Bjontegaard, VCEG-M33).

    Each curve's log-rate is fitted by a polynomial of the quality (3rd order with >= 4 points, else
    one order less than the point count), both fits are integrated over the overlapping quality
    range, and the mean log-rate difference is returned as a percentage.
    """
    fit = _mean_fit_difference(rate_anchor, quality_anchor, rate_test, quality_test, over='quality')
    if isinstance(fit, str):
        return BDResult(None, None, fit)
    difference, low, high, note = fit
    return BDResult(float((np.exp(difference) - 1.0) * 100.0), (low, high), note)


MS_SSIM_MIN_SIDE = 161  # 11-tap window after four 2x downsamplings: (11 - 1) * 2**4 + 1


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """MS-SSIM (Wang, Simoncelli, Bovik 2003; 5 scales, 11-tap Gaussian, sigma 1.5) of two RGB uint8 images.

    Computed by ``pytorch_msssim`` on the 0..255 RGB values (each channel separately, then averaged).
    Five scales need both sides >= 161 pixels: smaller images give NaN rather than a different metric.
    """
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    reference, decoded = np.asarray(reference), np.asarray(decoded)
    if reference.shape != decoded.shape:
        raise ValueError(f'shapes differ: {reference.shape} vs {decoded.shape}')
    if min(reference.shape[:2]) < MS_SSIM_MIN_SIDE:
        return float('nan')

    def tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)[None]

    with torch.no_grad():
        return float(_ms_ssim(tensor(reference), tensor(decoded), data_range=255.0, size_average=True))


@dataclass(frozen=True)
class BDQualityResult:
    """Bjontegaard delta quality (e.g. BD-PSNR in dB; positive = test is better at equal rate).

    ``overlap`` is the common rate range (not log); None without overlap.
    """

    delta: Optional[float]
    overlap: Optional[Tuple[float, float]]
    note: str = ''


def bd_quality(rate_anchor: Sequence[float], quality_anchor: Sequence[float], rate_test: Sequence[float],
               quality_test: Sequence[float]) -> BDQualityResult:
    """Average quality difference of ``test`` vs ``anchor`` at equal rate (Bjontegaard's BD-PSNR).

    The companion of :func:`bd_rate` with the axes swapped: each curve's quality is fitted by a
    polynomial of log-rate (3rd order with >= 4 points), both fits are integrated over the
    overlapping log-rate range, and the mean difference is returned. Useful when the quality
    ranges do not overlap but the rate ranges do.
    """
    fit = _mean_fit_difference(rate_anchor, quality_anchor, rate_test, quality_test, over='rate')
    if isinstance(fit, str):
        return BDQualityResult(None, None, fit)
    difference, low, high, note = fit
    return BDQualityResult(float(difference), (float(np.exp(low)), float(np.exp(high))), note)


def _mean_fit_difference(rate_anchor, quality_anchor, rate_test, quality_test, over: str):
    """Mean difference (test - anchor) of two 3rd-order fits over their overlapping range.

    ``over='quality'`` fits log-rate as a function of quality (BD-rate); ``over='rate'`` fits quality
    as a function of log-rate (BD-quality). Returns ``(difference, low, high, note)`` with the overlap
    in the fitted variable (log-rate for ``'rate'``), or a string saying why there is no result.
    """
    curves = []
    for rate, quality in ((rate_anchor, quality_anchor), (rate_test, quality_test)):
        rate, quality = np.asarray(rate, np.float64), np.asarray(quality, np.float64)
        keep = np.isfinite(rate) & np.isfinite(quality) & (rate > 0)
        rate, quality = rate[keep], quality[keep]
        x, y = (quality, np.log(rate)) if over == 'quality' else (np.log(rate), quality)
        if rate.size < 2 or np.unique(x).size < 2:
            return f'each curve needs at least two points of distinct {over}'
        curves.append((x, y))
    low = max(x.min() for x, _ in curves)
    high = min(x.max() for x, _ in curves)
    if not high > low:
        return f'the {over} ranges do not overlap'
    integrals = []
    notes = []
    for x, y in curves:
        degree = min(3, np.unique(x).size - 1)
        if degree < 3:
            notes.append(f'fit of order {degree} ({x.size} points)')
        poly = np.polyint(np.polyfit(x, y, degree))
        integrals.append((np.polyval(poly, high) - np.polyval(poly, low)) / (high - low))
    return integrals[1] - integrals[0], float(low), float(high), '; '.join(notes)
