"""ScanBuffer: nearest-stamp pairing of images with scans."""
import pytest

from xmodal_compress_ros.ros.pairing import ScanBuffer

MS = 1_000_000


def test_nearest_within_delta():
    buffer = ScanBuffer(4)
    for stamp in (0, 100 * MS, 200 * MS):
        buffer.add(stamp, f'scan{stamp // MS}')
    assert buffer.nearest(90 * MS, 50 * MS) == (100 * MS, 'scan100')
    assert buffer.nearest(160 * MS, 50 * MS) == (200 * MS, 'scan200')
    assert buffer.nearest(350 * MS, 50 * MS) is None


def test_tie_prefers_the_later_scan_and_out_of_order_arrival():
    buffer = ScanBuffer(4)
    buffer.add(100 * MS, 'late')
    buffer.add(0, 'early')
    assert buffer.nearest(50 * MS, 50 * MS) == (100 * MS, 'late')


def test_capacity_bounds_the_buffer():
    buffer = ScanBuffer(3)
    for i in range(10):
        buffer.add(i * 100 * MS, i)
    assert len(buffer) == 3
    assert buffer.nearest(0, 50 * MS) is None
    assert buffer.nearest(900 * MS, 0) == (900 * MS, 9)


def test_pairing_settled_once_a_later_scan_is_held():
    buffer = ScanBuffer(3)
    assert not buffer.pairing_settled(100)
    buffer.add(50, 'a')
    assert not buffer.pairing_settled(100)
    buffer.add(100, 'b')
    assert buffer.pairing_settled(100)
    assert buffer.newest_stamp() == 100


def test_rejects_zero_capacity():
    with pytest.raises(ValueError, match='capacity'):
        ScanBuffer(0)
