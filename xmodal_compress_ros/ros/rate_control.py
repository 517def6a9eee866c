"""Per-frame quality choice that keeps the packet stream under a link budget.

The controller tracks, for every quality level it has seen, the bits of an image packet (an
exponential moving average, EMA), the rate at which image packets leave (EMA of the stamp interval)
and the LiDAR stream's kbit/s. The image budget is the target minus the LiDAR rate; the chosen
quality is the highest whose predicted image rate fits it. Levels never seen are predicted from the
nearest seen level, assuming each level step multiplies the bits by ``step_ratio`` (or by the ratio
measured between two seen levels, once there are two).
"""
from __future__ import annotations

import math
from typing import Dict, Optional


class RateController:
    """Chooses the quality of the next image from recent packet sizes.

    Args:
        num_qualities: levels 0..num_qualities-1 are available.
        alpha: EMA weight of a new observation (0..1]; 0.2 follows changes within about 5 frames.
        step_ratio: assumed bits ratio between neighbouring levels before two levels were measured.
    """

    def __init__(self, num_qualities: int, alpha: float = 0.2, step_ratio: float = 1.5) -> None:
        if num_qualities < 1:
            raise ValueError(f'num_qualities must be >= 1, got {num_qualities}')
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f'alpha must be in (0, 1], got {alpha}')
        self.num_qualities = num_qualities
        self._alpha = alpha
        self._step_ratio = step_ratio
        self._bits: Dict[int, float] = {}
        self._frame_interval_s: Optional[float] = None
        self._last_image_stamp_s: Optional[float] = None
        self._lidar_kbps: Optional[float] = None
        self._last_lidar_stamp_s: Optional[float] = None

    def _ema(self, old: Optional[float], new: float) -> float:
        return new if old is None else old + self._alpha * (new - old)

    def observe_image(self, quality: int, packet_bytes: int, stamp_s: float) -> None:
        """Record an image packet that was sent."""
        self._bits[quality] = self._ema(self._bits.get(quality), 8.0 * packet_bytes)
        if self._last_image_stamp_s is not None and stamp_s > self._last_image_stamp_s:
            self._frame_interval_s = self._ema(self._frame_interval_s, stamp_s - self._last_image_stamp_s)
        self._last_image_stamp_s = stamp_s

    def observe_lidar(self, packet_bytes: int, stamp_s: float) -> None:
        """Record a LiDAR packet that was sent (its rate is taken off the image budget)."""
        if self._last_lidar_stamp_s is not None and stamp_s > self._last_lidar_stamp_s:
            kbps = 8.0 * packet_bytes / (stamp_s - self._last_lidar_stamp_s) / 1000.0
            self._lidar_kbps = self._ema(self._lidar_kbps, kbps)
        self._last_lidar_stamp_s = stamp_s

    @property
    def lidar_kbps(self) -> float:
        return self._lidar_kbps or 0.0

    def predicted_kbps(self, quality: int) -> Optional[float]:
        """Predicted image kbit/s at ``quality``, or None before a packet and a frame interval were seen."""
        if not self._bits or not self._frame_interval_s:
            return None
        return self._predicted_bits(quality) / self._frame_interval_s / 1000.0

    def _predicted_bits(self, quality: int) -> float:
        if quality in self._bits:
            return self._bits[quality]
        nearest = min(self._bits, key=lambda q: (abs(q - quality), -q))
        return self._bits[nearest] * self._measured_ratio() ** (quality - nearest)

    def _measured_ratio(self) -> float:
        """Bits ratio per level step, from the two most distant seen levels (geometric mean)."""
        low, high = min(self._bits), max(self._bits)
        if high == low or self._bits[low] <= 0.0:
            return self._step_ratio
        ratio = (self._bits[high] / self._bits[low]) ** (1.0 / (high - low))
        return ratio if math.isfinite(ratio) and ratio > 1.0 else self._step_ratio

    def choose(self, target_kbps: float, start_quality: int) -> int:
        """The highest level whose predicted image rate fits ``target_kbps`` minus the LiDAR rate.

        Before any measurement it returns ``start_quality``; when nothing fits, level 0.
        """
        start_quality = min(max(start_quality, 0), self.num_qualities - 1)
        if self.predicted_kbps(start_quality) is None:
            return start_quality
        budget = target_kbps - self.lidar_kbps
        for quality in range(self.num_qualities - 1, -1, -1):
            if self.predicted_kbps(quality) <= budget:
                return quality
        return 0
