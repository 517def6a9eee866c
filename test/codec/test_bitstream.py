"""Packets round-trip exactly, and any damage to them raises PacketError and nothing else."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmodal_compress_ros.codec.bitstream import (
    IMAGE_MAGIC, MAX_PIXELS, CameraProjection, ImagePacket, LidarPacket, pack_container, pack_image_packet,
    pack_lidar_packet, packet_kind, parse_container, parse_image_packet, parse_lidar_packet, section_cap,
)
from xmodal_compress_ros.errors import PacketError


def image_packet(**changes):
    fields = dict(
        model_id=bytes(range(16)), quality=3, width=1242, height=375, padded_width=1280, padded_height=384,
        image_stamp_ns=1_317_000_000_123_456_789, lidar_conditioned=True, scan_id=42,
        scan_stamp_ns=1_317_000_000_100_000_000, num_y_substreams=2, z_bytes=b'\x01zzzz' * 10,
        y_bytes=b'\x02' + b'y' * 300)
    fields.update(changes)
    return ImagePacket(**fields)


def lidar_packet(**changes):
    fields = dict(
        scan_id=42, stamp_ns=-5, frame_id='velodyne', codec_id=1, quantization_bits=11, frustum_only=False,
        intensity_bits=8, intensity_max=1.0, num_points=1000, payload=b'draco' * 100)
    fields.update(changes)
    return LidarPacket(**fields)


KITTI_PROJECTION = CameraProjection(
    width=1242, height=375, P=(721.5377, 0.0, 609.5593, 44.85728, 0.0, 721.5377, 172.854, 0.2163791, 0.0, 0.0,
                               1.0, 0.002745884),
    T=(0.000234773, -0.9999441, -0.01056348, -0.002796816, 0.01044941, 0.01056535, -0.9998876, -0.07510879,
       0.9999453, 0.0001244714, 0.0104488, -0.2721327, 0.0, 0.0, 0.0, 1.0))


def reseal(data: bytes) -> bytes:
    """Recompute the CRC so that a test reaches the checks behind it."""
    body = data[:-4]
    return body + struct.pack('<I', zlib.crc32(body))


# --- round trips --------------------------------------------------------------------------------

image_packets = st.builds(
    lambda conditioned, scan_id, scan_stamp, width, height, extra_w, extra_h, substreams, z, y, stamp,
    quality, model_id: image_packet(
        lidar_conditioned=conditioned, scan_id=scan_id if conditioned else 0,
        scan_stamp_ns=scan_stamp if conditioned else 0, width=width, height=height,
        padded_width=-(-width // 64) * 64 + 64 * extra_w, padded_height=-(-height // 64) * 64 + 64 * extra_h,
        num_y_substreams=substreams, z_bytes=z, y_bytes=bytes([substreams]) + y, image_stamp_ns=stamp,
        quality=quality, model_id=model_id),
    st.booleans(), st.integers(0, 2 ** 32 - 1), st.integers(-2 ** 63, 2 ** 63 - 1), st.integers(1, 700),
    st.integers(1, 700), st.integers(0, 2), st.integers(0, 2), st.integers(1, 64), st.binary(max_size=300),
    st.binary(max_size=300), st.integers(-2 ** 63, 2 ** 63 - 1), st.integers(0, 255),
    st.binary(min_size=16, max_size=16))


@settings(max_examples=200, deadline=None)
@given(image_packets)
def test_image_packet_round_trip(packet):
    data = pack_image_packet(packet)
    assert packet_kind(data) == 'image'
    assert parse_image_packet(data) == packet


lidar_packets = st.builds(
    lambda scan_id, stamp, frame_id, bits, frustum, intensity_bits, intensity_max, points, payload,
    projection:
    lidar_packet(
        scan_id=scan_id, stamp_ns=stamp, frame_id=frame_id, quantization_bits=bits, frustum_only=frustum,
        intensity_bits=intensity_bits, intensity_max=intensity_max, num_points=points, payload=payload,
        projection=projection),
    st.integers(0, 2 ** 32 - 1), st.integers(-2 ** 63, 2 ** 63 - 1),
    st.text(st.characters(exclude_categories=['Cs']), max_size=60).filter(lambda s: len(s.encode()) <= 255),
    st.integers(0, 30), st.booleans(), st.integers(0, 16), st.floats(1e-3, 1e6), st.integers(0, 100_000),
    st.binary(max_size=500),
    st.none() | st.builds(CameraProjection, st.integers(1, 65535), st.integers(1, 65535),
                          st.lists(st.floats(allow_nan=False, allow_infinity=False),
                                   min_size=12, max_size=12),
                          st.lists(st.floats(allow_nan=False, allow_infinity=False),
                                   min_size=16, max_size=16)))


@settings(max_examples=200, deadline=None)
@given(lidar_packets)
def test_lidar_packet_round_trip(packet):
    data = pack_lidar_packet(packet)
    assert packet_kind(data) == 'lidar'
    assert parse_lidar_packet(data) == packet


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=100), max_size=20))
def test_container_round_trip(packets):
    assert parse_container(pack_container(packets)) == packets


def test_layout_is_byte_exact():
    data = pack_image_packet(image_packet(z_bytes=b'\x01', y_bytes=b'\x02\x03'))
    assert data[:4] == IMAGE_MAGIC and data[4] == 1 and data[5] == 0x02
    assert data[6:22] == bytes(range(16)) and data[22] == 3
    assert struct.unpack_from('<HHHH', data, 23) == (1242, 375, 1280, 384)
    stamps = (1_317_000_000_123_456_789, 42, 1_317_000_000_100_000_000, 2)
    assert struct.unpack_from('<qIqB', data, 31) == stamps
    assert data[52:61] == b'\x01\x00\x00\x00\x01\x02\x00\x00\x00' and data[61:63] == b'\x02\x03'
    assert struct.unpack('<I', data[-4:])[0] == zlib.crc32(data[:-4]) and len(data) == 67
    lidar = pack_lidar_packet(lidar_packet(frame_id='v', payload=b'p'))
    assert lidar[:5] == b'XMCL\x02' and lidar[17] == 1 and lidar[18:19] == b'v'
    assert struct.unpack_from('<BBBBfII', lidar, 19) == (1, 11, 0, 8, 1.0, 1000, 1) and lidar[35:36] == b'p'
    with_projection = pack_lidar_packet(lidar_packet(frame_id='v', payload=b'p', projection=KITTI_PROJECTION))
    assert with_projection[21] == 0x02 and len(with_projection) == len(lidar) + 228
    assert struct.unpack_from('<HH', with_projection, 35) == (1242, 375)
    assert struct.unpack_from('<12d', with_projection, 39) == KITTI_PROJECTION.P
    assert struct.unpack_from('<16d', with_projection, 135) == KITTI_PROJECTION.T
    assert with_projection[263:264] == b'p'


def test_version_1_lidar_packets_still_parse():
    """A version-1 packet (no projection block) parses; the projection flag is not valid in it."""
    v2 = pack_lidar_packet(lidar_packet())
    v1 = reseal(v2[:4] + b'\x01' + v2[5:])
    assert parse_lidar_packet(v1) == lidar_packet()
    flagged = bytearray(pack_lidar_packet(lidar_packet(projection=KITTI_PROJECTION)))
    flagged[4] = 1
    with pytest.raises(PacketError, match='unknown bits'):
        parse_lidar_packet(reseal(bytes(flagged)))


def test_projection_round_trips_exactly():
    packet = lidar_packet(projection=KITTI_PROJECTION)
    parsed = parse_lidar_packet(pack_lidar_packet(packet))
    assert parsed == packet and parsed.projection.P == KITTI_PROJECTION.P


# --- construction checks ------------------------------------------------------------------------

@pytest.mark.parametrize('changes, message', [
    (dict(model_id=b'short'), 'model_id'),
    (dict(padded_width=1260), 'multiple of 64'),
    (dict(padded_height=320), '>= 375'),
    (dict(width=0), 'width'),
    (dict(lidar_conditioned=False), 'image-only packet must have scan_id = 0'),
    (dict(num_y_substreams=3), 'start with its substream count 3'),
    (dict(num_y_substreams=0, y_bytes=b'\x00'), 'num_y_substreams'),
    (dict(z_bytes=bytes(section_cap(1280, 384) + 1)), 'at most'),
    (dict(quality=256), 'quality'),
    (dict(image_stamp_ns=2 ** 63), 'image_stamp_ns'),
])
def test_invalid_image_packets_are_rejected(changes, message):
    with pytest.raises(PacketError, match=message):
        image_packet(**changes)


@pytest.mark.parametrize('changes, message', [
    (dict(frame_id='x' * 256), 'at most 255'),
    (dict(frame_id='\ud800'), 'UTF-8'),
    (dict(codec_id=3), 'codec id 3 is unknown'),
    (dict(quantization_bits=31), 'quantization_bits'),
    (dict(intensity_bits=17), 'intensity_bits'),
    (dict(intensity_max=float('nan')), 'intensity_max'),
    (dict(intensity_max=1e-50), 'intensity_max'),
    (dict(num_points=0, payload=bytes(1025)), 'at most 1024'),
    (dict(projection='P'), 'CameraProjection'),
])
def test_invalid_lidar_packets_are_rejected(changes, message):
    with pytest.raises(PacketError, match=message):
        lidar_packet(**changes)


@pytest.mark.parametrize('changes, message', [
    (dict(width=0), 'projection width'),
    (dict(P=(1.0,) * 11), '12 finite'),
    (dict(T=(float('nan'),) * 16), '16 finite'),
    (dict(T='abc'), '16 numbers'),
])
def test_invalid_projections_are_rejected(changes, message):
    fields = dict(width=1242, height=375, P=KITTI_PROJECTION.P, T=KITTI_PROJECTION.T)
    fields.update(changes)
    with pytest.raises(PacketError, match=message):
        CameraProjection(**fields)


# --- parse checks with clear messages -----------------------------------------------------------

def test_parse_image_packet_messages():
    data = pack_image_packet(image_packet())
    with pytest.raises(PacketError, match='version 9 is not supported; this build reads versions 1'):
        parse_image_packet(data[:4] + b'\x09' + data[5:])
    with pytest.raises(PacketError, match='CRC32'):
        parse_image_packet(data[:30] + bytes([data[30] ^ 1]) + data[31:])
    with pytest.raises(PacketError, match='not a image packet'):
        parse_image_packet(pack_lidar_packet(lidar_packet()))
    with pytest.raises(PacketError, match='truncated'):
        parse_image_packet(data[:20])
    with pytest.raises(PacketError, match='cap of 100000'):
        parse_image_packet(data, max_pixels=100_000)
    assert parse_image_packet(data, max_pixels=1280 * 384).padded_width == 1280
    flags = bytearray(data)
    flags[5] = 0x03
    with pytest.raises(PacketError, match='exactly one'):
        parse_image_packet(reseal(bytes(flags)))
    inflated = bytearray(data)
    inflated[52:56] = struct.pack('<I', 2 ** 32 - 1)
    with pytest.raises(PacketError, match='more than the'):
        parse_image_packet(reseal(bytes(inflated)))
    inflated[52:56] = struct.pack('<I', 100_000)
    with pytest.raises(PacketError, match='remain'):
        parse_image_packet(reseal(bytes(inflated)))
    with pytest.raises(PacketError, match='unexpected bytes'):
        parse_image_packet(reseal(data[:-4] + b'\x00' + data[-4:]))
    with pytest.raises(PacketError, match='must be bytes'):
        parse_image_packet('text')


def test_parse_lidar_packet_messages():
    data = pack_lidar_packet(lidar_packet())
    with pytest.raises(PacketError, match='cap of 999'):
        parse_lidar_packet(data, max_points=999)
    bad_utf8 = bytearray(data)
    bad_utf8[18] = 0xFF
    with pytest.raises(PacketError, match='UTF-8'):
        parse_lidar_packet(reseal(bytes(bad_utf8)))
    flags = bytearray(data)
    flags[18 + 8 + 2] = 0x80  # 18-byte head, 8-byte frame id, codec, bits, flags
    with pytest.raises(PacketError, match='unknown bits'):
        parse_lidar_packet(reseal(bytes(flags)))


def test_packet_kind_and_container_messages():
    with pytest.raises(PacketError, match='unknown packet magic'):
        packet_kind(b'JUNKJUNK')
    container = pack_container([b'a', b'bc'])
    with pytest.raises(PacketError, match='declares 1000 packets'):
        parse_container(container[:5] + struct.pack('<I', 1000) + container[9:])
    with pytest.raises(PacketError, match='cap of 1'):
        parse_container(container, max_packets=1)
    with pytest.raises(PacketError, match='unexpected bytes'):
        parse_container(container + b'!')
    with pytest.raises(PacketError, match='version 2'):
        parse_container(container[:4] + b'\x02' + container[5:])


# --- mutation fuzzing ---------------------------------------------------------------------------

def _mutate(rng, data: bytes):
    """A damaged copy of ``data``, and whether its CRC was recomputed afterwards."""
    data = bytearray(data)
    kind = int(rng.integers(6))
    if kind == 0:  # flip a few bits
        for _ in range(int(rng.integers(1, 4))):
            position = int(rng.integers(len(data)))
            data[position] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # truncate
        data = data[:int(rng.integers(len(data)))]
    elif kind == 2:  # inflate or shrink a 32-bit field anywhere, then fix the CRC
        position = int(rng.integers(max(1, len(data) - 8)))
        value = int(rng.choice([0, 1, 2 ** 31, 2 ** 32 - 1, int(rng.integers(2 ** 32))]))
        data[position:position + 4] = struct.pack('<I', value)
        return reseal(bytes(data)), True
    elif kind == 3:  # random bytes after a valid prefix
        cut = int(rng.integers(len(data)))
        data[cut:] = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
    elif kind == 4:  # another version
        data[4] = int(rng.integers(256))
    else:  # random byte values, resealed so the field checks are reached
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data) - 4))] = int(rng.integers(256))
        return reseal(bytes(data)), True
    return bytes(data), False


def test_twenty_thousand_mutations_raise_only_packet_error():
    rng = np.random.default_rng(0)
    originals = [
        (parse_image_packet, pack_image_packet(image_packet())),
        (parse_image_packet, pack_image_packet(image_packet(
            lidar_conditioned=False, scan_id=0, scan_stamp_ns=0, num_y_substreams=1, z_bytes=b'',
            y_bytes=b'\x01'))),
        (parse_lidar_packet, pack_lidar_packet(lidar_packet())),
        (parse_lidar_packet, pack_lidar_packet(lidar_packet(num_points=0, payload=b'', frame_id=''))),
        (parse_lidar_packet, pack_lidar_packet(lidar_packet(projection=KITTI_PROJECTION))),
        (parse_container, pack_container([b'abc', pack_lidar_packet(lidar_packet())])),
    ]
    rejected = 0
    for trial in range(20_000):
        parse, original = originals[trial % len(originals)]
        mutated, resealed = _mutate(rng, original)
        try:
            parse(mutated)
        except PacketError:
            rejected += 1
        else:
            # Only a change the CRC cannot see may pass: a resealed edit that is itself a valid
            # packet, an edit inside a container's packet (packets carry their own CRC), or none.
            assert resealed or parse is parse_container or mutated == original
    assert rejected > 12_000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_packet_error(data):
    for parse in (parse_image_packet, parse_lidar_packet, parse_container, packet_kind):
        try:
            parse(data)
        except PacketError:
            pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bodies_behind_a_valid_prefix_raise_only_packet_error(body):
    for prefix in (b'XMCI\x01', b'XMCL\x01'):
        data = reseal(prefix + body + b'\x00\x00\x00\x00')
        for parse in (parse_image_packet, parse_lidar_packet):
            try:
                parse(data)
            except PacketError:
                pass


def test_max_pixels_default_is_8192_squared():
    assert MAX_PIXELS == 8192 * 8192
