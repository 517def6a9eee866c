"""A P frame's latent predicted from its reference's: per-channel means and scales the encoder chooses.

The P-frame codec's graphs also analyse the aligned reference with the frame's own analysis
transform, ``y_ref = g_a(reference)``. Where the reference predicts the image, ``y_ref`` predicts
``y``, so each channel ``c`` takes the means ::

    mu_c = mu_hyper_c + (w_c / 8) * (y_ref_c - mu_hyper_c),     w_c in 0..8

and, since a predicted latent spreads less than the hyperprior expects of an intra one, the scale
table row ``max(index - SCALE_SHIFTS[s_c], 0)``. The encoder picks ``w_c`` and ``s_c`` for each
channel from its own estimate of the bits and the packet carries them, with the block motion
(:mod:`geometry.block_motion`), in the prediction block (:func:`pack_prediction`). So the means may
come from a float network and a reference, but the scale rows are integers from the packet's own
bits and the hyper-latent: a lost or wrong reference lowers quality, never changes a parse. No
training is involved: the choice is the encoder's, frame by frame.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import torch

from xmodal_compress_ros.codec.entropy import PmfTable
from xmodal_compress_ros.codec.integer_hyper import index_to_scale
from xmodal_compress_ros.codec.layers import gaussian_likelihood
from xmodal_compress_ros.errors import PacketError
from xmodal_compress_ros.geometry.block_motion import MAX_RANGE, BlockMotion

#: Weights are w / WEIGHT_STEPS of the reference's latent, w = 0..WEIGHT_STEPS.
WEIGHT_STEPS = 8
#: Scale-table rows a channel's scales may move down (the table's rows are 13 % apart).
SCALE_SHIFTS = (0, 1, 2, 3, 4, 6, 8, 12)
PREDICTION_FORMAT = 1
# format, channels, motion block (0: none), motion rows, motion cols
_HEADER = struct.Struct('<BHBHH')
# A motion block's side, when there is motion: 8..255 pixels.
_MIN_BLOCK = 8


@dataclass(frozen=True)
class LatentPrediction:
    """Per channel: the weight step ``weights`` (uint8, 0..8) and the scale shift ``shifts`` (uint8,
    an index of :data:`SCALE_SHIFTS`); and the reference's block motion (None: none)."""

    weights: np.ndarray
    shifts: np.ndarray
    motion: Optional[BlockMotion] = None

    @classmethod
    def none(cls, channels: int) -> 'LatentPrediction':
        """The intra model's means and scales: what a P packet without a prediction block uses."""
        return cls(np.zeros(channels, np.uint8), np.zeros(channels, np.uint8))

    def weight_vector(self) -> torch.Tensor:
        """The graphs' ``weight`` input: float32 (1, M), w / 8."""
        return torch.from_numpy(self.weights.astype(np.float32) / WEIGHT_STEPS)[None]

    def index_shift(self) -> np.ndarray:
        """int32 (M,): the table rows each channel's scale indexes move down."""
        return np.asarray(SCALE_SHIFTS, np.int32)[self.shifts]


def _channel_bits(residual: torch.Tensor, indexes: torch.Tensor) -> torch.Tensor:
    """Estimated bits of each channel's rounded residuals under the scale rows ``indexes``."""
    likelihood = gaussian_likelihood(torch.round(residual), index_to_scale(indexes.float()))
    return -torch.log2(likelihood).sum(dim=(0, 2, 3))


def _clamped(symbols: torch.Tensor, indexes: torch.Tensor, low: torch.Tensor,
             high: torch.Tensor) -> torch.Tensor:
    """Per channel, how many symbols fall outside their table row (the coder would clamp them)."""
    return ((symbols < low[indexes]) | (symbols > high[indexes])).sum(dim=(0, 2, 3))


@torch.no_grad()
def choose_prediction(y_g: np.ndarray, mu: np.ndarray, y_ref: np.ndarray, indexes: np.ndarray,
                      table: PmfTable, motion: Optional[BlockMotion] = None) -> LatentPrediction:
    """The encoder's choice for each channel: the weight that best fits ``y_g - mu`` by ``y_ref - mu``
    (least squares, then the cheapest of it and its two neighbours by estimated bits), then the
    scale shift that costs the fewest estimated bits with it among those that clamp no more symbols
    to ``table``'s rows (the y table) than no shift does: a clamped symbol costs image quality."""
    y, mean, ref = (torch.from_numpy(np.asarray(a, np.float32)) for a in (y_g, mu, y_ref))
    idx = torch.from_numpy(np.asarray(indexes, np.int64))
    target, direction = y - mean, ref - mean
    dims = (0, 2, 3)
    fit = (target * direction).sum(dim=dims) / direction.square().sum(dim=dims).clamp_min(1e-9)
    centre = torch.round(fit.clamp(0, 1) * WEIGHT_STEPS).long()
    candidates = [(centre + d).clamp(0, WEIGHT_STEPS) for d in (-1, 0, 1)]

    def residual_of(w: torch.Tensor) -> torch.Tensor:
        return target - (w.float() / WEIGHT_STEPS)[None, :, None, None] * direction

    costs = torch.stack([_channel_bits(residual_of(w), idx) for w in candidates])
    weights = torch.stack(candidates).gather(0, costs.argmin(dim=0, keepdim=True))[0]
    residual = residual_of(weights)
    symbols = torch.round(residual)
    low = torch.from_numpy(table.offsets.astype(np.int64))
    high = low + torch.from_numpy(table.lengths.astype(np.int64)) - 1
    rows = [(idx - k).clamp_min(0) for k in SCALE_SHIFTS]
    shift_costs = torch.stack([_channel_bits(residual, r) for r in rows])
    clamped = torch.stack([_clamped(symbols, r, low, high) for r in rows])
    shift_costs[clamped > clamped[0]] = float('inf')
    shifts = shift_costs.argmin(dim=0)
    return LatentPrediction(weights.numpy().astype(np.uint8), shifts.numpy().astype(np.uint8), motion)


def predicted_mean(mu: np.ndarray, y_ref: np.ndarray, prediction: LatentPrediction) -> np.ndarray:
    """The means ``mu + w * (y_ref - mu)`` the encoder quantises against (float32)."""
    w = (prediction.weights.astype(np.float32) / WEIGHT_STEPS)[None, :, None, None]
    return (mu + w * (y_ref - mu)).astype(np.float32)


def pack_prediction(prediction: LatentPrediction) -> bytes:
    """The prediction block of a P packet (layout in docs/bitstream.md)."""
    channels = len(prediction.weights)
    per_channel = (prediction.weights * len(SCALE_SHIFTS) + prediction.shifts).astype(np.uint8)
    motion = prediction.motion
    if motion is None or not motion.field.any():
        header = _HEADER.pack(PREDICTION_FORMAT, channels, 0, 0, 0)
        return header + zlib.compress(per_channel.tobytes(), 9)
    rows, cols = motion.field.shape[:2]
    # Row-wise differences: neighbouring blocks move alike, so the deltas are mostly zero.
    deltas = np.diff(motion.field.astype(np.int16), axis=1, prepend=0).astype(np.int8)
    header = _HEADER.pack(PREDICTION_FORMAT, channels, motion.block, rows, cols)
    return header + zlib.compress(per_channel.tobytes() + deltas.tobytes(), 9)


def parse_prediction(data: bytes, channels: int, size: Tuple[int, int]) -> LatentPrediction:
    """The prediction block of a P packet for a model of ``channels`` latent channels and an image of
    ``size`` (width, height); malformed blocks raise :class:`PacketError`."""
    if len(data) < _HEADER.size:
        raise PacketError(f'prediction block of {len(data)} bytes is shorter than its header')
    version, declared, block, rows, cols = _HEADER.unpack_from(data)
    if version != PREDICTION_FORMAT:
        raise PacketError(f'prediction block format {version} is unknown; '
                          f'this build reads {PREDICTION_FORMAT}')
    if declared != channels:
        raise PacketError(f'prediction block is for {declared} channels; the model has {channels}')
    width, height = size
    if block and (block < _MIN_BLOCK or (rows, cols) != BlockMotion.grid(height, width, block)):
        raise PacketError(f'prediction block declares {rows}x{cols} motion blocks of {block} pixels, '
                          f'which do not cover a {width}x{height} image')
    expected = channels + 2 * rows * cols
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data[_HEADER.size:], expected + 1)
    except zlib.error as exc:
        raise PacketError(f'prediction block does not inflate: {exc}') from None
    if len(raw) != expected or not inflater.eof or inflater.unused_data:
        raise PacketError(f'prediction block holds {len(raw)} bytes, expected {expected}')
    per_channel = np.frombuffer(raw[:channels], np.uint8)
    weights, shifts = per_channel // len(SCALE_SHIFTS), per_channel % len(SCALE_SHIFTS)
    if (weights > WEIGHT_STEPS).any():
        raise PacketError(f'prediction block has channel weights above {WEIGHT_STEPS}')
    motion = None
    if block:
        deltas = np.frombuffer(raw[channels:], np.int8).reshape(rows, cols, 2).astype(np.int16)
        field = np.cumsum(deltas, axis=1)
        if np.abs(field).max(initial=0) > MAX_RANGE:
            raise PacketError(f'prediction block moves a block by more than {MAX_RANGE} pixels')
        motion = BlockMotion(block, field.astype(np.int8))
    return LatentPrediction(weights.astype(np.uint8), shifts.astype(np.uint8), motion)
