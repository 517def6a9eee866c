"""Exactness of the NumPy BT.601 full-range conversion the video baselines rely on."""
import numpy as np
import pytest

from xmodal_compress_ros.bench import colour
from xmodal_compress_ros.errors import ImageFormatError


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def test_jfif_reference_values():
    # Pure colours against the JFIF formulas (Y = 0.299 R + 0.587 G + 0.114 B, full range).
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]]], np.uint8)
    ycc = colour.rgb_to_ycbcr_float(rgb)[0]
    np.testing.assert_allclose(ycc[0], [76.245, 84.972, 255.5], atol=1e-3)
    np.testing.assert_allclose(ycc[2], [29.07, 255.5, 107.265], atol=1e-3)
    np.testing.assert_allclose(ycc[3], [255, 128, 128], atol=1e-9)
    np.testing.assert_allclose(ycc[4], [0, 128, 128], atol=1e-9)


def test_float_round_trip_is_exact():
    rgb = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    assert np.array_equal(colour.ycbcr_float_to_rgb(colour.rgb_to_ycbcr_float(rgb)), rgb)


def test_444_planes_round_trip_above_48_db():
    rgb = np.random.default_rng(1).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    back = colour.planes_to_rgb(colour.rgb_to_planes(rgb, '444'))
    assert _psnr(rgb, back) > 48.0
    assert np.abs(back.astype(int) - rgb).max() <= 2


def test_420_loses_nothing_without_chroma_detail():
    # Grey images have Cb = Cr = 128 everywhere: subsampling and upsampling leave them exact.
    grey = np.random.default_rng(2).integers(0, 256, (16, 16, 1), dtype=np.uint8)
    rgb = np.repeat(grey, 3, axis=2)
    planes = colour.rgb_to_planes(rgb, '420')
    assert planes.cb.shape == (8, 8) and planes.y.shape == (16, 16)
    assert np.array_equal(colour.planes_to_rgb(planes), rgb)


def test_raw_bytes_layout_round_trips():
    rgb = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    for chroma in colour.CHROMA_FORMATS:
        planes = colour.rgb_to_planes(rgb, chroma)
        data = planes.tobytes()
        assert len(data) == colour.frame_bytes(10, 6, chroma)
        again = colour.planes_from_bytes(data, 10, 6, chroma)
        assert np.array_equal(again.cb, planes.cb) and np.array_equal(again.y, planes.y)


def test_pad_to_even_and_errors():
    rgb = np.zeros((5, 7, 3), np.uint8)
    assert colour.pad_to_even(rgb).shape == (6, 8, 3)
    with pytest.raises(ImageFormatError, match='even'):
        colour.rgb_to_planes(rgb, '420')
    with pytest.raises(ImageFormatError, match='422'):
        colour.rgb_to_planes(colour.pad_to_even(rgb), '422')
    with pytest.raises(ImageFormatError, match='uint8'):
        colour.rgb_to_planes(rgb.astype(np.float32), '444')
    with pytest.raises(ImageFormatError, match='bytes'):
        colour.planes_from_bytes(b'123', 10, 6, '444')
