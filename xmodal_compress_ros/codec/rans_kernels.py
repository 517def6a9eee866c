"""Compiled rANS kernels for the ``constriction-ans`` byte format, run without the GIL.

constriction defines the format (``docs/entropy_coding.md``) and stays its reference, but it holds
the GIL while it codes, so a second core codes nothing. These kernels write and read the same bytes
(the tests compare them with constriction's), compiled by numba with the GIL released, so the
substreams of a section are coded on several threads at once.

Integer arithmetic only (a uint64 state, 32-bit words, 24-bit probabilities): the bytes and the
symbols are the same on every machine. A row's 24-bit model is the one constriction's fast quantizer
builds from the stored counts, ``left[i] = floor(C_i * (2**24 - n) / 2**P) + i``. Decoding finds a
symbol from a lookup on the quantile's top bits and a short forward scan, where constriction
bisects the row.
"""
from __future__ import annotations

import math
import threading
import weakref
from typing import List, Tuple

import numpy as np

from xmodal_compress_ros.codec.kernel_threads import parallel_map

try:
    import numba
except ImportError:  # the coder falls back to constriction
    numba = None

#: Probability bits of the coder's model and its word size (constriction's AnsCoder<u32, u64>).
MODEL_BITS = 24
WORD_BITS = 32
STATE_BITS = 64
#: The decoder's lookup has 2**LOOKUP_BITS entries per row, indexed by the quantile's top bits.
LOOKUP_BITS = 12

Run = Tuple[int, int, int]
_tables: 'weakref.WeakKeyDictionary' = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def available() -> bool:
    """Whether the kernels can run (numba imports)."""
    return numba is not None


def model_bounds(pmfs: np.ndarray, lengths: np.ndarray, precision: int) -> np.ndarray:
    """Every row's 24-bit cumulative bounds: uint32 (L, S_max + 1), ``left[l, 0..n]`` with
    ``left[l, n] = 2**24``; entries past ``n`` are ``2**24`` too."""
    return _model_bounds(np.ascontiguousarray(pmfs), np.ascontiguousarray(lengths, dtype=np.int64),
                         int(precision))


def _model_bounds(pmfs, lengths, precision):
    # One compiled pass: the LiDAR codec builds its tables for every scan, on both ends.
    rows, width = pmfs.shape
    left = np.full((rows, width + 1), 1 << MODEL_BITS, dtype=np.uint32)
    for row in range(rows):
        n = lengths[row]
        scale = (1 << MODEL_BITS) - n
        cumulative = 0
        for column in range(n):
            left[row, column] = ((cumulative * scale) >> precision) + column
            cumulative += np.int64(pmfs[row, column])
    return left


def symbol_lookup(bounds: np.ndarray, lengths: np.ndarray, bits: int = LOOKUP_BITS) -> np.ndarray:
    """uint16 (L, 2**bits): per row, the last symbol whose interval starts at or below each
    multiple of ``2**(24 - bits)``, where the decoder's scan for a quantile begins."""
    return _symbol_lookup(np.ascontiguousarray(bounds), np.ascontiguousarray(lengths, dtype=np.int64),
                          int(bits))


def _symbol_lookup(bounds, lengths, bits):
    lookup = np.empty((bounds.shape[0], 1 << bits), dtype=np.uint16)
    step = 1 << (MODEL_BITS - bits)
    for row in range(bounds.shape[0]):
        # Column c is the last at or below the probes from the first multiple of ``step`` at or above
        # its bound to the one below the next column's bound (bounds rise, 0 first, 2**24 at n).
        start = 0
        for column in range(lengths[row]):
            end = min((np.int64(bounds[row, column + 1]) + step - 1) // step, 1 << bits)
            for probe in range(start, end):
                lookup[row, probe] = column
            start = max(start, end)
    return lookup


def quantize_rows(pmf, lengths, precision):
    """The counts of :func:`entropy.quantize_pmf` (int32 (L, S)) and whether a row overflowed, one row at a
    time: compiled, a tenth of the time of the same arithmetic in whole-array numpy passes."""
    rows, width = pmf.shape
    total_count = 1 << precision
    counts = np.zeros((rows, width), dtype=np.int32)
    fractions = np.empty(width, dtype=np.float64)  # one buffer: an allocation per row cost more than a row
    for row in range(rows):
        n = lengths[row]
        total = 0.0
        for column in range(n):  # strictly left to right
            total += pmf[row, column]
        uniform = not total > 0  # a row of zeros becomes uniform
        if uniform:
            total = float(n)
        free = float(total_count - n)
        fraction = fractions[:n]
        deficit = total_count
        for column in range(n):
            share = (1.0 if uniform else pmf[row, column]) * free / total
            if not math.isfinite(share):
                share = 0.0
            base = math.floor(share)
            fraction[column] = -(share - base)  # sorted ascending: largest fraction first
            counts[row, column] = base + 1
            deficit -= base + 1
        # The float sum of the shares is within a tiny relative error of ``free``, so the floored
        # counts never exceed 2**precision and the deficit is in 0..n-1 (the division covers any).
        if deficit < 0:
            return counts, True
        per_entry, extra = deficit // n, deficit % n
        for column in range(n):
            counts[row, column] += per_entry
        if extra == 0:
            continue
        # The ``extra`` largest fractions, ties to the lower column (a stable sort's first ``extra``):
        # those above the extra-th largest, then the columns that equal it, left to right.
        threshold = np.partition(fraction, extra - 1)[extra - 1]
        for column in range(n):
            if fraction[column] < threshold:
                counts[row, column] += 1
                extra -= 1
        for column in range(n):
            if extra > 0 and fraction[column] == threshold:
                counts[row, column] += 1
                extra -= 1
    return counts, False


def _kernel_tables(table) -> Tuple[np.ndarray, np.ndarray]:
    """(bounds, lookup) of a :class:`PmfTable`, built once per table (tables are immutable)."""
    with _lock:
        cached = _tables.get(table)
        if cached is None:
            bounds = model_bounds(table.pmfs, table.lengths, table.precision)
            cached = _tables[table] = (bounds, symbol_lookup(bounds, table.lengths))
    return cached


def _run_array(runs: List[Run]) -> np.ndarray:
    return np.asarray(runs, dtype=np.int64).reshape(-1, 3)


def group_order(indexes: np.ndarray, rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """(positions sorted by row, stably; symbols per row): a counting sort, for indexes in 0..rows-1."""
    return _group_order(np.ascontiguousarray(indexes), int(rows))


def first_out_of_range(symbols: np.ndarray, indexes: np.ndarray, table) -> int:
    """The first position whose symbol its row cannot code, or -1."""
    return int(_first_out_of_range(np.ascontiguousarray(symbols), np.ascontiguousarray(indexes),
                                   table.offsets, table.lengths))


def encode(symbols: np.ndarray, order: np.ndarray, runs_per_stream: List[List[Run]],
           table) -> List[np.ndarray]:
    """The words of each substream. Its ``(row, start, stop)`` runs select ``symbols[order[start:stop]]``
    and are pushed last to first so that they pop first to last, as constriction's ``encode_reverse``.
    Every symbol must be in its row's range (:func:`first_out_of_range`)."""
    bounds, _ = _kernel_tables(table)
    symbols = np.ascontiguousarray(symbols)
    jobs = [(symbols, order, _run_array(runs), table.offsets, bounds) for runs in runs_per_stream]
    return parallel_map(_encode_substream, jobs)


def decode(streams: List[np.ndarray], order: np.ndarray, runs_per_stream: List[List[Run]], table,
           symbols: np.ndarray) -> List[bool]:
    """Decode each substream's runs into ``symbols[order[start:stop]]`` (int32); per substream, whether
    it ended exactly (state 0, every word read), as a valid stream does."""
    bounds, lookup = _kernel_tables(table)
    jobs = [(words, order, _run_array(runs), table.offsets, bounds, lookup, symbols)
            for words, runs in zip(streams, runs_per_stream)]
    return parallel_map(_decode_substream, jobs)


def _group_order(indexes, rows):
    counts = np.zeros(rows, dtype=np.int64)
    for position in range(indexes.shape[0]):
        counts[indexes[position]] += 1
    next_slot = np.zeros(rows, dtype=np.int64)
    for row in range(1, rows):
        next_slot[row] = next_slot[row - 1] + counts[row - 1]
    order = np.empty(indexes.shape[0], dtype=np.int32)
    for position in range(indexes.shape[0]):
        row = indexes[position]
        order[next_slot[row]] = position
        next_slot[row] += 1
    return order, counts


def _first_out_of_range(symbols, indexes, offsets, lengths):
    for position in range(symbols.shape[0]):
        column = np.int64(symbols[position]) - np.int64(offsets[indexes[position]])
        if column < 0 or column >= lengths[indexes[position]]:
            return position
    return -1


def _encode_substream(symbols, order, runs, offsets, bounds):
    total = 0
    for r in range(runs.shape[0]):
        total += runs[r, 2] - runs[r, 1]
    words = np.empty(total + 2, dtype=np.uint32)  # at most one word a symbol, two to flush
    count = 0
    state = np.uint64(0)
    word_mask = np.uint64(0xFFFFFFFF)
    for r in range(runs.shape[0] - 1, -1, -1):
        row = runs[r, 0]
        for slot in range(runs[r, 2] - 1, runs[r, 1] - 1, -1):
            column = np.int64(symbols[order[slot]]) - np.int64(offsets[row])
            low = np.uint64(bounds[row, column])
            probability = np.uint64(bounds[row, column + 1]) - low
            if (state >> np.uint64(STATE_BITS - MODEL_BITS)) >= probability:
                words[count] = np.uint32(state & word_mask)
                count += 1
                state >>= np.uint64(WORD_BITS)
            state = ((state // probability) << np.uint64(MODEL_BITS)) | (low + state % probability)
    while state != np.uint64(0):
        words[count] = np.uint32(state & word_mask)
        count += 1
        state >>= np.uint64(WORD_BITS)
    return words[:count]


def _decode_substream(words, order, runs, offsets, bounds, lookup, symbols):
    mask = np.uint64((1 << MODEL_BITS) - 1)
    shift = np.uint64(MODEL_BITS - LOOKUP_BITS)
    threshold = np.uint64(1) << np.uint64(WORD_BITS)
    remaining = words.shape[0]
    state = np.uint64(0)
    while state < threshold and remaining > 0:
        remaining -= 1
        state = (state << np.uint64(WORD_BITS)) | np.uint64(words[remaining])
    for r in range(runs.shape[0]):
        row_bounds = bounds[runs[r, 0]]
        row_lookup = lookup[runs[r, 0]]
        offset = offsets[runs[r, 0]]
        for slot in range(runs[r, 1], runs[r, 2]):
            quantile = state & mask
            # The scan ends by the row's last bound, 2**24, whatever the data.
            column = np.int64(row_lookup[quantile >> shift])
            while np.uint64(row_bounds[column + 1]) <= quantile:
                column += 1
            low = np.uint64(row_bounds[column])
            probability = np.uint64(row_bounds[column + 1]) - low
            state = probability * (state >> np.uint64(MODEL_BITS)) + quantile - low
            if state < threshold and remaining > 0:
                remaining -= 1
                state = (state << np.uint64(WORD_BITS)) | np.uint64(words[remaining])
            symbols[order[slot]] = offset + column
    return state == np.uint64(0) and remaining == 0


# --- symbol-by-symbol coding, for coders whose next row depends on the symbols already decoded ---
# (the LiDAR codec's context-selected tables). The same words as above: a symbol of row ``r``
# under the model ``bounds[r]``; a row index below 0 codes ``-row`` raw bits (a uniform model,
# ``2**(24 - bits)`` per value, so ``bits`` <= RAW_BITS).

#: Most raw bits one call of :func:`decode_bits` reads.
RAW_BITS = 12


def encode_sequence(rows, values, count, offsets, bounds):
    """The words coding ``values[:count]``, each under ``rows[i]`` (a table row, or ``-bits`` raw
    bits), pushed last to first so that the decoder pops them first to last."""
    words = np.empty(count + 2, dtype=np.uint32)
    n = 0
    state = np.uint64(0)
    word_mask = np.uint64(0xFFFFFFFF)
    for i in range(count - 1, -1, -1):
        row = rows[i]
        if row >= 0:
            column = np.int64(values[i]) - np.int64(offsets[row])
            low = np.uint64(bounds[row, column])
            probability = np.uint64(bounds[row, column + 1]) - low
        else:
            probability = np.uint64(1) << np.uint64(MODEL_BITS + row)
            low = np.uint64(values[i]) * probability
        if (state >> np.uint64(STATE_BITS - MODEL_BITS)) >= probability:
            words[n] = np.uint32(state & word_mask)
            n += 1
            state >>= np.uint64(WORD_BITS)
        state = ((state // probability) << np.uint64(MODEL_BITS)) | (low + state % probability)
    while state != np.uint64(0):
        words[n] = np.uint32(state & word_mask)
        n += 1
        state >>= np.uint64(WORD_BITS)
    return words[:n]


def sequence_words(words: np.ndarray) -> np.ndarray:
    """The words of a stream as the symbol-by-symbol decoder reads them: uint32, after a spare word
    (index 0, never taken), so that every refill can read a word whether or not it takes it."""
    padded = np.zeros(len(words) + 1, dtype=np.uint32)
    padded[1:] = words
    return padded


def decoder_start(words):
    """(state, words left) of a decoder over ``words`` (from :func:`sequence_words`; the next word
    taken is ``words[left]``). The decoder is a pair of integers that every call takes and returns,
    so that it stays in registers."""
    threshold = np.uint64(1) << np.uint64(WORD_BITS)
    remaining = np.int64(words.shape[0] - 1)
    state = np.uint64(0)
    while state < threshold and remaining > 0:
        state = (state << np.uint64(WORD_BITS)) | np.uint64(words[remaining])
        remaining -= 1
    return state, remaining


def _advance(state, remaining, words, quantile, low, probability):
    state = probability * (state >> np.uint64(MODEL_BITS)) + quantile - low
    # The word is read whether or not it is taken (the spare word when none is left): read on one
    # branch only, ``words`` kept numba's reference count alive across the caller's loop, an atomic
    # increment and decrement per symbol.
    word = np.uint64(words[remaining])
    if state < (np.uint64(1) << np.uint64(WORD_BITS)) and remaining > 0:
        remaining -= 1
        state = (state << np.uint64(WORD_BITS)) | word
    return state, remaining


def decode_symbol(state, remaining, words, row, offsets, bounds, lookup, lookup_shift):
    """(symbol, state, remaining): the next symbol under table row ``row`` (whatever the words, one
    of the row's symbols); ``lookup`` from :func:`symbol_lookup` with ``bits = 24 - lookup_shift``."""
    quantile = state & np.uint64((1 << MODEL_BITS) - 1)
    column = np.int64(lookup[row, quantile >> np.uint64(lookup_shift)])
    while np.uint64(bounds[row, column + 1]) <= quantile:
        column += 1
    low = np.uint64(bounds[row, column])
    state, remaining = _advance(state, remaining, words, quantile, low,
                                np.uint64(bounds[row, column + 1]) - low)
    return np.int64(offsets[row]) + column, state, remaining


def decode_bits(state, remaining, words, bits):
    """(value, state, remaining): the next ``bits`` raw bits (1..RAW_BITS) as an integer."""
    quantile = state & np.uint64((1 << MODEL_BITS) - 1)
    shift = np.uint64(MODEL_BITS - bits)
    value = quantile >> shift
    state, remaining = _advance(state, remaining, words, quantile, value << shift, np.uint64(1) << shift)
    return np.int64(value), state, remaining


def decoder_done(state, remaining):
    """Whether the stream ended exactly (state 0, every word read), as a valid stream does."""
    return state == np.uint64(0) and remaining == 0


if numba is not None:
    _compile = numba.njit(nogil=True, cache=True)
    _group_order = _compile(_group_order)
    _symbol_lookup = _compile(_symbol_lookup)
    _model_bounds = _compile(_model_bounds)
    quantize_rows = _compile(quantize_rows)
    _first_out_of_range = _compile(_first_out_of_range)
    _encode_substream = _compile(_encode_substream)
    _decode_substream = _compile(_decode_substream)
    encode_sequence = _compile(encode_sequence)
    decoder_start = _compile(decoder_start)
    # Inlined into the caller's loop: a call per symbol costs three times the decoding.
    _inline = numba.njit(nogil=True, cache=True, inline='always')
    _advance = _inline(_advance)
    decode_symbol = _inline(decode_symbol)
    decode_bits = _inline(decode_bits)
    decoder_done = _compile(decoder_done)
