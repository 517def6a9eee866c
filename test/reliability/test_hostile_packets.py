"""The decoder under hostile packets: it decodes or raises PacketError, fast and within an allocation bound.

Mutations are applied with and without recomputing the CRC: with the CRC recomputed they reach the
header checks, the section parsers, the entropy decoder and Draco.
"""

import random
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import packet_fuzz
from xmodal_compress_ros.codec import bitstream
from xmodal_compress_ros.codec.pipeline import UnknownModelError
from xmodal_compress_ros.errors import PacketError

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _check(outcome, data):
    assert outcome.status in ('decoded', 'rejected'), outcome.error
    assert not outcome.hang, f'{outcome.cpu_ms:.0f} ms of CPU for one packet'
    assert not outcome.over_bound, f'{outcome.peak_alloc} bytes allocated, bound {outcome.bound}'


@pytest.fixture(scope='module')
def harness(codec_kit):
    return packet_fuzz.DecodeHarness(codec_kit.decoder, codec_kit.scans)


def test_seed_packets_decode(codec_kit, harness):
    kinds = [harness.feed(p) for p in codec_kit.seeds]
    assert [o.status for o in kinds] == ['decoded'] * len(codec_kit.seeds)
    assert {o.kind for o in kinds} == {'image', 'lidar'}


@SETTINGS
@given(
    index=st.integers(0, 5),
    kind=st.sampled_from(packet_fuzz.MUTATIONS),
    reseal=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    rounds=st.integers(1, 3),
)
def test_mutated_packets_decode_or_raise_packet_error(codec_kit, harness, index, kind, reseal, seed, rounds):
    rng = random.Random(seed)
    data = codec_kit.seeds[index]
    for _ in range(rounds):
        data = packet_fuzz.mutate(data, rng, kind, reseal_crc=reseal, pool=codec_kit.seeds)
    _check(harness.feed(data), data)


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from([b'XMCI\x01', b'XMCL\x01', b'XMCL\x02', b'']))
def test_random_bytes_are_rejected(harness, body, prefix):
    data = packet_fuzz.reseal(prefix + body)
    outcome = harness.feed(data)
    _check(outcome, data)
    assert outcome.status == 'rejected'


@pytest.mark.parametrize('index', [0, 1])
def test_every_truncation_is_rejected(codec_kit, harness, index):
    packet = codec_kit.seeds[index]
    for cut in range(0, len(packet), max(1, len(packet) // 300)):
        for data in (packet[:cut], packet_fuzz.reseal(packet[:cut])):
            outcome = harness.feed(data)
            _check(outcome, data)
            assert outcome.status == 'rejected', f'a packet cut to {cut} bytes decoded'


@pytest.mark.parametrize('index', [0, 1])
def test_every_version_but_the_supported_ones_is_rejected(codec_kit, harness, index):
    packet = codec_kit.seeds[index]
    supported = bitstream.SUPPORTED_LIDAR_VERSIONS if index == 0 else bitstream.SUPPORTED_IMAGE_VERSIONS
    for version in range(256):
        data = packet_fuzz.reseal(packet[:4] + bytes([version]) + packet[5:])
        outcome = harness.feed(data)
        _check(outcome, data)
        if version not in supported:
            assert outcome.status == 'rejected' and 'version' in outcome.error


@pytest.mark.parametrize('index', [0, 1])
def test_inflated_lengths_are_rejected_without_allocating(codec_kit, harness, index):
    packet = codec_kit.seeds[index]
    fields = packet_fuzz._length_fields(packet)
    assert len(fields) >= 3
    for offset, fmt in fields:
        for value in (0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF):
            data = bytearray(packet)
            struct.pack_into(fmt, data, offset, value & ((1 << 8 * struct.calcsize(fmt)) - 1))
            data = packet_fuzz.reseal(bytes(data))
            if data == packet:
                continue
            _check(harness.feed(data), data)


def test_declared_image_size_beyond_the_cap_is_refused_before_decoding(codec_kit, harness):
    data = bytearray(codec_kit.seeds[1])
    struct.pack_into('<HH', data, 27, 0xFFC0, 0xFFC0)  # 65472 x 65472 padded: 4.3 G pixels
    outcome = harness.feed(packet_fuzz.reseal(bytes(data)))
    assert outcome.status == 'rejected' and 'cap' in outcome.error
    assert outcome.cpu_ms < 50


def test_decoded_mutants_have_the_declared_size(codec_kit):
    """A damaged packet that still decodes (the CRC is not a signature) yields a well-formed image."""
    rng = random.Random(7)
    decoded = 0
    for _ in range(300):
        data = packet_fuzz.mutate(codec_kit.seeds[2], rng, 'bit_flip', reseal_crc=True)
        try:
            image = codec_kit.decoder.decode_image(data, None)
        except PacketError:
            continue
        decoded += 1
        assert image.rgb.shape == (image.height, image.width, 3) and image.rgb.dtype == np.uint8
    assert decoded > 0


def test_unknown_model_is_a_packet_error_naming_the_id(codec_kit):
    data = bytearray(codec_kit.seeds[1])
    data[6:22] = bytes(range(16))
    with pytest.raises(UnknownModelError, match=bytes(range(16)).hex()):
        codec_kit.decoder.decode_image(packet_fuzz.reseal(bytes(data)), None)
    assert issubclass(UnknownModelError, PacketError)


def test_draco_point_count_is_checked_before_draco_allocates(codec_kit, harness):
    """Found by fuzzing: a Draco stream declaring 134 M points made Draco take 3 GB and 2 s before failing."""
    from xmodal_compress_ros.codec.bitstream import pack_lidar_packet
    from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig, encode_scan

    _, cloud = packet_fuzz.procedural_frame(64, 64, 2000, seed=0)
    encoded = encode_scan(cloud, LidarCodecConfig(codec='draco'))
    packet = bytearray(pack_lidar_packet(encoded.to_packet(0, 0, 'velodyne')))
    draco = bytes(packet).index(b'DRACO')
    struct.pack_into('<i', packet, draco + 11, 134_219_728)
    outcome = harness.feed(packet_fuzz.reseal(bytes(packet)))
    assert outcome.status == 'rejected' and 'Draco stream of 134219728 points' in outcome.error
    assert outcome.cpu_ms < 50 and not outcome.rss_jump


def test_the_decoder_applies_its_own_pixel_cap_before_decoding(codec_kit):
    """A legitimate 64x64 packet is refused by a decoder capped below it, naming the cap."""
    import dataclasses

    from xmodal_compress_ros.codec import pipeline

    config = dataclasses.replace(codec_kit.decoder.config, max_pixels=64 * 63)
    capped = pipeline.Decoder(config)
    image_packet = next(p for p in codec_kit.seeds if p[:4] == bitstream.IMAGE_MAGIC)
    with pytest.raises(PacketError, match='cap of 4032'):
        capped.decode_image(image_packet, None)
    with pytest.raises(PacketError, match='cap of 4032'):
        capped.scan_reference(image_packet)
    assert codec_kit.decoder.decode_image(image_packet, None).rgb.shape == (64, 64, 3)


def test_the_default_decoder_cap_admits_4k_and_refuses_the_format_maximum():
    from xmodal_compress_ros.codec.pipeline import DecoderConfig

    cap = DecoderConfig().max_pixels
    assert 3840 * 2176 <= cap < bitstream.MAX_PIXELS
