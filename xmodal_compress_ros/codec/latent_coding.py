"""The one implementation of latent coding: quantisation, integer scale indexes and rANS, in NumPy.

Both :meth:`HyperpriorCodec.compress` (PyTorch reference) and :mod:`codec.pipeline` (any inference
backend) call these functions; they differ only in who computes the float tensors ``y_g``, ``z``
and the means ``mu``. What decides how a symbol is parsed never comes from a float network::

    z ──floor(z + 1/2)──> z_hat ──rANS (z table row = channel)──> z bytes
                            │
                            ├──IntegerHyperSynthesis──> indexes (int32, one per element of y)
                            └──mean(z_hat) (float, any backend)──> mu
    y_g ──floor(y_g - mu + 1/2)──> symbols ──rANS (y table row = index)──> y bytes

Decoding reads the z bytes with the fixed z table, recomputes the same integer indexes from
``z_hat`` and reads the y bytes with them: integers only, identical on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import numpy as np

from xmodal_compress_ros.codec import entropy

#: Entropy coder of both streams.
CODER_NAME = 'constriction-ans'
#: Independent rANS substreams of the y section (decodable in parallel by a native decoder).
DEFAULT_Y_SUBSTREAMS = 4
#: Latents are at 1/16 and hyper-latents at 1/64 of the (padded) input size.
HYPER_DOWNSAMPLING = 64

# (z table, y table, IntegerHyperSynthesis): a model's ``entropy_tables``.
Tables = Tuple[entropy.PmfTable, entropy.PmfTable, object]
MeanFunction = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Latents:
    """The integers a packet carries, as both ends see them.

    Attributes:
        z_hat: int32 (1, Nz, Hp/64, Wp/64) quantised hyper-latent.
        symbols: int32 (1, M, Hp/16, Wp/16) quantised residuals ``y_g - mu``.
        indexes: int32, same shape as ``symbols``: the scale-table row of each symbol.
    """

    z_hat: np.ndarray = field(repr=False)
    symbols: np.ndarray = field(repr=False)
    indexes: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class EncodedLatents:
    """The two entropy-coded sections and the latents they hold."""

    z_bytes: bytes = field(repr=False)
    y_bytes: bytes = field(repr=False)
    latents: Latents


def channel_indexes(shape: Tuple[int, ...]) -> np.ndarray:
    """z-table row of each element of a (1, C, h, w) hyper-latent: its channel, flattened (int32)."""
    _, channels, height, width = shape
    return np.repeat(np.arange(channels, dtype=np.int32), height * width)


def round_half_up(values: np.ndarray) -> np.ndarray:
    """``floor(v + 1/2)`` in float32 as int64 (the rounding the training straight-through uses)."""
    return np.floor(np.asarray(values, dtype=np.float32) + np.float32(0.5)).astype(np.int64)


def quantise_hyper_latent(z: np.ndarray, tables: Tables) -> np.ndarray:
    """``z_hat``, int32 of ``z``'s shape: ``z`` rounded half up and clamped to its table's range."""
    z_shape = tuple(np.shape(z))
    z_sym = entropy.clamp_symbols(round_half_up(z).ravel(), channel_indexes(z_shape), tables[0])
    return z_sym.reshape(z_shape).astype(np.int32)


def shifted_indexes(indexes: np.ndarray, shift: Optional[np.ndarray]) -> np.ndarray:
    """Scale indexes (int32 (1, M, h, w)) moved down by ``shift`` rows (int32, the indexes' shape, from
    the packet), floored at row 0: a P frame's narrower scales (:mod:`codec.latent_prediction`)."""
    if shift is None or not np.any(shift):
        return indexes
    return np.maximum(indexes - np.asarray(shift, np.int32), 0).astype(np.int32)


def encode_latents(y_g: np.ndarray, z: np.ndarray, mean: MeanFunction, tables: Tables,
                   y_substreams: int = DEFAULT_Y_SUBSTREAMS) -> EncodedLatents:
    """Quantise and entropy-code one image's latents.

    Args:
        y_g: float (1, M, h, w), the gained latent from the analysis transform.
        z: float (1, Nz, h/4, w/4), the hyper-latent.
        mean: ``z_hat`` (int32 NumPy) -> ``mu`` (float NumPy, shape of ``y_g``); any backend.
        tables: the model's ``entropy_tables`` (z table, y table, integer scale path).
        y_substreams: rANS substreams of the y section, 1..64.
    """
    z_hat = quantise_hyper_latent(z, tables)
    return code_latents(y_g, z_hat, mean(z_hat), tables[2](z_hat), tables, y_substreams)


def code_latents(y_g: np.ndarray, z_hat: np.ndarray, mu: np.ndarray, indexes: np.ndarray, tables: Tables,
                 y_substreams: int = DEFAULT_Y_SUBSTREAMS) -> EncodedLatents:
    """Entropy-code ``z_hat`` (:func:`quantise_hyper_latent`) and ``y_g`` rounded against the means
    ``mu`` under the scale rows ``indexes``: the integer hyper-synthesis of ``z_hat``, for a P frame
    moved down by :func:`shifted_indexes` (:func:`encode_latents` does all of it for an intra frame)."""
    z_table, y_table, _ = tables
    z_bytes = entropy.get_coder(CODER_NAME).encode(z_hat.ravel(), channel_indexes(z_hat.shape), z_table)
    if indexes.shape != tuple(np.shape(y_g)):
        raise ValueError(f'scale indexes {indexes.shape} do not match y_g {tuple(np.shape(y_g))}')
    mu = np.asarray(mu, dtype=np.float32)
    residual = np.asarray(y_g, dtype=np.float32) - mu
    y_sym = entropy.clamp_symbols(round_half_up(residual).ravel(), indexes.ravel(), y_table)
    y_coder = entropy.get_coder(CODER_NAME, num_substreams=y_substreams)
    y_bytes = y_coder.encode(y_sym, indexes.ravel(), y_table)
    latents = Latents(z_hat, y_sym.reshape(indexes.shape).astype(np.int32, copy=False), indexes)
    return EncodedLatents(z_bytes, y_bytes, latents)


def decode_latents(z_bytes: bytes, y_bytes: bytes, padded_size: Tuple[int, int], tables: Tables,
                   index_shift: Optional[np.ndarray] = None) -> Latents:
    """Parse both sections of an image of ``padded_size`` (H, W), multiples of 64; ``index_shift`` the
    rows a P frame's scale indexes move down (:func:`shifted_indexes`), read from the same packet.

    Integer-only: the result is the same on every machine whatever runs the float networks.
    Inconsistent data raises :class:`PacketError` (from the entropy coder).
    """
    z_table, y_table, int_hyper = tables
    height, width = padded_size
    if height % HYPER_DOWNSAMPLING or width % HYPER_DOWNSAMPLING or height <= 0 or width <= 0:
        raise ValueError(f'padded size {padded_size} must be positive multiples of {HYPER_DOWNSAMPLING}')
    z_shape = (1, z_table.num_rows, height // HYPER_DOWNSAMPLING, width // HYPER_DOWNSAMPLING)
    coder = entropy.get_coder(CODER_NAME)
    z_hat = coder.decode(z_bytes, channel_indexes(z_shape), z_table).reshape(z_shape)
    indexes = shifted_indexes(int_hyper(z_hat), index_shift)
    symbols = coder.decode(y_bytes, indexes.ravel(), y_table).reshape(indexes.shape)
    return Latents(z_hat.astype(np.int32, copy=False), symbols.astype(np.int32, copy=False), indexes)
