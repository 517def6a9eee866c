"""The LiDAR stream: coded scans that travel with the images and are counted in the rate.

Two codecs: ``'predictive'`` (:mod:`lidar_predictive`, the default: every coordinate within
``max_error`` metres, laser-order prediction for spinning sensors) and ``'draco'`` (Draco at
``quantization_bits``, for interoperability). The Draco payload is described below.

The image decoder conditions on the scan, so the scan must reach it: its bytes are part of every
rate this project reports. The encoder conditions the image on the *decoded* scan (it decodes its
own payload), so both ends condition on the same points.

Payload layout (version 1, little-endian; the LiDAR packet around it carries the point count
and the intensity scaling, see ``docs/lidar_stream.md``)::

    quantized positions (quantization_bits > 0):
        f32 origin x, y, z | f32 range | Draco point cloud
    lossless positions (quantization_bits = 0):
        Draco point cloud
    no points: empty

With quantized positions, decoded coordinates are snapped back onto the integer grid
``origin + q * range / (2**bits - 1)`` in float64 by :func:`decode_scan` itself, so they are
bit-identical on every machine whatever floating-point contraction Draco's build uses.
Intensity travels as a 1-component unsigned-integer Draco attribute.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from xmodal_compress_ros.codec import lidar_predictive
from xmodal_compress_ros.codec.bitstream import (
    LIDAR_CODEC_DRACO, LIDAR_CODEC_PREDICTIVE, LIDAR_CODECS, MAX_INTENSITY_BITS, MAX_QUANTIZATION_BITS,
    LidarPacket,
)
from xmodal_compress_ros.codec.point_checks import intensity_codes, intensity_column, split_points
from xmodal_compress_ros.errors import CalibrationError, PacketError, ParameterError
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.geometry.projection import MIN_DEPTH_M, check_points

#: Draco attribute id of the intensity channel.
INTENSITY_ATTRIBUTE = 0
#: Pixels beyond the image border that ``frustum_only`` still keeps.
FRUSTUM_MARGIN_PX = 2
#: Smallest quantization range (metres), so that a single point still gets a valid grid.
MIN_RANGE_M = 1e-3
_GRID = struct.Struct('<4f')
# Draco's bitstream header: "DRACO", major, minor, encoder type (0 = point cloud), method
# (0 = sequential, 1 = kd-tree), u16 flags (0x8000 = metadata follows); then a point cloud's
# geometry starts with its int32 point count (draco/compression/decode.cc, point_cloud_decoder.cc).
_DRACO_HEADER = struct.Struct('<5sBBBBHi')

# point_cloud_transport's draco plugin (ros-perception/point_cloud_transport_plugins,
# draco_point_cloud_transport/include/draco_point_cloud_transport/draco_publisher.hpp):
# encode_speed = decode_speed = 7, encode_method = 0 (auto), deduplicate = true,
# force_quantization = false, quantization_POSITION = quantization_GENERIC = 14 (used only with
# force_quantization). DracoPy's compression_level is 10 - speed.
REFERENCE_SPEED = 7
REFERENCE_QUANTIZATION_BITS = 14
#: Codec names as ``LidarCodecConfig.codec`` and the ``lidar_codec`` parameter take them.
CODEC_NAMES = tuple(LIDAR_CODECS.values())
_CODEC_IDS = {name: codec_id for codec_id, name in LIDAR_CODECS.items()}


@dataclass(frozen=True)
class LidarCodecConfig:
    """How scans are coded.

    Attributes:
        codec: ``'predictive'`` (bounded error per coordinate) or ``'draco'``.
        max_error: the predictive codec's bound, metres per coordinate.
        quantization_bits: Draco position bits over the scan's bounding cube, 1..30, or 0 for
            lossless float32 positions.
        compression_level: Draco effort 0..10 (DracoPy's ``compression_level`` = 10 - speed).
        frustum_only: keep only points that project into the image (+2 px); needs a calibration.
        keep_intensity: send the intensity channel.
        intensity_bits: bits of the quantized intensity, 1..16.
        intensity_max: the intensity mapped to the largest code (KITTI reflectance: 1.0; 8-bit
            Velodyne drivers: 255). Larger values are clipped, negative ones become 0.
    """

    codec: str = 'predictive'
    max_error: float = 0.01
    quantization_bits: int = 11
    compression_level: int = 7
    frustum_only: bool = False
    keep_intensity: bool = True
    intensity_bits: int = 8
    intensity_max: float = 1.0

    def __post_init__(self) -> None:
        if self.codec not in CODEC_NAMES:
            raise ParameterError(f'LidarCodecConfig.codec is {self.codec!r}; choose one of '
                                 + ', '.join(CODEC_NAMES))
        object.__setattr__(self, 'max_error', lidar_predictive.check_max_error(self.max_error))
        checks = (
            ('quantization_bits', self.quantization_bits, 0, MAX_QUANTIZATION_BITS),
            ('compression_level', self.compression_level, 0, 10),
            ('intensity_bits', self.intensity_bits, 1, MAX_INTENSITY_BITS),
        )
        for name, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ParameterError(
                    f'LidarCodecConfig.{name} is {value!r}; it must be an int in {low}..{high}')
        if not (np.isfinite(self.intensity_max) and 0 < self.intensity_max < 3.4e38):
            raise ParameterError(
                f'LidarCodecConfig.intensity_max is {self.intensity_max!r}; it must be a positive finite '
                'number (1.0 for KITTI reflectance, 255 for 8-bit intensities)')
        # The packet stores float32: use the same value on both ends.
        object.__setattr__(self, 'intensity_max', float(np.float32(self.intensity_max)))

    @property
    def stored_intensity_bits(self) -> int:
        """Bits of intensity in the stream: 0 when the channel is dropped."""
        return self.intensity_bits if self.keep_intensity else 0


@dataclass(frozen=True)
class EncodedScan:
    """A coded scan and exactly what the decoder will get back from it.

    Attributes:
        payload: the codec bytes (see the module docstring).
        points: (M, 4) float32 x, y, z, intensity: ``decode_scan`` of ``payload``; condition on these.
        num_points: M (duplicates and non-finite points removed, frustum cut applied).
        input_points: points given to the encoder.
        config: the settings used.
        invalid_points: input points left out as invalid (a non-finite coordinate; with the
            predictive codec also zero range); the predictive payload records the count.
    """

    payload: bytes = field(repr=False)
    points: np.ndarray = field(repr=False)
    num_points: int
    input_points: int
    config: LidarCodecConfig
    invalid_points: int = 0

    def to_packet(self, scan_id: int, stamp_ns: int, frame_id: str) -> LidarPacket:
        """The LiDAR packet that carries this scan."""
        return LidarPacket(
            scan_id=scan_id, stamp_ns=stamp_ns, frame_id=frame_id, codec_id=_CODEC_IDS[self.config.codec],
            quantization_bits=self.config.quantization_bits if self.config.codec == 'draco' else 0,
            frustum_only=self.config.frustum_only,
            intensity_bits=self.config.stored_intensity_bits, intensity_max=self.config.intensity_max,
            num_points=self.num_points, payload=self.payload)


def frustum_mask(points: np.ndarray, calib: Calibration, margin: int = FRUSTUM_MARGIN_PX) -> np.ndarray:
    """Points in front of the camera whose pixel lies inside the image grown by ``margin`` pixels."""
    m = calib.lidar_to_pixel
    x, y, z = (points[:, i].astype(np.float64) for i in range(3))
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
        w = x * m[2, 0] + y * m[2, 1] + z * m[2, 2] + m[2, 3]
        u = (x * m[0, 0] + y * m[0, 1] + z * m[0, 2] + m[0, 3]) / w
        v = (x * m[1, 0] + y * m[1, 1] + z * m[1, 2] + m[1, 3]) / w
        return ((w > MIN_DEPTH_M) & (u >= -margin) & (u < calib.width + margin)
                & (v >= -margin) & (v < calib.height + margin))


def _clean(points: np.ndarray, config: LidarCodecConfig, calib: Optional[Calibration]):
    """Valid points (after the frustum cut) as float32 xyz and float32 intensity, the mask of the
    kept rows and the count of invalid ones (non-finite; for the predictive codec also zero range)."""
    points = check_points(points)
    if points.dtype not in (np.float32, np.float64) or not points.dtype.isnative:
        points = points.astype(np.float32)  # the values the compiled pass would cast them to
    xyz, intensity, keep, invalid = split_points(points, config.codec == 'predictive')
    if config.frustum_only:
        if calib is None:
            raise CalibrationError(
                'frustum_only needs the camera calibration: pass calib=, or set frustum_only=False')
        keep &= frustum_mask(xyz, calib)
    if not keep.all():
        xyz, intensity = xyz[keep], intensity[keep]
    return xyz, intensity, keep, int(invalid)


def _quantize_intensity(intensity: np.ndarray, config: LidarCodecConfig) -> np.ndarray:
    """(N, 1) unsigned codes, ``rint(clip(intensity / intensity_max, 0, 1) * (2**bits - 1))``."""
    codes = np.empty((len(intensity), 1), np.uint8 if config.intensity_bits <= 8 else np.uint16)
    intensity_codes(intensity, float(config.intensity_max), float((1 << config.intensity_bits) - 1),
                    codes[:, 0])
    return codes


def _grid(xyz: np.ndarray):
    """Origin (float32, 3) and range (float32) of the scan's bounding cube."""
    origin = xyz.min(axis=0)
    extent = float((xyz.max(axis=0) - origin).max())
    return origin, np.float32(max(extent, MIN_RANGE_M))


def encode_scan(points: np.ndarray, config: LidarCodecConfig = LidarCodecConfig(),
                calib: Optional[Calibration] = None, rings: Optional[np.ndarray] = None) -> EncodedScan:
    """Code a scan and decode it again, so the caller conditions on what the receiver gets.

    Args:
        points: (N, >=3) x, y, z[, intensity] in the LiDAR frame, metres. Invalid rows (see
            ``EncodedScan.invalid_points``) are dropped and counted; a non-finite intensity becomes 0.
        config: coding settings.
        calib: needed with ``config.frustum_only``.
        rings: (N,) laser index of each point (the PointCloud2 ``ring`` field), if the driver gives
            it; the predictive codec orders points by it.
    """
    xyz, intensity, keep, invalid = _clean(points, config, calib)
    if config.codec == 'predictive':
        if rings is not None:
            rings = np.asarray(rings)
            if rings.shape != (len(keep),) or rings.dtype.kind not in 'iuf':
                raise ParameterError(f'rings must be one number per point, got shape {rings.shape}')
            rings = rings[keep]
        return _encode_predictive(xyz, intensity, config, rings, len(points), invalid)
    return _encode_draco(xyz, intensity, config, len(points), invalid)


def _encode_predictive(xyz, intensity, config, rings, input_points, invalid) -> EncodedScan:
    codes = _quantize_intensity(intensity, config)[:, 0] if config.keep_intensity else None
    if rings is not None and not np.array_equal(rings, np.rint(rings)):
        rings = None  # not laser indexes: let the encoder find the lasers
    points = np.empty((len(xyz), 4), np.float32)  # the encoder writes x, y, z into it
    coded = lidar_predictive.encode(xyz, codes, config.max_error, rings, invalid, out=points)
    _add_intensity(points, coded.intensity, config)
    return EncodedScan(coded.payload, points, len(points), input_points, config, invalid)


def _add_intensity(points: np.ndarray, codes: Optional[np.ndarray], config: LidarCodecConfig) -> None:
    """Fill the fourth column of the (N, 4) rows with the intensity of each code (0 without codes)."""
    top = (1 << config.intensity_bits) - 1
    # One float per code, looked up: the same values as converting each point's code.
    values = (np.arange(top + 1, dtype=np.float64) * (config.intensity_max / top)).astype(np.float32)
    if not intensity_column(codes if codes is not None else np.zeros(0, np.int64), values, points):
        raise PacketError(f'LiDAR intensity codes exceed {top}, the largest '
                          f'{config.intensity_bits}-bit code')


def _encode_draco(xyz, intensity, config, input_points, invalid) -> EncodedScan:
    import DracoPy

    if len(xyz) == 0:
        return EncodedScan(b'', np.zeros((0, 4), np.float32), 0, input_points, config, invalid)
    attributes = None
    if config.keep_intensity:
        attributes = {INTENSITY_ATTRIBUTE: _quantize_intensity(intensity, config)}
    options = dict(quantization_bits=config.quantization_bits, compression_level=config.compression_level,
                   generic_attributes=attributes)
    header = b''
    if config.quantization_bits:
        origin, extent = _grid(xyz)
        options.update(quantization_origin=origin, quantization_range=float(extent))
        header = _GRID.pack(*origin.tolist(), float(extent))
    payload = header + DracoPy.encode(xyz, **options)
    # Draco drops exact duplicates, so the decoded scan can be shorter than the input.
    decoded = _decode(payload, config)
    return EncodedScan(payload, decoded, len(decoded), input_points, config, invalid)


def decode_scan(payload: bytes, num_points: int, config: LidarCodecConfig) -> np.ndarray:
    """Decode a payload of ``num_points`` points to (num_points, 4) float32 x, y, z, intensity.

    Only ``codec``, ``quantization_bits``, ``keep_intensity``, ``intensity_bits`` and
    ``intensity_max`` of ``config`` matter (the LiDAR packet carries them). A payload that is
    corrupted or disagrees with them raises :class:`PacketError`.
    """
    if config.codec == 'predictive':
        points = np.empty((num_points, 4), np.float32)  # the decoder writes x, y, z into it
        _, codes, info = lidar_predictive.decode(payload, num_points, out=points)
        if info.has_intensity != config.keep_intensity:
            raise PacketError('LiDAR payload and packet disagree on whether the scan has intensity')
        _add_intensity(points, codes, config)
        return points
    if num_points == 0:
        if payload:
            raise PacketError(f'LiDAR payload of an empty scan must be empty, got {len(payload)} bytes')
        return np.zeros((0, 4), np.float32)
    _check_draco_header(payload[_GRID.size if config.quantization_bits else 0:], num_points)
    points = _decode(payload, config)
    if len(points) != num_points:
        raise PacketError(f'LiDAR payload decodes to {len(points)} points, the packet declares {num_points}')
    return points


def _check_draco_header(stream: bytes, num_points: int) -> None:
    """Refuse a Draco stream whose header is not what encode_scan writes, before Draco sees it.

    Draco allocates for the point count its stream declares before checking the rest: a damaged
    count (the packet CRC can be recomputed) made it take 3 GB and 2 s before failing (found by
    fuzz/fuzz_packets.py). The packet's own count is capped, so the stream must declare exactly it.
    """
    if len(stream) < _DRACO_HEADER.size:
        raise PacketError(f'LiDAR payload is truncated: its Draco header needs {_DRACO_HEADER.size} bytes, '
                          f'got {len(stream)}')
    magic, major, _, encoder_type, method, flags, declared = _DRACO_HEADER.unpack_from(stream)
    if magic != b'DRACO' or major != 2 or encoder_type != 0 or method not in (0, 1) or flags != 0:
        raise PacketError(f'LiDAR payload is not a valid Draco 2.x point cloud as encode_scan writes it '
                          f'(magic {magic!r}, version {major}, type {encoder_type}, method {method}, '
                          f'flags 0x{flags:04x})')
    if declared != num_points:
        raise PacketError(f'LiDAR payload holds a Draco stream of {declared} points, the packet declares '
                          f'{num_points}')


def _decode(payload: bytes, config: LidarCodecConfig) -> np.ndarray:
    import DracoPy

    start = _GRID.size if config.quantization_bits else 0
    if len(payload) <= start:
        raise PacketError(f'LiDAR payload is truncated: {len(payload)} bytes')
    try:
        cloud = DracoPy.decode(payload[start:])
        positions = np.asarray(cloud.points, dtype=np.float32)
        attribute = cloud.get_attribute_by_unique_id(INTENSITY_ATTRIBUTE) if config.keep_intensity else None
    except Exception as exc:  # DracoPy raises assorted types (FileTypeException, TypeError, ...)
        raise PacketError(f'LiDAR payload is not a valid Draco point cloud: {exc}') from None
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise PacketError(f'LiDAR payload decodes to positions of shape {positions.shape}, expected (N, 3)')
    if config.quantization_bits:
        positions = _snap_to_grid(positions, payload[:start], config.quantization_bits)
    out = np.zeros((len(positions), 4), np.float32)
    out[:, :3] = positions
    if config.keep_intensity:
        out[:, 3] = _dequantize_intensity(attribute, len(positions), config)
    return out


def _snap_to_grid(positions: np.ndarray, header: bytes, bits: int) -> np.ndarray:
    """Recompute each coordinate as origin + q * step in float64: the same bits on every machine."""
    *origin, extent = _GRID.unpack(header)
    if not (np.all(np.isfinite(origin)) and np.isfinite(extent) and extent > 0):
        raise PacketError(f'LiDAR payload grid is invalid: origin {origin}, range {extent}')
    top = (1 << bits) - 1
    step = np.float64(extent) / top
    origin = np.array(origin, np.float64)
    with np.errstate(invalid='ignore', over='ignore'):
        codes = np.clip(np.rint((positions.astype(np.float64) - origin) / step), 0, top)
    if not np.all(np.isfinite(codes)):
        raise PacketError('LiDAR payload decodes to non-finite coordinates')
    return (origin + codes * step).astype(np.float32)


def _dequantize_intensity(attribute, num_points: int, config: LidarCodecConfig) -> np.ndarray:
    data = None if attribute is None else np.asarray(attribute.get('data'))
    if data is None or data.shape != (num_points, 1) or data.dtype.kind != 'u':
        raise PacketError('LiDAR payload lacks the intensity channel its packet declares')
    top = (1 << config.intensity_bits) - 1
    if int(data.max()) > top:
        raise PacketError(f'LiDAR intensity codes exceed {top}, the largest {config.intensity_bits}-bit code')
    return (data[:, 0].astype(np.float64) * (config.intensity_max / top)).astype(np.float32)


def config_from_packet(packet: LidarPacket) -> LidarCodecConfig:
    """The decoding settings a LiDAR packet declares."""
    if packet.codec_id not in (LIDAR_CODEC_DRACO, LIDAR_CODEC_PREDICTIVE):
        raise PacketError(f'LiDAR codec id {packet.codec_id} is not one this decoder reads')
    max_error = LidarCodecConfig.max_error
    if packet.codec_id == LIDAR_CODEC_PREDICTIVE:
        max_error = lidar_predictive.read_info(packet.payload).max_error
    return LidarCodecConfig(
        codec=LIDAR_CODECS[packet.codec_id], max_error=max_error,
        quantization_bits=packet.quantization_bits, frustum_only=packet.frustum_only,
        keep_intensity=packet.intensity_bits > 0, intensity_bits=packet.intensity_bits or 8,
        intensity_max=packet.intensity_max)


def decode_packet(packet: LidarPacket) -> np.ndarray:
    """The (M, 4) float32 scan a LiDAR packet carries."""
    return decode_scan(packet.payload, packet.num_points, config_from_packet(packet))


def draco_reference_size(points: np.ndarray, force_quantization: bool = False) -> int:
    """Bytes of this scan under point_cloud_transport's draco plugin defaults, emulated with DracoPy.

    Defaults (``force_quantization = false``): speed 7/7, deduplication, no quantization, so x, y,
    z and intensity travel as lossless float32. With ``force_quantization``: 14-bit positions and
    14-bit intensity. The plugin adds x, y, z as three 1-component attributes and intensity as a
    float32 GENERIC attribute quantized by Draco; DracoPy takes one 3-component position and an
    integer intensity, so the figures are close emulations (see ``docs/lidar_stream.md``).
    """
    import DracoPy

    points = check_points(points)
    finite = np.isfinite(points[:, :3]).all(axis=1)
    xyz = points[finite, :3].astype(np.float32)
    if len(xyz) == 0:
        return 0
    if points.shape[1] > 3:
        intensity = np.nan_to_num(points[finite, 3].astype(np.float32))
    else:
        intensity = np.zeros(len(xyz), np.float32)
    level = 10 - REFERENCE_SPEED
    if not force_quantization:
        return len(DracoPy.encode(xyz, quantization_bits=0, compression_level=level,
                                  generic_attributes={INTENSITY_ATTRIBUTE: intensity[:, None]}))
    low, high = float(intensity.min()), float(intensity.max())
    top = (1 << REFERENCE_QUANTIZATION_BITS) - 1
    codes = np.rint((intensity - low) / max(high - low, 1e-12) * top).astype(np.uint16)
    return len(DracoPy.encode(xyz, quantization_bits=REFERENCE_QUANTIZATION_BITS, compression_level=level,
                              generic_attributes={INTENSITY_ATTRIBUTE: codes[:, None]}))


def warm_up(config: LidarCodecConfig = LidarCodecConfig()) -> None:
    """Compile the predictive codec's kernels (or load them from numba's cache) before the first scan,
    by coding small synthetic scans under ``config``: a spinning scan without and with its ``ring``
    field, the same scan shuffled (its lasers inferred from the elevation) and a cloud without that
    structure (the grid path). The first full scan otherwise takes about 0.5 s to encode with a warm
    cache, and over 10 s on a machine that has never compiled them."""
    if config.codec != 'predictive' or lidar_predictive.numba is None:
        return  # Draco compiles nothing; without numba the kernels are plain Python
    points, rings = _synthetic_scan()
    rng = np.random.default_rng(0)
    cloud = rng.uniform(-20.0, 20.0, (256, 4)).astype(np.float32)
    cloud[:, 3] = np.abs(cloud[:, 3]) / 20.0
    shuffled = points[rng.permutation(len(points))]
    for scan, scan_rings in ((points, None), (points, rings), (shuffled, None), (cloud, None)):
        encoded = encode_scan(scan, config, rings=scan_rings)
        decode_scan(encoded.payload, encoded.num_points, config)


def _synthetic_scan(lasers: int = 16, firings: int = 256):
    """(points (N, 4) float32, rings (N,) uint16): a spinning sensor's scan, laser by laser, each
    laser's azimuths falling through a turn as a KITTI scan's do, at ranges of 6-14 m."""
    azimuth = np.tile(np.linspace(np.pi, -np.pi, firings, endpoint=False), lasers)
    elevation = np.repeat(np.radians(np.linspace(-20.0, 2.0, lasers)), firings)
    distance = 10.0 + 4.0 * np.sin(3.0 * azimuth)
    horizontal = distance * np.cos(elevation)
    points = np.stack([horizontal * np.cos(azimuth), horizontal * np.sin(azimuth),
                       distance * np.sin(elevation), 0.5 + 0.4 * np.cos(5.0 * azimuth)], axis=1)
    return points.astype(np.float32), np.repeat(np.arange(lasers, dtype=np.uint16), firings)
