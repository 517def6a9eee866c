"""Versioned, checked packets: one coded image, one coded LiDAR scan, and a file of packets.

Every packet starts with a 4-byte magic and a format version and ends with the CRC32 of all
bytes before it. Parsing never trusts a length: each declared size is bounded by a cap derived
from the packet's own declared dimensions and by the bytes actually present, so truncated,
bit-flipped, length-inflated or version-mangled input raises :class:`PacketError` (never another
exception type, never a large allocation). The byte layout is specified in ``docs/bitstream.md``.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Optional

from xmodal_compress_ros.errors import PacketError

IMAGE_MAGIC = b'XMCI'
LIDAR_MAGIC = b'XMCL'
CONTAINER_MAGIC = b'XMCF'
#: Version 1: a single intra-coded image. Version 2 adds the stream block (key or P frame, frame
#: numbers, the camera's motion); a key frame numbered 0 without motion is still written as version 1.
#: Version 3: a P frame's stream block ends with its prediction block (codec.latent_prediction); a P
#: frame without one is still written as version 2.
IMAGE_VERSION = 3
LIDAR_VERSION = 2
CONTAINER_VERSION = 1
SUPPORTED_IMAGE_VERSIONS = (1, 2, 3)
SUPPORTED_LIDAR_VERSIONS = (1, 2)
SUPPORTED_CONTAINER_VERSIONS = (1,)

MODEL_ID_BYTES = 16
#: Padded image sides are multiples of this (the total downsampling of the analysis transforms).
PAD_MULTIPLE = 64
#: Default cap on padded width x padded height accepted by :func:`parse_image_packet`.
MAX_PIXELS = 8192 * 8192
#: Most substreams an entropy-coded section may hold (see codec.entropy.MAX_SUBSTREAMS).
MAX_SUBSTREAMS = 64
FLAG_IMAGE_ONLY = 0x01
FLAG_LIDAR_CONDITIONED = 0x02

#: Frame kinds of the stream block.
FRAME_KEY = 0
FRAME_PREDICTED = 1
FRAME_KINDS = {FRAME_KEY: 'key', FRAME_PREDICTED: 'P'}
#: Most bytes of the camera motion a P packet carries (see geometry.ego_motion.encode_pose).
MAX_POSE_BYTES = 32
#: Most bytes of a P frame's prediction block (per-channel choices and block motion, deflated).
MAX_PREDICTION_BYTES = 0xFFFF

LIDAR_CODEC_DRACO = 1
LIDAR_CODEC_PREDICTIVE = 2
LIDAR_CODECS = {LIDAR_CODEC_DRACO: 'draco', LIDAR_CODEC_PREDICTIVE: 'predictive'}
#: Default cap on the points of one scan accepted by :func:`parse_lidar_packet`.
MAX_LIDAR_POINTS = 4_000_000
MAX_FRAME_ID_BYTES = 255
MAX_QUANTIZATION_BITS = 30
MAX_INTENSITY_BITS = 16
FLAG_FRUSTUM_ONLY = 0x01
#: LiDAR packet version >= 2: a camera projection block precedes the payload.
FLAG_HAS_PROJECTION = 0x02
_LIDAR_FLAGS = {1: FLAG_FRUSTUM_ONLY, 2: FLAG_FRUSTUM_ONLY | FLAG_HAS_PROJECTION}

#: Default cap on the packets of one container.
MAX_CONTAINER_PACKETS = 1_000_000

_CRC = struct.Struct('<I')
_U32 = struct.Struct('<I')
_U16 = struct.Struct('<H')
_PREFIX = struct.Struct('<4sB')
# magic, version, flags, model id, quality, width, height, padded width, padded height,
# image stamp, scan id, scan stamp, y substreams
_IMAGE_HEADER = struct.Struct('<4sBB16sBHHHHqIqB')
# version 2 only: frame kind, frame number, reference frame number, motion length (motion follows)
_STREAM_BLOCK = struct.Struct('<BIIB')
# magic, version, scan id, stamp, frame id length
_LIDAR_HEAD = struct.Struct('<4sBIqB')
# codec, quantization bits, flags, intensity bits, intensity max, points, payload length
_LIDAR_TAIL = struct.Struct('<BBBBfII')
_CONTAINER_HEADER = struct.Struct('<4sBI')
# image width, image height, P (3x4), T' = R_rect(4x4) @ T_cam_lidar (4x4), row-major
_PROJECTION = struct.Struct('<HH12d16d')

_INT64 = (-(1 << 63), (1 << 63) - 1)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PacketError(message)


def _check_int(name: str, value: int, low: int, high: int) -> None:
    _require(
        isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
        f'{name} is {value!r}; it must be an int in {low}..{high}')


def section_cap(padded_width: int, padded_height: int) -> int:
    """Most bytes an entropy-coded section of an image of this padded size may hold."""
    return 4 * padded_width * padded_height + 1024


@dataclass(frozen=True)
class ImagePacket:
    """One coded camera image.

    Attributes:
        model_id: 16 bytes, the hash of the weights that coded it (the decoder must match).
        quality: the model's quality level, 0..255.
        width, height: the original image size in pixels.
        padded_width, padded_height: the coded size: multiples of 64, >= the original size.
        image_stamp_ns: acquisition time of the image.
        lidar_conditioned: True if coded conditioned on the scan named below; False for the
            image-only fallback (then scan_id and scan_stamp_ns are 0).
        scan_id, scan_stamp_ns: the LiDAR packet the decoder must condition on.
        num_y_substreams: independent substreams of the y section (equals its first byte).
        z_bytes, y_bytes: the entropy-coded hyper-latent and latent sections.
        frame_kind: :data:`FRAME_KEY` (intra) or :data:`FRAME_PREDICTED` (coded against the
            reference frame).
        frame_number: the frame's number in its stream (wraps at 2**32).
        reference_number: the frame a P frame was predicted from (0 for key frames).
        pose: the camera motion from the current to the reference frame, as
            :func:`geometry.ego_motion.encode_pose` wrote it (P frames; empty for key frames).
        prediction: the P frame's prediction block, as :func:`codec.latent_prediction.pack_prediction`
            wrote it (empty: the intra model's means and scales, no block motion).

    Construction validates every field and raises :class:`PacketError`.
    """

    model_id: bytes
    quality: int
    width: int
    height: int
    padded_width: int
    padded_height: int
    image_stamp_ns: int
    lidar_conditioned: bool
    scan_id: int
    scan_stamp_ns: int
    num_y_substreams: int
    z_bytes: bytes = field(repr=False)
    y_bytes: bytes = field(repr=False)
    frame_kind: int = FRAME_KEY
    frame_number: int = 0
    reference_number: int = 0
    pose: bytes = b''
    prediction: bytes = b''

    def __post_init__(self) -> None:
        _require(self.frame_kind in FRAME_KINDS, f'frame_kind is {self.frame_kind!r}; it must be one of '
                 f'{sorted(FRAME_KINDS)}')
        _check_int('frame_number', self.frame_number, 0, 0xFFFFFFFF)
        _check_int('reference_number', self.reference_number, 0, 0xFFFFFFFF)
        _require(isinstance(self.pose, bytes) and len(self.pose) <= MAX_POSE_BYTES,
                 f'pose must be at most {MAX_POSE_BYTES} bytes, got {self.pose!r}')
        _require(isinstance(self.prediction, bytes) and len(self.prediction) <= MAX_PREDICTION_BYTES,
                 f'prediction must be at most {MAX_PREDICTION_BYTES} bytes')
        _require(self.frame_kind == FRAME_PREDICTED or (self.reference_number == 0 and not self.pose
                                                        and not self.prediction),
                 'a key frame has no reference_number, no pose and no prediction')
        _require(isinstance(self.model_id, bytes) and len(self.model_id) == MODEL_ID_BYTES,
                 f'model_id must be {MODEL_ID_BYTES} bytes, got {self.model_id!r}')
        _check_int('quality', self.quality, 0, 255)
        _check_int('width', self.width, 1, 0xFFFF)
        _check_int('height', self.height, 1, 0xFFFF)
        for name, padded, original in (('padded_width', self.padded_width, self.width),
                                       ('padded_height', self.padded_height, self.height)):
            _check_int(name, padded, PAD_MULTIPLE, 0xFFFF)
            _require(padded >= original and padded % PAD_MULTIPLE == 0,
                     f'{name} is {padded}; it must be a multiple of {PAD_MULTIPLE} and >= {original}')
        _check_int('image_stamp_ns', self.image_stamp_ns, *_INT64)
        _require(isinstance(self.lidar_conditioned, bool),
                 f'lidar_conditioned must be a bool, got {self.lidar_conditioned!r}')
        _check_int('scan_id', self.scan_id, 0, 0xFFFFFFFF)
        _check_int('scan_stamp_ns', self.scan_stamp_ns, *_INT64)
        _require(self.lidar_conditioned or (self.scan_id == 0 and self.scan_stamp_ns == 0),
                 'an image-only packet must have scan_id = 0 and scan_stamp_ns = 0, got '
                 f'{self.scan_id} and {self.scan_stamp_ns}')
        _check_int('num_y_substreams', self.num_y_substreams, 1, MAX_SUBSTREAMS)
        cap = section_cap(self.padded_width, self.padded_height)
        for name in ('z_bytes', 'y_bytes'):
            value = getattr(self, name)
            _require(isinstance(value, bytes), f'{name} must be bytes, got {type(value).__name__}')
            _require(len(value) <= cap, f'{name} holds {len(value)} bytes; an image of '
                     f'{self.padded_width}x{self.padded_height} allows at most {cap}')
        _require(self.y_bytes[:1] == bytes([self.num_y_substreams]),
                 f'the y section must start with its substream count {self.num_y_substreams}, '
                 f'got {self.y_bytes[:1]!r}')

    @property
    def flags(self) -> int:
        return FLAG_LIDAR_CONDITIONED if self.lidar_conditioned else FLAG_IMAGE_ONLY

    @property
    def predicted(self) -> bool:
        return self.frame_kind == FRAME_PREDICTED

    @property
    def version(self) -> int:
        """1 for a lone intra frame (frame 0 of no stream), 3 for a P frame with a prediction block, else 2
        (the stream block is written)."""
        if self.prediction:
            return 3
        return 1 if self.frame_kind == FRAME_KEY and self.frame_number == 0 else 2


def _seal(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


def _open(data: bytes, magic: bytes, kind: str, supported: tuple, minimum: int) -> bytes:
    """Check type, magic, version, minimum size and CRC; return the bytes without the CRC."""
    _require(isinstance(data, (bytes, bytearray, memoryview)),
             f'a {kind} packet must be bytes, got {type(data).__name__}')
    data = bytes(data)
    _require(len(data) >= _PREFIX.size, f'{kind} packet is truncated: {len(data)} bytes')
    found, version = _PREFIX.unpack_from(data)
    _require(found == magic, f'not a {kind} packet: magic {found!r}, expected {magic!r}')
    _require(version in supported, f'{kind} packet format version {version} is not supported; '
             f'this build reads versions {", ".join(map(str, supported))}; update the decoder')
    _require(len(data) >= minimum,
             f'{kind} packet is truncated: {len(data)} bytes, at least {minimum} needed')
    body = data[:-_CRC.size]
    (expected,) = _CRC.unpack_from(data, len(body))
    actual = zlib.crc32(body)
    _require(actual == expected, f'{kind} packet is corrupted: CRC32 {actual:08x} != stored {expected:08x}')
    return body


def _read_section(body: bytes, offset: int, cap: int, name: str) -> tuple:
    _require(offset + _U32.size <= len(body),
             f'{name} length is missing: packet truncated at {len(body)} bytes')
    (length,) = _U32.unpack_from(body, offset)
    offset += _U32.size
    _require(length <= cap, f'{name} declares {length} bytes, more than the {cap} its image size allows')
    _require(offset + length <= len(body),
             f'{name} declares {length} bytes but only {len(body) - offset} remain: packet truncated')
    return body[offset:offset + length], offset + length


def pack_image_packet(packet: ImagePacket) -> bytes:
    """Serialize an :class:`ImagePacket` (layout in ``docs/bitstream.md``)."""
    header = _IMAGE_HEADER.pack(
        IMAGE_MAGIC, packet.version, packet.flags, packet.model_id, packet.quality,
        packet.width, packet.height, packet.padded_width, packet.padded_height,
        packet.image_stamp_ns, packet.scan_id, packet.scan_stamp_ns, packet.num_y_substreams)
    if packet.version >= 2:
        header += _STREAM_BLOCK.pack(packet.frame_kind, packet.frame_number, packet.reference_number,
                                     len(packet.pose)) + packet.pose
    if packet.version >= 3:
        header += _U16.pack(len(packet.prediction)) + packet.prediction
    return _seal(b''.join((header, _U32.pack(len(packet.z_bytes)), packet.z_bytes,
                           _U32.pack(len(packet.y_bytes)), packet.y_bytes)))


def parse_image_packet(data: bytes, max_pixels: int = MAX_PIXELS) -> ImagePacket:
    """Parse and check an image packet; any inconsistency raises :class:`PacketError`.

    Args:
        data: the packet bytes.
        max_pixels: the largest padded width x height accepted (a resource cap).
    """
    minimum = _IMAGE_HEADER.size + 2 * _U32.size + _CRC.size
    body = _open(data, IMAGE_MAGIC, 'image', SUPPORTED_IMAGE_VERSIONS, minimum)
    (_, version, flags, model_id, quality, width, height, padded_width, padded_height,
     image_stamp_ns, scan_id, scan_stamp_ns, substreams) = _IMAGE_HEADER.unpack_from(body)
    _require(flags in (FLAG_IMAGE_ONLY, FLAG_LIDAR_CONDITIONED),
             f'image packet flags are 0x{flags:02x}; exactly one of 0x01 (image-only) and '
             '0x02 (LiDAR-conditioned) must be set')
    _require(padded_width * padded_height <= max_pixels,
             f'image packet declares {padded_width}x{padded_height} padded pixels, more than the '
             f'cap of {max_pixels}; raise max_pixels if such images are expected')
    # Checked here too so that the section cap below is computed from sane sizes.
    _require(padded_width % PAD_MULTIPLE == 0 and padded_height % PAD_MULTIPLE == 0,
             f'image packet padded size {padded_width}x{padded_height} is not a multiple of {PAD_MULTIPLE}')
    cap = section_cap(padded_width, padded_height)
    stream, offset = _read_stream_block(body, version)
    z_bytes, offset = _read_section(body, offset, cap, 'z section')
    y_bytes, offset = _read_section(body, offset, cap, 'y section')
    _require(offset == len(body),
             f'image packet has {len(body) - offset} unexpected bytes after its sections')
    return ImagePacket(
        model_id=model_id, quality=quality, width=width, height=height, padded_width=padded_width,
        padded_height=padded_height, image_stamp_ns=image_stamp_ns,
        lidar_conditioned=flags == FLAG_LIDAR_CONDITIONED, scan_id=scan_id, scan_stamp_ns=scan_stamp_ns,
        num_y_substreams=substreams, z_bytes=z_bytes, y_bytes=y_bytes, **stream)


def _read_stream_block(body: bytes, version: int) -> tuple:
    """(ImagePacket stream fields, offset after them); version 1 has none."""
    if version < 2:
        return {}, _IMAGE_HEADER.size
    offset = _IMAGE_HEADER.size
    _require(offset + _STREAM_BLOCK.size <= len(body),
             f'image packet stream block is missing: packet truncated at {len(body)} bytes')
    kind, number, reference, pose_length = _STREAM_BLOCK.unpack_from(body, offset)
    offset += _STREAM_BLOCK.size
    _require(kind in FRAME_KINDS, f'image packet frame kind {kind} is unknown; known: {sorted(FRAME_KINDS)}')
    _require(pose_length <= MAX_POSE_BYTES and offset + pose_length <= len(body),
             f'image packet declares {pose_length} bytes of motion; at most {MAX_POSE_BYTES} are allowed '
             f'and {len(body) - offset} remain')
    pose = body[offset:offset + pose_length]
    offset += pose_length
    fields = dict(frame_kind=kind, frame_number=number, reference_number=reference, pose=pose)
    if version < 3:
        return fields, offset
    _require(kind == FRAME_PREDICTED,
             'image packet version 3 holds a prediction block, so it must be a P frame')
    _require(offset + _U16.size <= len(body),
             f'image packet prediction block is missing: packet truncated at {len(body)} bytes')
    (length,) = _U16.unpack_from(body, offset)
    offset += _U16.size
    _require(0 < length and offset + length <= len(body),
             f'image packet declares a prediction block of {length} bytes; {len(body) - offset} remain')
    fields['prediction'] = body[offset:offset + length]
    return fields, offset + length


@dataclass(frozen=True)
class CameraProjection:
    """The projection a LiDAR packet carries so the decoder conditions images exactly as the encoder did.

    ``pixel ~ P @ T @ [x, y, z, 1]`` for LiDAR points: ``P`` the rectified 3x4 projection matrix,
    ``T`` the 4x4 LiDAR-to-rectified-camera transform (``R_rect`` already folded in). Both ends
    build their :class:`Calibration` from exactly these float64 values.

    Attributes:
        width, height: the camera image size, 1..65535.
        P: 12 floats, row-major 3x4.
        T: 16 floats, row-major 4x4.
    """

    width: int
    height: int
    P: tuple
    T: tuple

    def __post_init__(self) -> None:
        _check_int('projection width', self.width, 1, 0xFFFF)
        _check_int('projection height', self.height, 1, 0xFFFF)
        for name, count in (('P', 12), ('T', 16)):
            values = getattr(self, name)
            try:
                values = tuple(float(v) for v in values)
            except (TypeError, ValueError):
                raise PacketError(f'projection {name} must be {count} numbers, got {values!r}') from None
            _require(len(values) == count and all(math.isfinite(v) for v in values),
                     f'projection {name} must be {count} finite numbers, got {values!r}')
            object.__setattr__(self, name, values)


def lidar_payload_cap(num_points: int) -> int:
    """Most payload bytes a scan of ``num_points`` points may hold (lossless Draco needs ~14)."""
    return 32 * num_points + 1024


@dataclass(frozen=True)
class LidarPacket:
    """One coded LiDAR scan, sent alongside the images that were conditioned on it.

    Attributes:
        scan_id: sequence number that image packets refer to.
        stamp_ns: acquisition time of the scan.
        frame_id: the LiDAR's TF frame, at most 255 UTF-8 bytes.
        codec_id: 1 = Draco, 2 = predictive (see ``codec.lidar_codec``).
        quantization_bits: Draco position quantization, 0 (lossless) .. 30; 0 for the predictive
            codec (its bound travels in its payload).
        frustum_only: True if only points inside the camera frustum were kept.
        intensity_bits: bits of the quantized intensity channel, 0 = no intensity.
        intensity_max: intensity represented by the largest quantized value (> 0), kept as
            the nearest float32.
        num_points: points in the decoded scan.
        payload: the codec's bytes.
        projection: the camera projection images are conditioned with, or None (then the
            decoder cannot condition images on this scan; packets of version 1 have none).

    Construction validates every field and raises :class:`PacketError`.
    """

    scan_id: int
    stamp_ns: int
    frame_id: str
    codec_id: int
    quantization_bits: int
    frustum_only: bool
    intensity_bits: int
    intensity_max: float
    num_points: int
    payload: bytes = field(repr=False)
    projection: Optional[CameraProjection] = None

    def __post_init__(self) -> None:
        _check_int('scan_id', self.scan_id, 0, 0xFFFFFFFF)
        _check_int('stamp_ns', self.stamp_ns, *_INT64)
        _require(isinstance(self.frame_id, str), f'frame_id must be a str, got {self.frame_id!r}')
        try:
            encoded = self.frame_id.encode('utf-8')
        except UnicodeEncodeError:
            raise PacketError(f'frame_id {self.frame_id!r} is not encodable as UTF-8') from None
        _require(len(encoded) <= MAX_FRAME_ID_BYTES,
                 f'frame_id is {len(encoded)} UTF-8 bytes; at most {MAX_FRAME_ID_BYTES} are allowed')
        _require(self.codec_id in LIDAR_CODECS,
                 f'LiDAR codec id {self.codec_id!r} is unknown; known: '
                 + ', '.join(f'{k} ({v})' for k, v in LIDAR_CODECS.items()))
        _check_int('quantization_bits', self.quantization_bits, 0, MAX_QUANTIZATION_BITS)
        _require(isinstance(self.frustum_only, bool),
                 f'frustum_only must be a bool, got {self.frustum_only!r}')
        _check_int('intensity_bits', self.intensity_bits, 0, MAX_INTENSITY_BITS)
        _require(isinstance(self.intensity_max, (int, float)) and math.isfinite(self.intensity_max)
                 and 0 < self.intensity_max < 3.4e38,
                 f'intensity_max is {self.intensity_max!r}; it must be a positive finite float32')
        # Stored as float32: keep the value the parser will return, so packets round-trip exactly.
        (as_float32,) = struct.unpack('<f', struct.pack('<f', self.intensity_max))
        object.__setattr__(self, 'intensity_max', as_float32)
        _require(self.intensity_max > 0, 'intensity_max is below the smallest positive float32')
        _check_int('num_points', self.num_points, 0, 0xFFFFFFFF)
        _require(isinstance(self.payload, bytes), f'payload must be bytes, got {type(self.payload).__name__}')
        cap = lidar_payload_cap(self.num_points)
        _require(len(self.payload) <= cap,
                 f'LiDAR payload holds {len(self.payload)} bytes; {self.num_points} points allow '
                 f'at most {cap}')
        _require(self.projection is None or isinstance(self.projection, CameraProjection),
                 f'projection must be a CameraProjection or None, got {type(self.projection).__name__}')


def pack_lidar_packet(packet: LidarPacket) -> bytes:
    """Serialize a :class:`LidarPacket` (layout in ``docs/bitstream.md``)."""
    frame_id = packet.frame_id.encode('utf-8')
    flags = ((FLAG_FRUSTUM_ONLY if packet.frustum_only else 0)
             | (FLAG_HAS_PROJECTION if packet.projection else 0))
    projection = b''
    if packet.projection is not None:
        p = packet.projection
        projection = _PROJECTION.pack(p.width, p.height, *p.P, *p.T)
    return _seal(b''.join((
        _LIDAR_HEAD.pack(LIDAR_MAGIC, LIDAR_VERSION, packet.scan_id, packet.stamp_ns, len(frame_id)),
        frame_id,
        _LIDAR_TAIL.pack(packet.codec_id, packet.quantization_bits, flags, packet.intensity_bits,
                         packet.intensity_max, packet.num_points, len(packet.payload)),
        projection,
        packet.payload)))


def parse_lidar_packet(data: bytes, max_points: int = MAX_LIDAR_POINTS) -> LidarPacket:
    """Parse and check a LiDAR packet; any inconsistency raises :class:`PacketError`.

    Args:
        data: the packet bytes.
        max_points: the most points a scan may declare (a resource cap).
    """
    minimum = _LIDAR_HEAD.size + _LIDAR_TAIL.size + _CRC.size
    body = _open(data, LIDAR_MAGIC, 'LiDAR', SUPPORTED_LIDAR_VERSIONS, minimum)
    _, version, scan_id, stamp_ns, frame_id_length = _LIDAR_HEAD.unpack_from(body)
    offset = _LIDAR_HEAD.size + frame_id_length
    _require(offset + _LIDAR_TAIL.size <= len(body),
             f'LiDAR packet is truncated: its {frame_id_length}-byte frame id does not fit')
    try:
        frame_id = body[_LIDAR_HEAD.size:offset].decode('utf-8')
    except UnicodeDecodeError:
        raise PacketError('LiDAR packet frame id is not valid UTF-8') from None
    (codec_id, quantization_bits, flags, intensity_bits, intensity_max, num_points,
     payload_length) = _LIDAR_TAIL.unpack_from(body, offset)
    offset += _LIDAR_TAIL.size
    _require(flags & ~_LIDAR_FLAGS[version] == 0, f'LiDAR packet flags 0x{flags:02x} set unknown bits '
             f'(format version {version} allows 0x{_LIDAR_FLAGS[version]:02x})')
    _require(num_points <= max_points, f'LiDAR packet declares {num_points} points, more than the cap '
             f'of {max_points}; raise max_points if such scans are expected')
    cap = lidar_payload_cap(num_points)
    _require(payload_length <= cap, f'LiDAR payload declares {payload_length} bytes, more than the '
             f'{cap} that {num_points} points allow')
    projection = None
    if flags & FLAG_HAS_PROJECTION:
        _require(offset + _PROJECTION.size <= len(body),
                 'LiDAR packet is truncated inside its projection block')
        values = _PROJECTION.unpack_from(body, offset)
        offset += _PROJECTION.size
        projection = CameraProjection(width=values[0], height=values[1], P=values[2:14], T=values[14:30])
    _require(offset + payload_length == len(body), f'LiDAR payload declares {payload_length} bytes but '
             f'{len(body) - offset} remain')
    return LidarPacket(
        scan_id=scan_id, stamp_ns=stamp_ns, frame_id=frame_id, codec_id=codec_id,
        quantization_bits=quantization_bits, frustum_only=bool(flags & FLAG_FRUSTUM_ONLY),
        intensity_bits=intensity_bits, intensity_max=intensity_max, num_points=num_points,
        payload=body[offset:], projection=projection)


def packet_kind(data: bytes) -> str:
    """``'image'`` or ``'lidar'``, from the magic; anything else raises :class:`PacketError`."""
    _require(isinstance(data, (bytes, bytearray, memoryview)),
             f'a packet must be bytes, got {type(data).__name__}')
    magic = bytes(data[:4])
    if magic == IMAGE_MAGIC:
        return 'image'
    if magic == LIDAR_MAGIC:
        return 'lidar'
    raise PacketError(f'unknown packet magic {magic!r}; expected {IMAGE_MAGIC!r} or {LIDAR_MAGIC!r}')


def pack_container(packets: List[bytes]) -> bytes:
    """A ``.xmc`` file: the packets in order, each prefixed with its length."""
    _require(len(packets) <= MAX_CONTAINER_PACKETS,
             f'{len(packets)} packets exceed the container cap of {MAX_CONTAINER_PACKETS}')
    parts = [_CONTAINER_HEADER.pack(CONTAINER_MAGIC, CONTAINER_VERSION, len(packets))]
    for packet in packets:
        _require(isinstance(packet, bytes) and len(packet) <= 0xFFFFFFFF,
                 'each packet must be bytes under 4 GiB')
        parts += [_U32.pack(len(packet)), packet]
    return b''.join(parts)


def parse_container(data: bytes, max_packets: int = MAX_CONTAINER_PACKETS) -> List[bytes]:
    """The packets of a ``.xmc`` file (not parsed themselves); bad framing raises PacketError."""
    _require(isinstance(data, (bytes, bytearray, memoryview)),
             f'a container must be bytes, got {type(data).__name__}')
    data = bytes(data)
    _require(len(data) >= _CONTAINER_HEADER.size, f'container is truncated: {len(data)} bytes')
    magic, version, count = _CONTAINER_HEADER.unpack_from(data)
    _require(magic == CONTAINER_MAGIC,
             f'not an .xmc container: magic {magic!r}, expected {CONTAINER_MAGIC!r}')
    _require(version in SUPPORTED_CONTAINER_VERSIONS, f'container format version {version} is not '
             f'supported; this build reads versions {", ".join(map(str, SUPPORTED_CONTAINER_VERSIONS))}')
    # Each packet needs at least its 4-byte length, which bounds count by the data present.
    _require(count <= max_packets and count <= (len(data) - _CONTAINER_HEADER.size) // _U32.size,
             f'container declares {count} packets; its {len(data)} bytes and the cap of {max_packets} '
             'allow fewer')
    packets, offset = [], _CONTAINER_HEADER.size
    for index in range(count):
        _require(offset + _U32.size <= len(data), f'container is truncated before packet {index}')
        (length,) = _U32.unpack_from(data, offset)
        offset += _U32.size
        _require(offset + length <= len(data),
                 f'container packet {index} declares {length} bytes but {len(data) - offset} remain')
        packets.append(data[offset:offset + length])
        offset += length
    _require(offset == len(data), f'container has {len(data) - offset} unexpected bytes after its packets')
    return packets
