"""FakeEncoder/FakeDecoder: a stand-in for codec.pipeline with the same API, for node tests only.

Images are quantised (step 2**(4 - quality)) and zlib-packed; scans are packed as float32 after
dropping non-finite points. Packets start with the real magics (so ``bitstream.packet_kind``
works) and end with a CRC32, so corrupted packets raise PacketError like the real ones.
Install it with :func:`install` (sys.modules), in-process or in a node subprocess.
"""
from __future__ import annotations

import struct
import sys
import types
import zlib
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from xmodal_compress_ros.codec.bitstream import IMAGE_MAGIC, LIDAR_MAGIC
from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig
from xmodal_compress_ros.errors import ImageFormatError, PacketError

NUM_QUALITIES = 4
_IMAGE = struct.Struct('<4s16sBHHqiqB')  # magic, model, quality, w, h, stamp, scan id (-1: none), scan stamp, only
_LIDAR = struct.Struct('<4sIqH')         # magic, scan id, stamp, frame id length


class UnknownModelError(PacketError):
    """The packet names a model the decoder does not have."""


@dataclass(frozen=True)
class EncoderConfig:
    model: str = 'models/xmodal-lidar'
    fallback_model: str = 'models/xmodal-hyperprior'
    backend: str = 'torch'
    device: str = 'cpu'
    precision: str = 'fp32'
    quality: int = 3
    lidar: LidarCodecConfig = field(default_factory=LidarCodecConfig)


@dataclass(frozen=True)
class DecoderConfig:
    models: tuple = ('models/xmodal-lidar', 'models/xmodal-hyperprior')
    backend: str = 'torch'
    device: str = 'cpu'
    precision: str = 'fp32'


@dataclass(frozen=True)
class DecodedScan:
    scan_id: int
    stamp_ns: int
    frame_id: str
    points: np.ndarray
    calib: object
    packet_bytes: int


@dataclass(frozen=True)
class EncodedImage:
    packet: bytes
    image_bytes: int
    bpp: float
    image_only: bool
    quality: int
    scan_id: Optional[int]


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray
    stamp_ns: int
    width: int
    height: int
    quality: int
    model_id: str
    image_only: bool
    lidar_missing: bool
    scan_id: Optional[int]


def _model_id(stem: str) -> bytes:
    return stem.encode()[-16:].ljust(16, b'\0')


def _seal(body: bytes) -> bytes:
    return body + struct.pack('<I', zlib.crc32(body))


def _open(data: bytes, magic: bytes) -> bytes:
    if len(data) < 8 or data[:4] != magic:
        raise PacketError(f'not a fake packet: magic {data[:4]!r}')
    body, (crc,) = data[:-4], struct.unpack('<I', data[-4:])
    if zlib.crc32(body) != crc:
        raise PacketError('fake packet is corrupted: CRC mismatch')
    return body


class FakeEncoder:
    num_qualities = NUM_QUALITIES

    def __init__(self, config: EncoderConfig, calib) -> None:
        self.config = config
        self.calib = calib
        self._next_scan = 1

    def encode_scan(self, points, stamp_ns, frame_id='lidar') -> Tuple[bytes, DecodedScan]:
        points = np.asarray(points, np.float32)[:, :4]
        points = points[np.isfinite(points[:, :3]).all(axis=1)]
        name = frame_id.encode()
        packet = _seal(_LIDAR.pack(LIDAR_MAGIC, self._next_scan, stamp_ns, len(name)) + name + points.tobytes())
        scan = DecodedScan(self._next_scan, stamp_ns, frame_id, points, self.calib, len(packet))
        self._next_scan += 1
        return packet, scan

    def encode_image(self, image, stamp_ns, scan, quality=None) -> EncodedImage:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageFormatError(f'image must be (H, W, 3) uint8, got {image.shape} {image.dtype}')
        quality = self.config.quality if quality is None else quality
        height, width = image.shape[:2]
        if (width, height) != (self.calib.width, self.calib.height):
            scan = None
        step = 2 ** (NUM_QUALITIES - quality)
        coded = (image // step).astype(np.uint8)
        model = self.config.fallback_model if scan is None else self.config.model
        header = _IMAGE.pack(IMAGE_MAGIC, _model_id(model), quality, width, height, stamp_ns,
                             -1 if scan is None else scan.scan_id, 0 if scan is None else scan.stamp_ns,
                             scan is None)
        packet = _seal(header + zlib.compress(coded.tobytes(), 1))
        return EncodedImage(packet, len(packet), 8.0 * len(packet) / (width * height), scan is None, quality,
                            None if scan is None else scan.scan_id)


class FakeDecoder:
    def __init__(self, config: DecoderConfig) -> None:
        self.models = {_model_id(stem): stem for stem in config.models}

    def decode_lidar(self, packet: bytes) -> DecodedScan:
        body = _open(packet, LIDAR_MAGIC)
        _, scan_id, stamp, name_len = _LIDAR.unpack_from(body)
        start = _LIDAR.size + name_len
        points = np.frombuffer(body[start:], np.float32).reshape(-1, 4)
        return DecodedScan(scan_id, stamp, body[_LIDAR.size:start].decode(), points, None, len(packet))

    def scan_reference(self, packet: bytes):
        body = _open(packet, IMAGE_MAGIC)
        fields = _IMAGE.unpack_from(body)
        return None if fields[6] < 0 else (fields[6], fields[7])

    def decode_image(self, packet: bytes, scan) -> DecodedImage:
        body = _open(packet, IMAGE_MAGIC)
        _, model, quality, width, height, stamp, scan_id, _, image_only = _IMAGE.unpack_from(body)
        if model not in self.models:
            raise UnknownModelError(f'model id {model!r} is not among the decoder models')
        step = 2 ** (NUM_QUALITIES - quality)
        coded = np.frombuffer(zlib.decompress(body[_IMAGE.size:]), np.uint8).reshape(height, width, 3)
        rgb = (coded.astype(np.uint16) * step + step // 2).clip(0, 255).astype(np.uint8)
        lidar_missing = not image_only and (scan is None or scan.scan_id != scan_id)
        return DecodedImage(rgb, stamp, width, height, quality, self.models[model], bool(image_only),
                            lidar_missing, None if image_only else scan_id)


def install() -> None:
    """Make ``xmodal_compress_ros.codec.pipeline`` this fake (for the current process)."""
    module = types.ModuleType('xmodal_compress_ros.codec.pipeline')
    module.__dict__.update(EncoderConfig=EncoderConfig, DecoderConfig=DecoderConfig, DecodedScan=DecodedScan,
                           EncodedImage=EncodedImage, DecodedImage=DecodedImage, Encoder=FakeEncoder,
                           Decoder=FakeDecoder, UnknownModelError=UnknownModelError,
                           LidarCodecConfig=LidarCodecConfig)
    sys.modules['xmodal_compress_ros.codec.pipeline'] = module
    import xmodal_compress_ros.codec as codec_package

    codec_package.pipeline = module
