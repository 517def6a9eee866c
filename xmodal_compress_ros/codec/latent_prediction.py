"""A P frame's latent predicted from its reference's: means and scales the encoder chooses.

The P-frame codec's graphs also analyse the aligned reference with the frame's own analysis
transform, ``y_ref = g_a(reference)``. Where the reference predicts the image, ``y_ref`` predicts
``y``. Each channel ``c`` and each block ``b`` of LATENT_BLOCK x LATENT_BLOCK latent cells (64 x 64
pixels) take the means ::

    mu = mu_hyper + on_b * (w_c / 8) * (y_ref - mu_hyper),        w_c in 0..8, on_b in {0, 1}

and, since a predicted latent spreads less than the hyperprior expects of an intra one, the scale
table row ``max(index - SCALE_SHIFTS[s_c] - BLOCK_SHIFTS[t_b], 0)``: blocks the reference predicts
well (a static scene) take much narrower scales, blocks it does not (a passing car) keep the intra
means (``on_b = 0``). The encoder picks ``w_c``, ``s_c`` and each block's mode from its own estimate
of the bits, never clamping more symbols than intra coding would, and the packet carries them, with
the block motion (:mod:`geometry.block_motion`), in the prediction block (:func:`pack_prediction`).
So the means may come from a float network and a reference, but the scale rows are integers from the
packet's own bits and the hyper-latent: a lost or wrong reference lowers quality, never changes a
parse. No training is involved: the choice is the encoder's, frame by frame.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_compress_ros.codec.entropy import PmfTable
from xmodal_compress_ros.codec.integer_hyper import index_to_scale
from xmodal_compress_ros.codec.layers import gaussian_likelihood
from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.block_motion import MAX_RANGE, BlockMotion

#: Weights are w / WEIGHT_STEPS of the reference's latent, w = 0..WEIGHT_STEPS.
WEIGHT_STEPS = 8
#: Scale-table rows a channel's scales may move down (the table's rows are 13 % apart).
SCALE_SHIFTS = (0, 1, 2, 3, 4, 6, 8, 12)
#: Side of a mode block in latent cells (16 pixels each), and the rows its scales may move down.
LATENT_BLOCK = 4
BLOCK_SHIFTS = (0, 2, 4, 6, 8, 12, 16, 24)
#: A block's mode byte: MODE_PREDICT set = the reference's latent in the means; low bits = its shift.
MODE_PREDICT = 8
PREDICTION_FORMAT = 1
# format, channels, mode rows, mode cols, motion block (0: none), motion rows, motion cols
_HEADER = struct.Struct('<BHHHBHH')
# A motion block's side, when there is motion: 8..255 pixels.
_MIN_BLOCK = 8


@dataclass(frozen=True)
class LatentPrediction:
    """Per channel: the weight step ``weights`` (uint8, 0..8) and the scale shift ``shifts`` (uint8,
    an index of :data:`SCALE_SHIFTS`); per mode block (uint8 (rows, cols)) its ``modes``; and the
    reference's block motion (None: none)."""

    weights: np.ndarray
    shifts: np.ndarray
    modes: np.ndarray
    motion: Optional[BlockMotion] = None

    @classmethod
    def none(cls, channels: int, padded_size: Tuple[int, int]) -> 'LatentPrediction':
        """The intra model's means and scales: what a P packet without a prediction block uses."""
        return cls(np.zeros(channels, np.uint8), np.zeros(channels, np.uint8),
                   np.zeros(mode_grid(padded_size), np.uint8))

    def weight_map(self, shape: Tuple[int, ...]) -> torch.Tensor:
        """The graphs' ``weight`` input: float32 ``shape`` (1, M, h, w), w_c / 8 where a block predicts."""
        on = _per_cell((self.modes & MODE_PREDICT) > 0, shape).astype(np.float32)
        weights = self.weights.astype(np.float32) / WEIGHT_STEPS
        return torch.from_numpy(weights[None, :, None, None] * on[None, None])

    def index_shift(self, shape: Tuple[int, ...]) -> np.ndarray:
        """int32 ``shape`` (1, M, h, w): the table rows each scale index moves down."""
        block = _per_cell(np.asarray(BLOCK_SHIFTS, np.int32)[self.modes & (MODE_PREDICT - 1)], shape)
        channel = np.asarray(SCALE_SHIFTS, np.int32)[self.shifts]
        return (channel[None, :, None, None] + block[None, None]).astype(np.int32)


def _per_cell(values: np.ndarray, shape: Tuple[int, ...]) -> np.ndarray:
    """A per-mode-block array ``values`` (rows, cols) at the latent resolution of ``shape`` (h, w)."""
    cells = np.repeat(np.repeat(values, LATENT_BLOCK, 0), LATENT_BLOCK, 1)
    return cells[:shape[2], :shape[3]]


def mode_grid(padded_size: Tuple[int, int]) -> Tuple[int, int]:
    """(rows, cols) of mode blocks for a padded (height, width): the latent grid in LATENT_BLOCK steps."""
    height, width = padded_size
    cells = 16 * LATENT_BLOCK
    return -(-height // cells), -(-width // cells)


def _bits(residual: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
    """Estimated bits of each rounded residual under the scale rows ``indexes``."""
    return -torch.log2(gaussian_likelihood(torch.round(residual), index_to_scale(indexes.float())))


def _outside(symbols: torch.Tensor, indexes: torch.Tensor, low: torch.Tensor,
             high: torch.Tensor) -> torch.Tensor:
    """1 where a symbol falls outside its table row (the coder would clamp it), else 0."""
    return ((symbols < low[indexes]) | (symbols > high[indexes])).float()


def _block_sums(values: torch.Tensor) -> torch.Tensor:
    """(rows, cols): ``values`` (1, M, h, w) summed over channels and over each mode block."""
    summed = values.sum(dim=(0, 1))[None, None]
    return F.avg_pool2d(summed, LATENT_BLOCK, ceil_mode=True, divisor_override=1)[0, 0]


@torch.no_grad()
def choose_prediction(y_g: np.ndarray, mu: np.ndarray, y_ref: np.ndarray, indexes: np.ndarray,
                      table: PmfTable, motion: Optional[BlockMotion] = None) -> LatentPrediction:
    """The encoder's choice, by estimated bits: per channel the weight that best fits ``y_g - mu`` by
    ``y_ref - mu`` (least squares, then the cheapest of it and its two neighbours) and the scale
    shift; then per block whether it predicts and its shift. Nothing chosen clamps more symbols to
    ``table``'s rows (the y table) than intra coding does: a clamped symbol costs image quality."""
    y, mean, ref = (torch.from_numpy(np.asarray(a, np.float32)) for a in (y_g, mu, y_ref))
    idx = torch.from_numpy(np.asarray(indexes, np.int64))
    low = torch.from_numpy(table.offsets.astype(np.int64))
    high = low + torch.from_numpy(table.lengths.astype(np.int64)) - 1
    target, direction = y - mean, ref - mean
    dims = (0, 2, 3)
    fit = (target * direction).sum(dim=dims) / direction.square().sum(dim=dims).clamp_min(1e-9)
    centre = torch.round(fit.clamp(0, 1) * WEIGHT_STEPS).long()
    candidates = [(centre + d).clamp(0, WEIGHT_STEPS) for d in (-1, 0, 1)]

    def residual_of(w: torch.Tensor) -> torch.Tensor:
        return target - (w.float() / WEIGHT_STEPS)[None, :, None, None] * direction

    costs = torch.stack([_bits(residual_of(w), idx).sum(dim=dims) for w in candidates])
    weights = torch.stack(candidates).gather(0, costs.argmin(dim=0, keepdim=True))[0]
    residual = residual_of(weights)
    symbols = torch.round(residual)
    rows = [(idx - k).clamp_min(0) for k in SCALE_SHIFTS]
    shift_costs = torch.stack([_bits(residual, r).sum(dim=dims) for r in rows])
    clamped = torch.stack([_outside(symbols, r, low, high).sum(dim=dims) for r in rows])
    shift_costs[clamped > clamped[0]] = float('inf')
    shifts = shift_costs.argmin(dim=0)
    channel_rows = idx - torch.tensor(SCALE_SHIFTS)[shifts][None, :, None, None]
    modes = _choose_modes(target, residual, idx, channel_rows, low, high)
    return LatentPrediction(weights.numpy().astype(np.uint8), shifts.numpy().astype(np.uint8), modes, motion)


def _choose_modes(target, residual, intra_rows, rows, low, high) -> np.ndarray:
    """Each block's mode: predicted or not, and its shift, by estimated bits, clamping no more of its
    symbols than intra coding (``target`` under ``intra_rows``) does."""
    intra_clamps = _block_sums(_outside(torch.round(target), intra_rows, low, high))
    costs, clamps = [], []
    for predict, values in ((0, target), (MODE_PREDICT, residual)):
        symbols = torch.round(values)
        for shift in BLOCK_SHIFTS:
            shifted = (rows - shift).clamp_min(0)
            costs.append(_block_sums(_bits(values, shifted)))
            clamps.append(_block_sums(_outside(symbols, shifted, low, high)))
    costs, clamps = torch.stack(costs), torch.stack(clamps)
    costs[clamps > intra_clamps[None]] = float('inf')
    choice = torch.where(torch.isinf(costs).all(dim=0), clamps.argmin(dim=0), costs.argmin(dim=0))
    # Candidates ran predict-off shifts 0..7, then predict-on shifts 0..7: the index is the mode byte.
    return choice.numpy().astype(np.uint8)


def predicted_mean(mu: np.ndarray, y_ref: np.ndarray, prediction: LatentPrediction) -> np.ndarray:
    """The means ``mu + weight * (y_ref - mu)`` the encoder quantises against (float32)."""
    weight = prediction.weight_map(mu.shape).numpy()
    return (mu + weight * (y_ref - mu)).astype(np.float32)


def pack_prediction(prediction: LatentPrediction) -> bytes:
    """The prediction block of a P packet (layout in docs/bitstream.md)."""
    channels = len(prediction.weights)
    per_channel = (prediction.weights * len(SCALE_SHIFTS) + prediction.shifts).astype(np.uint8)
    payload = per_channel.tobytes() + np.ascontiguousarray(prediction.modes, np.uint8).tobytes()
    motion, block, rows, cols = prediction.motion, 0, 0, 0
    if motion is not None and motion.field.any():
        block, (rows, cols) = motion.block, motion.field.shape[:2]
        # Row-wise differences: neighbouring blocks move alike, so the deltas are mostly zero.
        payload += np.diff(motion.field.astype(np.int16), axis=1, prepend=0).astype(np.int8).tobytes()
    header = _HEADER.pack(PREDICTION_FORMAT, channels, *prediction.modes.shape, block, rows, cols)
    return header + zlib.compress(payload, 9)


def parse_prediction(data: bytes, channels: int, size: Tuple[int, int],
                     padded_size: Tuple[int, int]) -> LatentPrediction:
    """The prediction block of a P packet for a model of ``channels`` latent channels and an image of
    ``size`` (width, height) padded to ``padded_size`` (height, width); malformed blocks raise
    :class:`PacketError`."""
    if len(data) < _HEADER.size:
        raise PacketError(f'prediction block of {len(data)} bytes is shorter than its header')
    version, declared, mode_rows, mode_cols, block, rows, cols = _HEADER.unpack_from(data)
    if version != PREDICTION_FORMAT:
        raise PacketError(f'prediction block format {version} is unknown; '
                          f'this build reads {PREDICTION_FORMAT}')
    if declared != channels:
        raise PacketError(f'prediction block is for {declared} channels; the model has {channels}')
    if (mode_rows, mode_cols) != mode_grid(padded_size):
        expected = 'x'.join(map(str, mode_grid(padded_size)))
        raise PacketError(f'prediction block declares {mode_rows}x{mode_cols} mode blocks; a padded '
                          f'{padded_size[1]}x{padded_size[0]} image has {expected}')
    width, height = size
    if block and (block < _MIN_BLOCK or (rows, cols) != BlockMotion.grid(height, width, block)):
        raise PacketError(f'prediction block declares {rows}x{cols} motion blocks of {block} pixels, '
                          f'which do not cover a {width}x{height} image')
    raw = _inflate(data[_HEADER.size:], channels + mode_rows * mode_cols + 2 * rows * cols)
    per_channel = np.frombuffer(raw[:channels], np.uint8)
    weights, shifts = per_channel // len(SCALE_SHIFTS), per_channel % len(SCALE_SHIFTS)
    if (weights > WEIGHT_STEPS).any():
        raise PacketError(f'prediction block has channel weights above {WEIGHT_STEPS}')
    modes = np.frombuffer(raw[channels:channels + mode_rows * mode_cols], np.uint8)
    modes = modes.reshape(mode_rows, mode_cols)
    if (modes >= 2 * MODE_PREDICT).any():
        raise PacketError(f'prediction block has block modes above {2 * MODE_PREDICT - 1}')
    motion = None
    if block:
        deltas = np.frombuffer(raw[channels + modes.size:], np.int8).reshape(rows, cols, 2).astype(np.int16)
        field = np.cumsum(deltas, axis=1)
        if np.abs(field).max(initial=0) > MAX_RANGE:
            raise PacketError(f'prediction block moves a block by more than {MAX_RANGE} pixels')
        motion = BlockMotion(block, field.astype(np.int8))
    return LatentPrediction(weights.astype(np.uint8), shifts.astype(np.uint8), modes.copy(), motion)


def _inflate(data: bytes, expected: int) -> bytes:
    """The prediction block's payload, exactly ``expected`` bytes (never inflating more)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, expected + 1)
    except zlib.error as exc:
        raise PacketError(f'prediction block does not inflate: {exc}') from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise PacketError(f'prediction block holds {len(raw)} bytes, expected {expected}')
    return raw
