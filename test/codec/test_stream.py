"""The P-frame stream: key/P packets, the reference both ends keep, loss, late join, bad P packets.

Tiny untrained models (a P-frame model started from the tiny intra twin): what is tested is the
stream's bookkeeping and the parsing rule, not image quality.
"""
import struct
import zlib
from dataclasses import replace

import numpy as np
import pytest

from xmodal_compress_ros.codec.bitstream import (FRAME_KEY, FRAME_PREDICTED, pack_image_packet,
                                                 parse_image_packet)
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.ego_motion import POSE_BYTES
from xmodal_compress_ros.runtime.samples import (TINY_CONFIG, synthetic_frame, untrained_models,
                                                 untrained_pframe_model)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

WIDTH, HEIGHT = 128, 64
INTERVAL = 3
FRAMES = 6  # key, P, P, key, P, P


@pytest.fixture(scope='module')
def stems(tmp_path_factory):
    """(LiDAR, twin, P-frame) tiny model stems."""
    folder = tmp_path_factory.mktemp('models')
    lidar, twin = untrained_models(folder, TINY_CONFIG)
    return lidar, twin, untrained_pframe_model(folder, twin)


def _encoder(stems, interval=INTERVAL, **kwargs):
    config = EncoderConfig(model=stems[0], fallback_model=stems[1], pframe_model=stems[2], quality=2,
                           keyframe_interval=interval, warmup=False, **kwargs)
    return Encoder(config, synthetic_frame(WIDTH, HEIGHT).calib)


def _decoder(stems, **kwargs):
    return Decoder(DecoderConfig(models=tuple(stems), warmup=False, resolutions=((WIDTH, HEIGHT),), **kwargs))


class Stream:
    """One coded stream: per frame its LiDAR packet, image packet, and the encoder's reference after it."""

    def __init__(self, encoder, count=FRAMES):
        self.lidar, self.images, self.references = [], [], []
        for k in range(count):
            frame = synthetic_frame(WIDTH, HEIGHT, seed=k)
            lidar, scan = encoder.encode_scan(frame.points, 1000 + k)
            self.images.append(encoder.encode_image(frame.image, 2000 + k, scan))
            self.lidar.append(lidar)
            self.references.append(encoder._stream.reference.rgb.copy())

    def decode(self, decoder, skip_images=(), skip_scans=(), start=0, images=None):
        """Decoded images by frame (None where the image packet was skipped)."""
        images = images or [e.packet for e in self.images]
        out = []
        for k in range(start, len(self.images)):
            scan = None if k in skip_scans else decoder.decode_lidar(self.lidar[k])
            out.append(None if k in skip_images else decoder.decode_image(images[k], scan))
        return out


@pytest.fixture(scope='module')
def stream(stems):
    return Stream(_encoder(stems))


def test_key_and_p_packets_round_trip(stream):
    kinds = [e.frame_kind for e in stream.images]
    assert kinds == ['key', 'P', 'P'] * (FRAMES // INTERVAL)
    for k, encoded in enumerate(stream.images):
        parsed = parse_image_packet(encoded.packet)
        assert pack_image_packet(parsed) == encoded.packet
        assert parsed.frame_number == encoded.frame_number == k
        # The stream's first frame is the lone intra frame of version 1; later key frames carry the stream
        # block (version 2), P frames also their prediction block (version 3).
        assert encoded.packet[4] == (1 if k == 0 else 3 if encoded.frame_kind == 'P' else 2)
        assert bool(parsed.prediction) == (encoded.frame_kind == 'P')
        if encoded.frame_kind == 'P':
            assert parsed.frame_kind == FRAME_PREDICTED and parsed.reference_number == k - 1
            assert parsed.lidar_conditioned and len(parsed.pose) == POSE_BYTES
        else:
            assert parsed.frame_kind == FRAME_KEY and parsed.pose == b'' and parsed.reference_number == 0


def test_encoder_and_decoder_keep_identical_references(stems, stream):
    decoded = stream.decode(_decoder(stems))
    for k, image in enumerate(decoded):
        assert not image.degraded, (k, image.degraded_reason)
        assert image.frame_kind == stream.images[k].frame_kind and image.frame_number == k
        np.testing.assert_array_equal(image.rgb, stream.references[k])


def _garbage_reference(stems):
    """A decoder whose held reference is another stream's frame 0 (noise), numbered 0."""
    decoder, encoder = _decoder(stems), _encoder(stems)
    noise = np.random.default_rng(7).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    lidar, scan = encoder.encode_scan(synthetic_frame(WIDTH, HEIGHT, seed=9).points, 5)
    decoder.decode_image(encoder.encode_image(noise, 5, scan).packet, decoder.decode_lidar(lidar))
    return decoder


def test_p_packet_parses_identically_with_any_reference(stems, stream):
    p_frame = stream.images[2]
    expected = p_frame.latents
    correct = _decoder(stems)
    right = stream.decode(correct)[2]
    missing = _decoder(stems).decode_image(p_frame.packet, None)
    garbage = _garbage_reference(stems).decode_image(p_frame.packet, None)
    wrong_scan = _decoder(stems)
    stream.decode(wrong_scan, start=0)
    wrong = wrong_scan.decode_image(p_frame.packet, wrong_scan.decode_lidar(stream.lidar[4]))
    for image in (right, missing, garbage, wrong):
        np.testing.assert_array_equal(image.latents.z_hat, expected.z_hat)
        np.testing.assert_array_equal(image.latents.symbols, expected.symbols)
        np.testing.assert_array_equal(image.latents.indexes, expected.indexes)
    np.testing.assert_array_equal(correct.parse_latents(p_frame.packet).symbols, expected.symbols)
    assert not right.degraded and missing.degraded and garbage.degraded and wrong.degraded
    # The reference moves the reconstruction, and only that.
    assert not np.array_equal(missing.rgb, right.rgb)


def _degraded(images):
    return [None if image is None else image.degraded for image in images]


def test_a_lost_image_packet_degrades_until_the_next_key_frame(stems, stream):
    images = stream.decode(_decoder(stems), skip_images={1})
    assert _degraded(images) == [False, None, True, False, False, False]
    assert images[2].degraded_reason == 'reference frame 1 is lost (holding frame 0)'


def test_a_lost_scan_degrades_until_the_next_key_frame(stems, stream):
    images = stream.decode(_decoder(stems), skip_scans={1})
    assert _degraded(images) == [False, True, True, False, False, False]
    assert 'scan' in images[1].degraded_reason and images[2].degraded_reason == images[1].degraded_reason


def test_a_lost_pose_degrades_until_the_next_key_frame(stems, stream):
    packets = [e.packet for e in stream.images]
    packets[4] = pack_image_packet(replace(parse_image_packet(packets[4]), pose=b''))
    images = stream.decode(_decoder(stems), images=packets)
    assert _degraded(images) == [False, False, False, False, True, True]
    assert 'no motion' in images[4].degraded_reason


def test_an_unregistered_scan_codes_an_unaligned_p_frame_both_ends_agree_on(stems):
    encoder = _encoder(stems)
    decoder = _decoder(stems)
    for k in range(3):
        frame = synthetic_frame(WIDTH, HEIGHT, seed=k)
        lidar, scan = encoder.encode_scan(frame.points, 1000 + k)
        if k == 2:
            encoder._stream.poses.clear()  # the registration lost track: no motion to send
        encoded = encoder.encode_image(frame.image, 2000 + k, scan)
        image = decoder.decode_image(encoded.packet, decoder.decode_lidar(lidar))
        assert not image.degraded
        np.testing.assert_array_equal(image.rgb, encoder._stream.reference.rgb)
    parsed = parse_image_packet(encoded.packet)
    assert parsed.predicted and not parsed.lidar_conditioned and parsed.pose == b''


def test_late_join_waits_for_a_key_frame(stems, stream):
    images = stream.decode(_decoder(stems), start=1)
    assert _degraded(images) == [True, True, False, False, False]
    assert images[0].degraded_reason == 'no reference: waiting for a key frame'
    np.testing.assert_array_equal(images[2].rgb, stream.references[3])


def _with_model(packet: bytes, model_id: str) -> bytes:
    return pack_image_packet(replace(parse_image_packet(packet), model_id=bytes.fromhex(model_id)))


def test_packet_naming_the_wrong_kind_of_model_is_refused(stems, stream):
    decoder = _decoder(stems)
    ids = {stem: model_id for model_id, stem in decoder.model_ids.items()}
    with pytest.raises(PacketError, match='P frames need a P-frame model'):
        decoder.decode_image(_with_model(stream.images[1].packet, ids[stems[1]]), None)
    with pytest.raises(PacketError, match='P frames need a P-frame model'):
        decoder.decode_image(_with_model(stream.images[3].packet, ids[stems[2]]), None)
    with pytest.raises(PacketError):
        decoder.parse_latents(_with_model(stream.images[0].packet, ids[stems[2]]))


def _reseal(body: bytes) -> bytes:
    return body + struct.pack('<I', zlib.crc32(body))


STREAM_BLOCK = 52  # the version-2 stream block follows the 52-byte header (docs/bitstream.md)


def test_corrupted_and_truncated_p_packets_are_refused(stems, stream):
    decoder = _decoder(stems)
    stream.decode(decoder)  # holds a reference: the damaged packets get as far as they can
    packet = stream.images[4].packet
    for end in range(0, len(packet), 7):
        with pytest.raises(PacketError):
            decoder.decode_image(packet[:end], None)
    for bit in range(0, 8 * len(packet), 53):
        flipped = bytearray(packet)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(PacketError):
            decoder.decode_image(bytes(flipped), None)
    body = bytearray(packet[:-4])
    kind = body.copy()
    kind[STREAM_BLOCK] = 7
    with pytest.raises(PacketError, match='frame kind 7'):
        decoder.decode_image(_reseal(bytes(kind)), None)
    long_pose = body.copy()
    long_pose[STREAM_BLOCK + 9] = 200
    with pytest.raises(PacketError, match='bytes of motion'):
        decoder.decode_image(_reseal(bytes(long_pose)), None)
    # A pose of the wrong length is refused whether or not the decoder could use it.
    short_pose = pack_image_packet(replace(parse_image_packet(packet), pose=b'\x01' * 5))
    for held in (decoder, _decoder(stems)):
        with pytest.raises(PacketError, match='bytes of motion'):
            held.decode_image(short_pose, held.decode_lidar(stream.lidar[4]))


def test_keyframe_interval_1_writes_version_1_packets(stems, stream):
    encoder = _encoder(stems, interval=1)
    frame = synthetic_frame(WIDTH, HEIGHT, seed=0)
    for k in range(3):
        lidar, scan = encoder.encode_scan(frame.points, 1000 + k)
        encoded = encoder.encode_image(frame.image, 2000, scan)
        assert encoded.frame_kind == 'key' and encoded.frame_number == 0 and encoded.packet[4] == 1
        parsed = parse_image_packet(encoded.packet)
        # The version-1 layout: header, z section, y section, CRC, and no stream block.
        assert len(encoded.packet) == STREAM_BLOCK + 8 + len(parsed.z_bytes) + len(parsed.y_bytes) + 4
    # The same image and scan as the stream's first frame: the same bytes as the stream's key frame 0.
    alone = _encoder(stems, interval=1)
    lidar, scan = alone.encode_scan(frame.points, 1000)
    alone = alone.encode_image(frame.image, 2000, scan)
    assert alone.packet == stream.images[0].packet
