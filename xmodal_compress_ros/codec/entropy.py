"""Entropy models as integer probability tables, and the entropy coders that use them.

Whatever decides how a symbol is parsed must be bit-identical on the encoder and the decoder,
which may run on different devices and runtimes. So the coder never sees a float: every latent
element comes with an integer symbol and an integer *index* selecting one row of a
:class:`PmfTable`, a table of integer probabilities stored in the model file. Tables are built
once, when a model is exported (:func:`gaussian_table`, :func:`table_from_pmfs`); decoding only
reads the stored integers.

::

    symbols (int32) --+
    indexes (int32) --+--> EntropyCoder.encode(symbols, indexes, table) --> bytes
    PmfTable (ints) --+                                                       |
                                                                              v
    symbols <------------- EntropyCoder.decode(bytes, indexes, table) <-------+

The coders are picked by name (:func:`get_coder`), as CompressAI's ``_EntropyCoder`` does.
The byte format of ``constriction-ans`` is specified in ``docs/entropy_coding.md``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Dict, List, Protocol, Tuple

import numpy as np

from xmodal_compress_ros.codec import rans_kernels
from xmodal_compress_ros.errors import ModelFileError, PacketError

#: Probability precisions a table may use: constriction's categorical models work at 24 bits,
#: and the exactness argument in ``docs/entropy_coding.md`` needs ``precision <= 24``.
MIN_PRECISION = 8
MAX_PRECISION = 24
DEFAULT_PRECISION = 16
#: Longest row a table may have (symbols per distribution).
MAX_TABLE_LENGTH = 1 << 16
#: Largest magnitude of a row offset, so that every symbol value fits in an int32.
MAX_ABS_OFFSET = 1 << 30
#: Most independent substreams one encoded section may hold (stored in one byte).
MAX_SUBSTREAMS = 64
#: Implementations of the one coder: ``'auto'`` is numba's when it imports, else constriction's.
ENGINES = ('auto', 'numba', 'constriction')


@dataclass(frozen=True, eq=False)
class PmfTable:
    """Integer probability mass functions, one per row, shared bit for bit by both ends.

    Row ``l`` describes the symbols ``offsets[l] .. offsets[l] + lengths[l] - 1``; symbol
    ``offsets[l] + j`` has probability ``pmfs[l, j] / 2**precision``.

    Attributes:
        pmfs: int32 (L, S_max). In each row the first ``lengths[l]`` entries are >= 1 and sum to
            exactly ``2**precision``; the rest are 0.
        lengths: int32 (L,), each in 1..S_max.
        offsets: int32 (L,), the symbol value of column 0 of each row (e.g. ``-tail``).
        precision: bits of probability resolution, 8..24.

    Construction validates everything and raises :class:`ModelFileError` on inconsistent data
    (tables come from model files). The arrays are stored read-only.
    """

    pmfs: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray
    precision: int = DEFAULT_PRECISION

    def __post_init__(self) -> None:
        for name in ('pmfs', 'lengths', 'offsets'):
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in 'iu':
                raise ModelFileError(
                    f'PmfTable.{name} must hold integers, got dtype {value.dtype}; '
                    'build tables with quantize_pmf() or gaussian_table()')
            if value.size and (value.min() < np.iinfo(np.int32).min or value.max() > np.iinfo(np.int32).max):
                raise ModelFileError(f'PmfTable.{name} has values outside the int32 range')
            array = np.array(value, dtype=np.int32, order='C')
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        if isinstance(self.precision, np.integer):
            object.__setattr__(self, 'precision', int(self.precision))
        self.validate()

    def validate(self) -> None:
        """Check every invariant; raises :class:`ModelFileError` naming the first violation."""
        pmfs, lengths, offsets = self.pmfs, self.lengths, self.offsets
        if isinstance(self.precision, bool) or not isinstance(self.precision, (int, np.integer)):
            raise ModelFileError(f'PmfTable.precision must be an int, got {self.precision!r}')
        if not MIN_PRECISION <= self.precision <= MAX_PRECISION:
            raise ModelFileError(
                f'PmfTable.precision is {self.precision}; it must be in '
                f'{MIN_PRECISION}..{MAX_PRECISION}')
        if pmfs.ndim != 2 or pmfs.shape[0] < 1 or pmfs.shape[1] < 1:
            raise ModelFileError(f'PmfTable.pmfs must be a non-empty (L, S) array, got shape {pmfs.shape}')
        rows, width = pmfs.shape
        if width > MAX_TABLE_LENGTH:
            raise ModelFileError(
                f'PmfTable rows have {width} columns; at most {MAX_TABLE_LENGTH} are allowed')
        if lengths.shape != (rows,) or offsets.shape != (rows,):
            raise ModelFileError(
                f'PmfTable.lengths and .offsets must have shape ({rows},) like the rows of pmfs, '
                f'got {lengths.shape} and {offsets.shape}')
        if lengths.min() < 1 or lengths.max() > width:
            raise ModelFileError(
                f'PmfTable.lengths must be in 1..{width}, got {lengths.min()}..{lengths.max()}')
        if np.abs(offsets.astype(np.int64)).max() > MAX_ABS_OFFSET:
            raise ModelFileError(f'PmfTable.offsets must be within +-{MAX_ABS_OFFSET}')
        inside = np.arange(width)[None, :] < lengths[:, None]
        bad_rows = np.flatnonzero(np.any(inside & (pmfs < 1), axis=1) | np.any(~inside & (pmfs != 0), axis=1))
        if bad_rows.size:
            row = int(bad_rows[0])
            raise ModelFileError(
                f'PmfTable row {row} has an entry < 1 within its length {int(lengths[row])} or a '
                'nonzero entry past it; every codable symbol needs a probability of at least 1')
        sums = pmfs.astype(np.int64).sum(axis=1)
        bad_rows = np.flatnonzero(sums != (1 << self.precision))
        if bad_rows.size:
            row = int(bad_rows[0])
            raise ModelFileError(
                f'PmfTable row {row} sums to {int(sums[row])}, not 2**{self.precision} = '
                f'{1 << self.precision}; re-export the model tables')

    @property
    def num_rows(self) -> int:
        """Number of distributions (valid indexes are 0 .. num_rows - 1)."""
        return int(self.pmfs.shape[0])

    def ideal_bits(self, symbols: np.ndarray, indexes: np.ndarray) -> float:
        """The information content ``sum(-log2 p)`` of in-range ``symbols`` under their rows."""
        indexes = _check_indexes(indexes, self)
        symbols = _check_symbols(symbols, indexes)
        columns, bad = _columns(symbols, self.offsets[indexes], self.lengths[indexes])
        if bad.size:
            raise _out_of_range(bad.size, int(symbols[bad[0]]), int(indexes[bad[0]]), self)
        counts = self.pmfs[indexes, columns].astype(np.float64)
        return float(np.sum(self.precision - np.log2(counts)))


def quantize_pmf(pmf: np.ndarray, lengths: np.ndarray, precision: int = DEFAULT_PRECISION) -> np.ndarray:
    """Quantize float probabilities to integer rows that sum to exactly ``2**precision``.

    Deterministic by construction: only IEEE-754 basic operations (one multiply, one divide and
    one floor per entry, row totals by sequential summation) and integer arithmetic, so identical
    float64 inputs give identical integers on every machine. Each symbol within ``lengths`` gets
    ``1 + floor(p * free / total)`` where ``free = 2**precision - length``; the few counts left
    over go to the entries with the largest fractional parts (ties: lower column first).

    Args:
        pmf: float (L, S), non-negative, finite. A row of zeros becomes uniform.
        lengths: (L,) number of symbols of each row, 1..S; entries past it are ignored.
        precision: 8..24.

    Returns:
        int32 (L, S) with zeros past each row's length.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    lengths = np.asarray(lengths)
    if pmf.ndim != 2 or pmf.shape[0] < 1 or pmf.shape[1] < 1:
        raise ValueError(f'pmf must be a non-empty (L, S) array, got shape {pmf.shape}')
    rows, width = pmf.shape
    if not MIN_PRECISION <= int(precision) <= MAX_PRECISION:
        raise ValueError(f'precision is {precision}; it must be in {MIN_PRECISION}..{MAX_PRECISION}')
    if lengths.shape != (rows,) or lengths.dtype.kind not in 'iu':
        raise ValueError(
            f'lengths must be an integer array of shape ({rows},), got {lengths.dtype} {lengths.shape}')
    if lengths.min() < 1 or lengths.max() > min(width, MAX_TABLE_LENGTH, 1 << precision):
        raise ValueError(
            f'lengths must be in 1..{min(width, MAX_TABLE_LENGTH, 1 << precision)}, '
            f'got {lengths.min()}..{lengths.max()}')
    inside = np.arange(width)[None, :] < lengths[:, None]
    if not np.all(np.isfinite(pmf[inside])) or pmf[inside].min() < 0:
        raise ValueError('pmf must be finite and non-negative within each row length')
    counts, overflowed = rans_kernels.quantize_rows(np.ascontiguousarray(pmf), lengths.astype(np.int64),
                                                    int(precision))
    if overflowed:
        raise ValueError('pmf quantization overflowed; the input probabilities are degenerate')
    return counts


def table_from_pmfs(
    pmf: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray | None = None,
    precision: int = DEFAULT_PRECISION,
) -> PmfTable:
    """A table from float probabilities, e.g. the learned per-channel densities of ``z``.

    Args:
        pmf: float (C, S) probabilities of symbols ``offsets[c] + j`` (need not be normalized).
        offsets: (C,) symbol value of column 0 of each row.
        lengths: (C,) symbols per row; default: all S columns.
        precision: probability bits, 8..24.
    """
    pmf = np.asarray(pmf, dtype=np.float64)
    if lengths is None:
        lengths = np.full(pmf.shape[0] if pmf.ndim == 2 else 0, pmf.shape[-1], dtype=np.int64)
    counts = quantize_pmf(pmf, lengths, precision)
    return PmfTable(counts, np.asarray(lengths), np.asarray(offsets), precision)


def default_scale_table(levels: int = 64, s_min: float = 0.11, s_max: float = 256.0) -> np.ndarray:
    """Log-spaced Gaussian scales (CompressAI's ``get_scale_table``): float64 (levels,)."""
    if levels < 1 or not 0 < s_min <= s_max:
        raise ValueError(f'need levels >= 1 and 0 < s_min <= s_max, got {levels}, {s_min}, {s_max}')
    return np.exp(np.linspace(math.log(s_min), math.log(s_max), levels))


def _standard_normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) through erfc, accurate in the lower tail (as CompressAI's _standardized_cumulative)."""
    erfc = np.vectorize(math.erfc, otypes=[np.float64])
    return 0.5 * erfc(-x / math.sqrt(2.0))


def gaussian_table(
    scales: np.ndarray,
    tail_mass: float = 1e-9,
    precision: int = DEFAULT_PRECISION,
    max_length: int = 4097,
) -> PmfTable:
    """Tables of zero-mean Gaussians quantized to integer bins, one row per scale.

    Symbols are ``round(y - mu)``, so every row is centred on 0. Row ``l`` covers
    ``-c .. c`` with ``c = ceil(scales[l] * q)`` where ``q`` is the standard normal quantile at
    ``1 - tail_mass / 2`` (capped so that ``2c + 1 <= max_length``); the two edge bins absorb the
    tails, so clamping an outlier to the edge (:func:`clamp_symbols`) is the only loss.

    Uses ``erfc`` in floating point: run it once when a model file is exported and store the
    resulting integers; decoding never calls it.
    """
    scales = np.asarray(scales, dtype=np.float64)
    if scales.ndim != 1 or scales.size < 1 or not np.all(np.isfinite(scales)) or scales.min() <= 0:
        raise ValueError('scales must be a non-empty 1-D array of positive finite numbers')
    if not 0 < tail_mass < 1:
        raise ValueError(f'tail_mass must be in (0, 1), got {tail_mass}')
    if not 3 <= max_length <= min(MAX_TABLE_LENGTH - 1, (1 << precision) - 1):
        raise ValueError(f'max_length must be in 3..{min(MAX_TABLE_LENGTH - 1, (1 << precision) - 1)}')
    multiplier = -statistics.NormalDist().inv_cdf(tail_mass / 2)
    centers = np.minimum(np.ceil(scales * multiplier), (max_length - 1) // 2).astype(np.int64)
    centers = np.maximum(centers, 1)
    lengths = 2 * centers + 1
    width = int(lengths.max())
    # Bin k covers [k - 1/2, k + 1/2]; by symmetry compute it in the lower tail, where Phi is
    # accurate: P(k) = Phi((1/2 - |k|)/s) - Phi((-1/2 - |k|)/s).
    magnitude = np.abs(np.arange(width)[None, :] - centers[:, None]).astype(np.float64)
    upper = _standard_normal_cdf((0.5 - magnitude) / scales[:, None])
    lower = _standard_normal_cdf((-0.5 - magnitude) / scales[:, None])
    is_edge = magnitude == centers[:, None]
    pmf = np.where(is_edge, upper, upper - lower)
    inside = np.arange(width)[None, :] < lengths[:, None]
    pmf = np.where(inside, pmf, 0.0)
    return PmfTable(quantize_pmf(pmf, lengths, precision), lengths, -centers, precision)


def clamp_symbols(symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> np.ndarray:
    """Clip each symbol into the range its row can code (encoder side).

    A clamped symbol decodes to the edge value of its row, so clamping changes only the
    reconstruction (by the clipped amount, in the rare tail of mass ``tail_mass``), never the
    parse. Returns int32.
    """
    indexes = _check_indexes(indexes, table)
    symbols = np.asarray(symbols)
    if symbols.shape != indexes.shape:
        raise ValueError(f'symbols {symbols.shape} and indexes {indexes.shape} must have the same shape')
    # Each row's bounds first (int64: offset + length - 1 may pass int32), then one gather of each.
    row_high = table.offsets.astype(np.int64) + table.lengths - 1
    low, high = table.offsets[indexes], row_high[indexes]
    return np.clip(symbols.astype(np.int64, copy=False), low, high).astype(np.int32)


def _check_indexes(indexes: np.ndarray, table: PmfTable) -> np.ndarray:
    indexes = np.asarray(indexes)
    if indexes.ndim != 1 or (indexes.size and indexes.dtype.kind not in 'iu'):
        raise ValueError(f'indexes must be a 1-D integer array, got {indexes.dtype} {indexes.shape}')
    if indexes.size and (indexes.min() < 0 or indexes.max() >= table.num_rows):
        raise ValueError(
            f'indexes must be in 0..{table.num_rows - 1} (rows of the table), got '
            f'{indexes.min()}..{indexes.max()}; clamp the scale indexes in the model')
    return indexes


def _check_symbols(symbols: np.ndarray, indexes: np.ndarray) -> np.ndarray:
    symbols = np.asarray(symbols)
    if symbols.shape != indexes.shape or (symbols.size and symbols.dtype.kind not in 'iu'):
        raise ValueError(
            f'symbols must be a 1-D integer array shaped like indexes {indexes.shape}, '
            f'got {symbols.dtype} {symbols.shape}')
    return symbols


def _columns(symbols: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Column of each symbol in its row, and the positions where it is out of range.

    Works in int32 when no difference can overflow it (symbols within +-2**30, the bound on
    offsets too), else in int64. One unsigned comparison catches both negative columns and
    columns past the row length.
    """
    narrow = symbols.dtype == np.int32 and (
        symbols.size == 0 or -MAX_ABS_OFFSET <= min(int(symbols.min()), -int(symbols.max())))
    signed, unsigned = (np.int32, np.uint32) if narrow else (np.int64, np.uint64)
    columns = symbols.astype(signed, copy=False) - offsets.astype(signed, copy=False)
    return columns, np.flatnonzero(columns.view(unsigned) >= lengths.astype(unsigned, copy=False))


def _out_of_range(count: int, symbol: int, row: int, table: PmfTable) -> ValueError:
    low = int(table.offsets[row])
    return ValueError(
        f'{count} symbols are outside the range of their table row, e.g. symbol {symbol} with '
        f'row {row} covering {low}..{low + int(table.lengths[row]) - 1}; call clamp_symbols() first')


class EntropyCoder(Protocol):
    """Turns (symbols, indexes, table) into bytes and back, exactly."""

    name: str

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> bytes:
        """Encode int32 ``symbols`` (1-D), each under the table row given by ``indexes``."""
        ...

    def decode(self, data: bytes, indexes: np.ndarray, table: PmfTable) -> np.ndarray:
        """Decode ``len(indexes)`` symbols; corrupted ``data`` raises :class:`PacketError`."""
        ...


def _group_order(indexes: np.ndarray, rows: int) -> np.ndarray:
    """Positions sorted by row, stably (so by position within a row)."""
    # Narrow keys make NumPy's stable argsort a radix sort (several times faster).
    key_type = np.uint8 if rows <= 1 << 8 else np.uint16 if rows <= 1 << 16 else np.int64
    return np.argsort(indexes.astype(key_type), kind='stable')


def _runs(counts: np.ndarray, lengths: np.ndarray, num_substreams: int) -> List[List[Tuple[int, int, int]]]:
    """Per substream, the ``(row, start, stop)`` runs of the symbols grouped by row.

    Row ``g``'s ``counts[g]`` symbols are contiguous once grouped and are cut into K consecutive
    near-equal runs, the first ``counts[g] % K`` one longer; run k goes to substream k. Rows of
    length 1 carry no information and get no run.
    """
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    runs: List[List[Tuple[int, int, int]]] = [[] for _ in range(num_substreams)]
    for row in np.flatnonzero((counts > 0) & (lengths > 1)):
        base, extra = divmod(int(counts[row]), num_substreams)
        start = int(starts[row])
        for k in range(num_substreams):
            size = base + (k < extra)
            if size:
                runs[k].append((int(row), start, start + size))
            start += size
    return runs


class ConstrictionAnsCoder:
    """rANS in constriction's format (``stream.stack.AnsCoder``, 32-bit words, 24-bit models).

    Symbols are grouped by row (one fixed categorical model per row used) so that each group is
    coded as one run, and split into ``num_substreams`` independent ANS streams.

    Two engines write and read the same bytes. ``'numba'`` (:mod:`rans_kernels`) codes the
    substreams on several threads with the GIL released; ``'constriction'``, the format's
    reference, holds the GIL while it codes (measured, see ``docs/entropy_coding.md``), so it codes
    the substreams one after another. ``'auto'`` takes numba when it imports.

    Each row's integer counts are handed to constriction as float64 (exact). Its fast
    categorical quantizer then computes ``floor(C * (2**24 - n) / 2**P) + i`` for cumulative
    counts ``C``: every intermediate value is an integer below 2**53 or such an integer divided
    by a power of two, so all float operations are exact and the 24-bit model is a pure function
    of the stored integers on every machine; the numba engine computes it in integers.
    """

    name = 'constriction-ans'

    def __init__(self, num_substreams: int = 1, engine: str = 'auto') -> None:
        if not 1 <= int(num_substreams) <= MAX_SUBSTREAMS:
            raise ValueError(f'num_substreams must be in 1..{MAX_SUBSTREAMS}, got {num_substreams}')
        if engine not in ENGINES:
            raise ValueError(f'unknown entropy coding engine {engine!r}; choose one of {", ".join(ENGINES)}')
        if engine == 'numba' and not rans_kernels.available():
            raise ValueError("engine 'numba' needs the numba package (pip install numba)")
        self.num_substreams = int(num_substreams)
        self.engine = engine if engine != 'auto' else 'numba' if rans_kernels.available() else 'constriction'

    @staticmethod
    def _model(table: PmfTable, row: int):
        import constriction

        counts = table.pmfs[row, :table.lengths[row]].astype(np.float64)
        return constriction.stream.model.Categorical(counts, perfect=False)

    def encode(self, symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> bytes:
        """Encode; raises ValueError for out-of-range symbols or indexes."""
        indexes = _check_indexes(indexes, table)
        symbols = _check_symbols(symbols, indexes)
        if self.engine == 'numba':
            streams = self._encode_numba(symbols, indexes, table)
        else:
            streams = self._encode_constriction(symbols, indexes, table)
        header = np.array([len(s) for s in streams], dtype='<u4').tobytes()
        return bytes([self.num_substreams]) + header + b''.join(streams)

    def decode(self, data: bytes, indexes: np.ndarray, table: PmfTable) -> np.ndarray:
        """Decode ``len(indexes)`` symbols (int32); inconsistent data raises PacketError."""
        indexes = _check_indexes(indexes, table)
        streams = split_substreams(data)
        if self.engine == 'numba':
            return self._decode_numba(streams, indexes, table)
        return self._decode_constriction(streams, indexes, table)

    def _encode_numba(self, symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> List[bytes]:
        if rans_kernels.first_out_of_range(symbols, indexes, table) >= 0:
            _raise_out_of_range(symbols, indexes, table)
        order, counts = rans_kernels.group_order(indexes, table.num_rows)
        runs = _runs(counts, table.lengths, self.num_substreams)
        return [words.astype('<u4').tobytes() for words in rans_kernels.encode(symbols, order, runs, table)]

    @staticmethod
    def _decode_numba(streams: List[np.ndarray], indexes: np.ndarray, table: PmfTable) -> np.ndarray:
        for k, words in enumerate(streams):
            if words.size and words[-1] == 0:
                raise PacketError(f'entropy-coded substream {k} is corrupted: its last word is zero')
        order, counts = rans_kernels.group_order(indexes, table.num_rows)
        # Rows of length 1 have no runs: their symbols are their offsets.
        symbols = table.offsets[indexes]
        runs = _runs(counts, table.lengths, len(streams))
        ended = rans_kernels.decode(streams, order, runs, table, symbols)
        if not all(ended):
            raise _leftover_data(ended.index(False))
        return symbols

    def _encode_constriction(self, symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> List[bytes]:
        import constriction

        order = _group_order(indexes, table.num_rows)
        counts = np.bincount(indexes, minlength=table.num_rows)
        # Grouped by row, the per-symbol offsets and lengths are runs: np.repeat, no gather.
        columns, bad = _columns(
            symbols[order], np.repeat(table.offsets, counts), np.repeat(table.lengths, counts))
        if bad.size:
            _raise_out_of_range(symbols, indexes, table)
        columns = columns.astype(np.int32, copy=False)
        models: Dict[int, object] = {}
        streams = []
        for runs in _runs(counts, table.lengths, self.num_substreams):
            coder = constriction.stream.stack.AnsCoder()
            # ANS is a stack: push the runs last-to-first so they pop first-to-last.
            for row, start, stop in reversed(runs):
                if row not in models:
                    models[row] = self._model(table, row)
                coder.encode_reverse(columns[start:stop], models[row])
            streams.append(np.asarray(coder.get_compressed(), dtype='<u4').tobytes())
        return streams

    def _decode_constriction(self, streams: List[np.ndarray], indexes: np.ndarray,
                             table: PmfTable) -> np.ndarray:
        import constriction

        counts = np.bincount(indexes, minlength=table.num_rows)
        columns = np.zeros(indexes.size, dtype=np.int32)
        models: Dict[int, object] = {}
        for k, (words, runs) in enumerate(zip(streams, _runs(counts, table.lengths, len(streams)))):
            try:
                coder = constriction.stream.stack.AnsCoder(words)
            except ValueError as exc:
                raise PacketError(f'entropy-coded substream {k} is corrupted: {exc}') from None
            for row, start, stop in runs:
                if row not in models:
                    models[row] = self._model(table, row)
                columns[start:stop] = coder.decode(models[row], stop - start)
            if not coder.is_empty():
                raise _leftover_data(k)
        symbols = np.empty(indexes.size, dtype=np.int32)
        symbols[_group_order(indexes, table.num_rows)] = columns + np.repeat(table.offsets, counts)
        return symbols


def _raise_out_of_range(symbols: np.ndarray, indexes: np.ndarray, table: PmfTable) -> None:
    _, bad = _columns(symbols, table.offsets[indexes], table.lengths[indexes])
    raise _out_of_range(bad.size, int(symbols[bad[0]]), int(indexes[bad[0]]), table)


def _leftover_data(substream: int) -> PacketError:
    return PacketError(
        f'entropy-coded substream {substream} holds more data than its symbols need: the packet '
        'is corrupted or was decoded with another model')


def split_substreams(data: bytes) -> List[np.ndarray]:
    """Parse ``u8 K | K x u32 byte length | K substreams`` into K arrays of uint32 words.

    Every length is checked against the data actually present, so corrupted input raises
    :class:`PacketError` and never allocates more than ``len(data)``.
    """
    data = bytes(data)
    if len(data) < 1:
        raise PacketError('entropy-coded section is empty; it must start with its substream count')
    count = data[0]
    if not 1 <= count <= MAX_SUBSTREAMS:
        raise PacketError(f'entropy-coded section declares {count} substreams; valid: 1..{MAX_SUBSTREAMS}')
    header_end = 1 + 4 * count
    if len(data) < header_end:
        raise PacketError(
            f'entropy-coded section is truncated: {len(data)} bytes, its header alone needs {header_end}')
    sizes = np.frombuffer(data, dtype='<u4', count=count, offset=1).astype(np.int64)
    if np.any(sizes % 4):
        raise PacketError(f'entropy-coded substream sizes {sizes.tolist()} must be multiples of 4 bytes')
    if int(sizes.sum()) != len(data) - header_end:
        raise PacketError(
            f'entropy-coded substreams declare {int(sizes.sum())} bytes but {len(data) - header_end} follow')
    ends = header_end + np.cumsum(sizes)
    starts = ends - sizes
    return [np.frombuffer(data, dtype='<u4', count=int(n) // 4, offset=int(s)).astype(np.uint32)
            for s, n in zip(starts, sizes)]


_CODERS: Dict[str, Callable[..., EntropyCoder]] = {
    ConstrictionAnsCoder.name: ConstrictionAnsCoder,
}


def warm_up() -> None:
    """Compile the default engine's kernels for the dtypes the codec codes (int32 symbols and
    indexes), so that the first packet is not slowed by it (about 2 s, or 0.4 s from numba's cache)."""
    table = gaussian_table(np.array([0.5, 4.0]))
    symbols, indexes = np.array([0, 1, -2], np.int32), np.array([0, 1, 1], np.int32)
    coder = ConstrictionAnsCoder(2)
    coder.decode(coder.encode(symbols, indexes, table), indexes, table)


def available_coders() -> List[str]:
    """Names accepted by :func:`get_coder`."""
    return sorted(_CODERS)


def get_coder(name: str, **kwargs) -> EntropyCoder:
    """The entropy coder registered as ``name``; keyword arguments go to its constructor."""
    try:
        factory = _CODERS[name]
    except KeyError:
        raise ValueError(
            f'unknown entropy coder {name!r}; available: {", ".join(available_coders())}') from None
    return factory(**kwargs)
