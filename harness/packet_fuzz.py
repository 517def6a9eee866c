"""Hostile packets: mutate real packets, feed them to :class:`~codec.pipeline.Decoder`, classify the result.

The decoder's contract under bad input is: it returns a decoded image or scan, or raises
:class:`PacketError`; it never raises anything else, never runs long, and never allocates more than
a bound derived from the sizes the packet declares (which the parser caps). This module checks that
contract one input at a time (:class:`DecodeHarness`) and summarises many (:class:`FuzzStats`).
It is shared by ``fuzz/fuzz_packets.py`` (coverage-guided, atheris) and the reliability tests.

Most random damage is caught by the CRC at the very start. :func:`mutate` therefore also
recomputes the CRC after mutating (``reseal=True``), so that the damage reaches the header
checks, the section parsers, the entropy decoder and Draco.
"""

from __future__ import annotations

import random
import resource
import struct
import time
import tracemalloc
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from xmodal_compress_ros.codec import bitstream
from xmodal_compress_ros.errors import PacketError

CRC_BYTES = 4
#: Allocation budget per declared padded pixel of an image packet (measured legitimate decodes of
#: the tiny fuzz models use about 20 bytes per pixel in NumPy buffers).
BYTES_PER_PIXEL = 64
#: Allocation budget per declared point of a LiDAR packet (measured: about 110 bytes per point).
BYTES_PER_POINT = 256
#: Allocation budget independent of the declared size (tables, small arrays, messages).
BASE_ALLOCATION = 1 << 20
#: An input whose decode takes more CPU time than this is a hang.
HANG_SECONDS = 1.0
#: Growth of the process's peak RSS during one input that counts as a finding (native allocations,
#: e.g. Draco or the networks, are invisible to tracemalloc; legitimate small packets stay far below).
RSS_JUMP_BYTES = 64 << 20

MUTATIONS = (
    'truncate',
    'bit_flip',
    'byte_set',
    'length_inflate',
    'version',
    'header_field',
    'splice',
    'random',
)
_U32 = struct.Struct('<I')
# Byte offsets from the layout in docs/bitstream.md.
_IMAGE_HEADER_BYTES = 52
_STREAM_BLOCK_BYTES = 10
_LIDAR_FRAME_ID_LENGTH = 17
_IMAGE_FIELDS = {  # offset, struct format, of the image header fields worth mangling
    'flags': (5, '<B'),
    'quality': (22, '<B'),
    'width': (23, '<H'),
    'height': (25, '<H'),
    'padded_width': (27, '<H'),
    'padded_height': (29, '<H'),
    'scan_id': (39, '<I'),
    'substreams': (51, '<B'),
}
_LIDAR_TAIL_FIELDS = {  # offset after the frame id
    'codec': (0, '<B'),
    'quantization_bits': (1, '<B'),
    'flags': (2, '<B'),
    'intensity_bits': (3, '<B'),
    'intensity_max': (4, '<f'),
    'num_points': (8, '<I'),
    'payload_length': (12, '<I'),
}
_INTERESTING = (
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    31,
    32,
    63,
    64,
    65,
    127,
    128,
    255,
    256,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0xFFFFFFFF,
)


def reseal(data: bytes) -> bytes:
    """``data`` with its last four bytes replaced by the CRC32 of the rest (as a packet ends)."""
    if len(data) < CRC_BYTES:
        return data
    body = data[:-CRC_BYTES]
    return body + _U32.pack(zlib.crc32(body))


def _length_fields(data: bytes) -> List[Tuple[int, str]]:
    """(offset, struct format) of the length and count fields of a packet, as far as it is present."""
    fields: List[Tuple[int, str]] = []
    magic = data[:4]
    if magic == bitstream.IMAGE_MAGIC:
        offset = _IMAGE_HEADER_BYTES
        if data[4:5] == b'\x02' and offset + _STREAM_BLOCK_BYTES <= len(data):
            # Version 2: the stream block (its last byte the pose length) and the pose precede the sections.
            fields.append((offset + _STREAM_BLOCK_BYTES - 1, '<B'))
            offset += _STREAM_BLOCK_BYTES + data[offset + _STREAM_BLOCK_BYTES - 1]
        for _ in range(2):  # z and y sections: u32 length, then u8 substream count and u32 sizes
            if offset + 5 > len(data):
                break
            (length,) = _U32.unpack_from(data, offset)
            fields.append((offset, '<I'))
            count = data[offset + 4]
            fields.append((offset + 4, '<B'))
            fields += [
                (offset + 5 + 4 * k, '<I') for k in range(min(count, 64)) if offset + 9 + 4 * k <= len(data)
            ]
            offset += 4 + length
    elif magic == bitstream.LIDAR_MAGIC and len(data) > _LIDAR_FRAME_ID_LENGTH:
        fields.append((_LIDAR_FRAME_ID_LENGTH, '<B'))
        tail = _LIDAR_FRAME_ID_LENGTH + 1 + data[_LIDAR_FRAME_ID_LENGTH]
        fields += [
            (tail + off, fmt)
            for off, fmt in _LIDAR_TAIL_FIELDS.values()
            if tail + off + struct.calcsize(fmt) <= len(data)
        ]
    return fields


def _header_fields(data: bytes) -> List[Tuple[int, str]]:
    if data[:4] == bitstream.IMAGE_MAGIC:
        return [(off, fmt) for off, fmt in _IMAGE_FIELDS.values() if off + struct.calcsize(fmt) <= len(data)]
    return _length_fields(data)


def _set_field(data: bytearray, offset: int, fmt: str, rng: random.Random) -> None:
    size = struct.calcsize(fmt)
    if fmt == '<f':
        value = rng.choice((0.0, -1.0, 1e-45, 3.4e38, float('inf'), float('nan'), rng.uniform(-1e6, 1e6)))
        struct.pack_into(fmt, data, offset, value)
        return
    top = (1 << (8 * size)) - 1
    (old,) = struct.unpack_from(fmt, data, offset)
    value = rng.choice(
        (
            rng.choice(_INTERESTING) & top,
            rng.randint(0, top),
            (old + rng.randint(-3, 3)) & top,
            (old * rng.choice((2, 16, 256))) & top,
        )
    )
    struct.pack_into(fmt, data, offset, value)


def mutate(
    data: bytes,
    rng: random.Random,
    kind: Optional[str] = None,
    reseal_crc: bool = True,
    pool: Sequence[bytes] = (),
) -> bytes:
    """One damaged copy of a packet.

    Args:
        data: a packet (or an already damaged one).
        rng: the source of randomness (reproducible).
        kind: one of :data:`MUTATIONS`, or None for a random one.
        reseal_crc: recompute the CRC afterwards, so the damage gets past the CRC check.
        pool: other packets, for ``splice``.
    """
    kind = kind or rng.choice(MUTATIONS)
    out = bytearray(data)
    if kind == 'truncate':
        out = out[: rng.randrange(len(out) + 1)] if out else out
    elif kind == 'bit_flip':
        for _ in range(rng.choice((1, 1, 2, 8))):
            if out:
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    elif kind == 'byte_set':
        for _ in range(rng.choice((1, 2, 4))):
            if out:
                out[rng.randrange(len(out))] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    elif kind in ('length_inflate', 'header_field'):
        fields = _length_fields(bytes(out)) if kind == 'length_inflate' else _header_fields(bytes(out))
        if fields:
            _set_field(out, *rng.choice(fields), rng)
    elif kind == 'version':
        if len(out) > 4:
            out[4] = rng.choice((0, 1, 2, 3, 4, 127, 255, rng.randrange(256)))
    elif kind == 'splice':
        other = rng.choice(pool) if pool else bytes(out)
        out = out[: rng.randrange(len(out) + 1)] + other[rng.randrange(len(other) + 1) :]
    elif kind == 'random':
        out = bytearray(out[:5]) + bytearray(rng.getrandbits(8) for _ in range(rng.randrange(4, 256)))
    else:
        raise ValueError(f'unknown mutation {kind!r}; known: {", ".join(MUTATIONS)}')
    return reseal(bytes(out)) if reseal_crc else bytes(out)


def declared_size(data: bytes) -> Tuple[int, int]:
    """(padded pixels, LiDAR points) the packet's header declares, each clipped to the parser's cap."""
    if data[:4] == bitstream.IMAGE_MAGIC and len(data) >= _IMAGE_HEADER_BYTES:
        padded_w, padded_h = struct.unpack_from('<HH', data, _IMAGE_FIELDS['padded_width'][0])
        return min(padded_w * padded_h, bitstream.MAX_PIXELS), 0
    if data[:4] == bitstream.LIDAR_MAGIC and len(data) > _LIDAR_FRAME_ID_LENGTH:
        offset = (
            _LIDAR_FRAME_ID_LENGTH + 1 + data[_LIDAR_FRAME_ID_LENGTH] + _LIDAR_TAIL_FIELDS['num_points'][0]
        )
        if offset + 4 <= len(data):
            (points,) = _U32.unpack_from(data, offset)
            return 0, min(points, bitstream.MAX_LIDAR_POINTS)
    return 0, 0


def allocation_bound(data: bytes) -> int:
    """Most bytes decoding ``data`` may allocate: a budget per declared (capped) pixel and point."""
    pixels, points = declared_size(data)
    return BASE_ALLOCATION + 8 * len(data) + BYTES_PER_PIXEL * pixels + BYTES_PER_POINT * points


_STAGES = (  # (words in a PacketError message, the stage that rejected it), first match wins
    (('CRC32',), 'crc'),
    (('magic', 'format version', 'truncated: '), 'framing'),
    (('model id',), 'unknown_model'),
    (('substream', 'entropy', 'sections do not decode'), 'entropy'),
    (('Draco', 'LiDAR payload', 'intensity', 'grid'), 'draco'),
)


def rejection_stage(message: str) -> str:
    """Which part of the decoder rejected a packet, from its PacketError message."""
    for words, stage in _STAGES:
        if any(word in message for word in words):
            return stage
    return 'header'


@dataclass(frozen=True)
class Outcome:
    """What decoding one input did.

    Attributes:
        status: ``'decoded'``, ``'rejected'`` (PacketError) or ``'crash'`` (any other exception).
        kind: ``'image'``, ``'lidar'`` or ``''`` (not even the magic was valid).
        stage: for rejections, the part that rejected it (:func:`rejection_stage`).
        error: the exception type and message (crashes and rejections).
        wall_ms, cpu_ms: time taken (CPU time of the process: a loaded machine does not inflate it).
        peak_alloc: bytes allocated at the peak (tracemalloc; 0 when not traced).
        bound: :func:`allocation_bound` of the input.
        rss_growth: how much the process's peak RSS grew during this input (native allocations too).
    """

    status: str
    kind: str
    stage: str
    error: str
    wall_ms: float
    cpu_ms: float
    peak_alloc: int
    bound: int
    rss_growth: int = 0

    @property
    def rss_jump(self) -> bool:
        return self.rss_growth > RSS_JUMP_BYTES

    @property
    def hang(self) -> bool:
        return self.cpu_ms > HANG_SECONDS * 1e3

    @property
    def over_bound(self) -> bool:
        return self.peak_alloc > self.bound


class DecodeHarness:
    """Feeds inputs to a decoder and returns an :class:`Outcome` for each; never raises.

    Image packets are decoded with the scan they reference when ``scans`` holds it (else without,
    as the decoder node does when a scan was lost).

    Args:
        decoder: a :class:`~codec.pipeline.Decoder`.
        scans: decoded scans by (scan_id, stamp_ns).
        trace_every: measure allocations (tracemalloc) on every n-th input; 0 = never.
    """

    def __init__(self, decoder, scans: Optional[Dict[Tuple[int, int], object]] = None, trace_every: int = 1):
        self.decoder = decoder
        self.scans = dict(scans or {})
        self.trace_every = int(trace_every)
        self._count = 0

    def _decode(self, data: bytes) -> str:
        kind = bitstream.packet_kind(data)
        if kind == 'lidar':
            self.decoder.decode_lidar(data)
        else:
            reference = self.decoder.scan_reference(data)
            self.decoder.decode_image(data, self.scans.get(reference) if reference else None)
        return kind

    def feed(self, data: bytes) -> Outcome:
        self._count += 1
        trace = self.trace_every > 0 and self._count % self.trace_every == 0
        kind = {bitstream.IMAGE_MAGIC: 'image', bitstream.LIDAR_MAGIC: 'lidar'}.get(bytes(data[:4]), '')
        if trace:
            # Started once and left running: starting and stopping it per input costs the process
            # ~0.5-9 KB of RSS each time (measured), which would look like a decoder leak.
            if not tracemalloc.is_tracing():
                tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
        rss = peak_rss_bytes()
        wall, cpu = time.perf_counter(), time.process_time()
        status, stage, error = 'decoded', '', ''
        try:
            self._decode(data)
        except PacketError as exc:
            status, stage, error = 'rejected', rejection_stage(str(exc)), f'PacketError: {exc}'
        except Exception as exc:  # noqa: BLE001 - anything else is exactly what we are looking for
            status, error = 'crash', f'{type(exc).__name__}: {exc}'
        cpu_ms = (time.process_time() - cpu) * 1e3
        wall_ms = (time.perf_counter() - wall) * 1e3
        peak = 0
        if trace:
            peak = tracemalloc.get_traced_memory()[1] - base
        return Outcome(
            status,
            kind,
            stage,
            error[:300],
            wall_ms,
            cpu_ms,
            peak,
            allocation_bound(data),
            peak_rss_bytes() - rss,
        )


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class FuzzStats:
    """Running totals over many :class:`Outcome` s, with the inputs worth keeping."""

    iterations: int = 0
    crashes: int = 0
    hangs: int = 0
    wall_over_1s: int = 0
    over_bound: int = 0
    rss_jumps: int = 0
    max_rss_growth: int = 0
    max_ms: float = 0.0
    max_cpu_ms: float = 0.0
    peak_alloc: int = 0
    max_alloc_ratio: float = 0.0
    traced: int = 0
    outcomes: Counter = field(default_factory=Counter)
    examples: Dict[str, str] = field(default_factory=dict)
    on_finding: Optional[Callable[[str, bytes, Outcome], None]] = None

    def add(self, data: bytes, outcome: Outcome) -> None:
        self.iterations += 1
        key = outcome.status if outcome.status != 'rejected' else f'rejected_{outcome.stage}'
        self.outcomes[f'{outcome.kind or "none"}:{key}'] += 1
        self.max_ms = max(self.max_ms, outcome.wall_ms)
        self.max_cpu_ms = max(self.max_cpu_ms, outcome.cpu_ms)
        self.wall_over_1s += outcome.wall_ms > HANG_SECONDS * 1e3
        if outcome.peak_alloc:
            self.traced += 1
            self.peak_alloc = max(self.peak_alloc, outcome.peak_alloc)
            self.max_alloc_ratio = max(self.max_alloc_ratio, outcome.peak_alloc / outcome.bound)
        findings = []
        if outcome.status == 'crash':
            self.crashes += 1
            findings.append('crash')
        if outcome.hang:
            self.hangs += 1
            findings.append('hang')
        if outcome.over_bound:
            self.over_bound += 1
            findings.append('over_bound')
        self.max_rss_growth = max(self.max_rss_growth, outcome.rss_growth)
        if outcome.rss_jump:
            self.rss_jumps += 1
            findings.append('rss_jump')
        for finding in findings:
            detail = outcome.error or f'{outcome.kind} {outcome.status}'
            self.examples.setdefault(f'{finding}: {detail[:120]}', detail)
            if self.on_finding is not None:
                self.on_finding(finding, data, outcome)

    def summary(self) -> Dict:
        return {
            'iterations': self.iterations,
            'crashes': self.crashes,
            'hangs': self.hangs,
            'hang_threshold_cpu_s': HANG_SECONDS,
            'wall_over_1s': self.wall_over_1s,
            'max_ms': round(self.max_ms, 2),
            'max_cpu_ms': round(self.max_cpu_ms, 2),
            'peak_alloc': self.peak_alloc,
            'alloc_traced_inputs': self.traced,
            'alloc_over_bound': self.over_bound,
            'max_alloc_over_bound': round(self.max_alloc_ratio, 4),
            'rss_jumps': self.rss_jumps,
            'rss_jump_threshold_mb': RSS_JUMP_BYTES >> 20,
            'max_rss_growth_one_input_mb': round(self.max_rss_growth / 2**20, 1),
            'outcomes': dict(sorted(self.outcomes.items())),
            'findings': sorted(self.examples)[:20],
        }


# -- tiny models and real seed packets -------------------------------------------------------------

# The lambdas are pinned (six levels, the upper six of the default eight) so that the model ids, and with
# them the stored corpus packets, stay valid when the default levels change.
TINY_CONFIG = dict(N=16, M=24, Nz=8, hyper_hidden=8, lambdas=(0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.05))
TINY_LIDAR_CONFIG = dict(TINY_CONFIG, ctx_ch=(8, 8, 8), p2i_ch=8)


def write_tiny_models(folder: Path, seed: int = 0) -> Tuple[str, str]:
    """Untrained LiDAR model and twin, small and fast (for fuzzing the decode path, not for quality).

    Deterministic for a given seed on any CPU, so their model ids, and the stored corpus packets that
    name them, are stable. Returns the two model stems.
    """
    from xmodal_compress_ros.codec.model_io import save_model
    from xmodal_compress_ros.codec.models import HyperpriorCodec, LidarConditionedCodec

    folder = Path(folder)
    stems = (folder / 'fuzz-lidar', folder / 'fuzz-twin')
    rng = np.random.default_rng(seed)
    for stem, model in zip(
        stems, (LidarConditionedCodec(**TINY_LIDAR_CONFIG), HyperpriorCodec(**TINY_CONFIG))
    ):
        _redraw_random_parameters(model, rng)
        # The z pmf table, integers from a float CDF, differed in 2 of 4104 entries between those CPUs
        # too; in float64 no value falls that close to a rounding boundary.
        model.double().eval().update()
        model.float()
        save_model(model, stem, {'training': {'note': 'untrained fuzzing model'}})
    return str(stems[0]), str(stems[1])


def write_tiny_pframe_model(folder: Path, seed: int = 1) -> str:
    """Untrained P-frame model of the tiny twin's levels, deterministic on any CPU like
    :func:`write_tiny_models` (no :meth:`init_from_intra`: the twin's weights would not make the
    decode path any different). Returns its stem."""
    from xmodal_compress_ros.codec.model_io import save_model
    from xmodal_compress_ros.codec.predictive import PredictiveCodec

    stem = Path(folder) / 'fuzz-pframe'
    model = PredictiveCodec(**TINY_CONFIG, ctx_ch=(8, 8, 8))
    _redraw_random_parameters(model, np.random.default_rng(seed))
    model.double().eval().update()
    model.float()
    save_model(model, stem, {'training': {'note': 'untrained fuzzing model'}})
    return str(stem)


#: Log gain step between neighbouring tiny quality levels: half of ln 2, as the tiny lambdas
#: roughly double from level to level (a literal, not a log computed on the host).
_TINY_LOG_GAIN_STEP = 0.34657359027997264


def _redraw_random_parameters(model, rng: np.random.Generator) -> None:
    """Set every parameter that torch initialises with random draws or vector-width-dependent float
    kernels from ``rng`` and IEEE basic operations only: convolutions (weights and bias, torch's
    default ranges), the z density's biases and the per-level gains.

    torch's random initialisation draws different numbers on CPUs of different vector widths, and the
    gains' initial values come from a float32 ``mean`` whose summation order follows the vector width
    (three different results for the tiny lambdas, depending on the order), so both changed the tiny
    models' ids from machine to machine. Layers initialised to zero (residual refinements) stay zero;
    constants (GDN's square roots, the z density's matrices) are correctly rounded everywhere.
    """
    import torch

    from xmodal_compress_ros.codec.layers import FactorizedDensity, GainUnits

    def draw(tensor, bound):
        tensor.copy_(torch.from_numpy(rng.uniform(-bound, bound, tuple(tensor.shape)).astype(np.float32)))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, FactorizedDensity):
                for bias in module.biases:
                    draw(bias, 0.5)
            elif isinstance(module, GainUnits):
                # Symmetric around level (L-1)/2 as the lambdas' geometric mean, decoder gain = 1/encoder's.
                levels, channels = module.log_gain_enc.shape
                ramp = (np.arange(levels) - (levels - 1) / 2) * _TINY_LOG_GAIN_STEP
                log_gain = torch.from_numpy(np.repeat(ramp[:, None], channels, 1).astype(np.float32))
                module.log_gain_enc.copy_(log_gain)
                module.log_gain_dec.copy_(-log_gain)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and module.weight.any():
                bound = 1.0 / np.sqrt(module.weight[0].numel())
                draw(module.weight, bound)
                draw(module.bias, bound)


def procedural_frame(width: int, height: int, points: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """A cheap textured RGB image and a LiDAR-like cloud (ground, walls, intensities) in front of the car."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xx * 255 / width, 255 - yy * 255 / height, 128 + 60 * np.sin(xx / 5 + yy / 7)], -1)
    image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)
    angle = rng.uniform(-0.8, 0.8, points)
    distance = rng.uniform(3.0, 40.0, points)
    z = np.where(rng.random(points) < 0.6, -1.73, rng.uniform(-1.7, 2.0, points))
    cloud = np.stack([distance * np.cos(angle), distance * np.sin(angle), z, rng.random(points)], 1)
    return image, cloud.astype(np.float32)


def seed_packets(encoder, sizes=((64, 64), (128, 64)), points: int = 2000) -> List[bytes]:
    """Real packets from ``encoder``: per size, a LiDAR packet, its conditioned image and an image-only one.

    ``encoder``'s calibration must match the first size (other sizes code image-only).
    """
    packets: List[bytes] = []
    for k, (width, height) in enumerate(sizes):
        image, cloud = procedural_frame(width, height, points, seed=k)
        stamp = 1_317_000_000_000_000_000 + k * 100_000_000
        lidar, scan = encoder.encode_scan(cloud, stamp, frame_id='velodyne')
        packets += [
            lidar,
            encoder.encode_image(image, stamp + 6_000_000, scan).packet,
            encoder.encode_image(image, stamp + 7_000_000, None, quality=0).packet,
        ]
    return packets


def stream_seed_packets(encoder, size=(64, 64), points: int = 2000) -> List[bytes]:
    """Real stream packets from ``encoder`` (keyframe_interval > 1, its calibration of ``size``):
    a LiDAR packet and key frame, then a LiDAR packet and the P frame predicted from that key frame."""
    packets: List[bytes] = []
    cloud = procedural_frame(*size, points, seed=0)[1]  # a still vehicle: registration finds the motion
    for k in range(2):
        image = procedural_frame(*size, points, seed=k)[0]
        stamp = 1_317_000_000_000_000_000 + k * 100_000_000
        lidar, scan = encoder.encode_scan(cloud, stamp, frame_id='velodyne')
        packets += [lidar, encoder.encode_image(image, stamp + 6_000_000, scan).packet]
    return packets
