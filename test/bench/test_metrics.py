"""bpp, PSNR and the Bjontegaard delta rate on curves with known answers."""
import math

import numpy as np
import pytest

from xmodal_compress_ros.bench.metrics import bd_rate, bpp, psnr


def test_bpp_and_psnr():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == math.inf
    b[0, 0, 0] = 255
    assert psnr(a, b) == pytest.approx(10 * math.log10(48))
    with pytest.raises(ValueError):
        bpp(1, 0, 5)


def test_bd_rate_known_answers():
    rate = np.array([0.1, 0.2, 0.4, 0.8])
    quality = np.array([30.0, 33.0, 36.0, 39.0])
    result = bd_rate(rate, quality, rate * 0.9, quality)
    assert result.percent == pytest.approx(-10.0) and result.overlap == (30.0, 39.0)
    # log2-linear curve: +1 dB everywhere = 2^(-1/3) rate at equal quality.
    assert bd_rate(rate, quality, rate, quality + 1).percent == pytest.approx((2 ** (-1 / 3) - 1) * 100)
    assert bd_rate(rate, quality, rate, quality).percent == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_without_overlap_or_points():
    rate = [0.1, 0.2, 0.4]
    assert bd_rate(rate, [30, 31, 32], rate, [40, 41, 42]).percent is None
    assert bd_rate([0.1], [30], rate, [30, 31, 32]).percent is None
    assert 'order 2' in bd_rate(rate, [30, 33, 36], rate, [30, 33, 36]).note
