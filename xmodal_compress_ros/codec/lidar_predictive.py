"""Predictive LiDAR geometry for spinning sensors: points in laser and azimuth order, each predicted
from the one before it on the same laser, residuals under context-selected rANS tables.

The design follows MPEG G-PCC's predictive geometry. A point is coded as integers in spherical
coordinates (range in steps of ``range_step``, azimuth and elevation in ``1 / turn`` of a full turn)
plus a small cartesian *correction* in steps of ``correction_step``:

    base = spherical_to_cartesian(R, PHI, THETA)        # float64, deterministic (see below)
    decoded = float32(base + K * correction_step)        # |decoded - original| <= max_error per axis

The encoder picks ``R, PHI, THETA`` near the point, computes ``base`` exactly as the decoder will
and codes ``K = round((original - base) / correction_step)``: the bound holds whatever the
spherical values are, and ``K`` is almost always 0 (cheap under its own table). ``base`` uses
only integer arithmetic and IEEE-754 basic operations in a fixed order (a Taylor polynomial for
sine and cosine after an exact quadrant reduction, no libm, no fused multiply-add), so both ends
compute the same bits on every machine.

Clouds that do not look like a spinning sensor's scan (no ``ring`` field and no laser-by-laser
scan order, e.g. solid-state or merged clouds) take the *grid* path: coordinates on a grid of
``correction_step``, sorted, delta-coded; same bound. The payload layout is in
``docs/lidar_stream.md``. Every symbol is coded with :mod:`rans_kernels` under tables the payload
carries (histograms of this scan, quantized to 16 bits).
"""
from __future__ import annotations

import math
import struct
import threading
import zlib
from dataclasses import dataclass, replace
from typing import NamedTuple, Optional, Tuple

import numpy as np

from xmodal_compress_ros.codec import rans_kernels
from xmodal_compress_ros.errors import PacketError, ParameterError

try:
    import numba
except ImportError:  # pure Python: correct, slow
    numba = None

FORMAT_VERSION = 3
MODE_SPINNING = 0
MODE_GRID = 1
MODES = {MODE_SPINNING: 'spinning', MODE_GRID: 'grid'}
FLAG_INTENSITY = 0x01
#: Largest accepted ``max_error`` (metres); it also caps the steps a payload may declare.
MAX_ERROR_LIMIT = 100.0
#: Residuals up to this magnitude are one table symbol; larger ones an escape class plus raw bits.
DIRECT = 24
#: Most bits of an escaped residual's magnitude (coordinates on a grid of 2**40 steps).
MAX_ESCAPE_BITS = 40
SYMBOL_MAX = DIRECT + 1 + MAX_ESCAPE_BITS
#: Probability bits of the tables (built from the counts a payload carries).
TABLE_PRECISION = 16
#: The decoder's symbol lookup: 2**LOOKUP_BITS entries per row, small enough to stay in the L1 cache.
LOOKUP_BITS = 8
LOOKUP_SHIFT = rans_kernels.MODEL_BITS - LOOKUP_BITS
#: Most lasers (distinct ``ring`` values) of a spinning scan.
MAX_LASERS = 4096
#: Table entries a point may produce at most: 8 values, each a symbol and up to 4 raw chunks. Rows
#: (-RAW_BITS..133) and values (symbols within +-SYMBOL_MAX, raw chunks below 2**RAW_BITS) are int16:
#: the encoder's largest buffers (int32 and int64 cost it about a tenth of its time more).
_ENTRIES_PER_POINT = 8 * (1 + -(-(MAX_ESCAPE_BITS - 1) // rans_kernels.RAW_BITS))

# Spherical quantization, relative to the bound e: range step BETA * 2e; angle step such that it
# moves a point at REFERENCE_RANGE_M by GAMMA * 2e. Farther points get nonzero corrections.
RANGE_FRACTION = 1.0
ANGLE_FRACTION = 1.0
REFERENCE_RANGE_M = 60.0
#: Points per laser its height is fitted to (evenly spaced): all of a KITTI laser's 1800 cost 0.4 ms
#: more for 0.01-0.05 % fewer bytes.
HEIGHT_SAMPLE = 256

# Table rows (contexts). Spinning: range by the previous range residual's size (5) times whether
# the azimuth skipped (2), and the first point of a laser; the shape symbol (below) by the sign of
# the previous azimuth residual (3) and whether the previous point lies beyond the reference range
# (2); an azimuth residual outside the shape's span (within a laser / first of a laser); elevation
# (within a laser / first of a laser); whether the first point of a laser has a correction (by
# distance: 3); correction values; intensity by the previous intensity's level (18), its trend (the
# one before it lower, close, higher: 3) and whether the range jumped (2), and first of a laser.
# Grid: x, y (x repeated or not), z (x and y repeated or not), intensity.
ROW_RANGE, ROW_SHAPE, ROW_AZIMUTH, ROW_ELEVATION = 0, 11, 17, 19
ROW_CORRECTED, ROW_CORRECTION, ROW_INTENSITY = 21, 24, 25
SPINNING_ROWS = 134
# The shape symbol of a point within a laser: its azimuth residual when within +-SHAPE_SPAN (else an
# escape, the residual following under ROW_AZIMUTH) jointly with its kind: 0 elevation as predicted
# and no correction, 1 an elevation residual follows, 2 an elevation residual and a correction follow.
# One symbol instead of three for almost every point (the decoder's time goes by symbols).
SHAPE_SPAN = 12
SHAPE_CLASSES = 2 * SHAPE_SPAN + 2
SHAPE_KINDS = 3
SHAPE_OFFSET = SHAPE_CLASSES * SHAPE_KINDS // 2
ROW_GRID_X, ROW_GRID_Y, ROW_GRID_Z, ROW_GRID_INTENSITY = 0, 1, 3, 5
GRID_ROWS = 11

_HEADER = struct.Struct('<BBBBddI')       # version, mode, flags, 0, max_error, correction step, invalid
_SPINNING = struct.Struct('<dIIiH')       # range step, azimuth turn, elevation turn, azimuth step, lasers
_LENGTH = struct.Struct('<I')
_ROW = struct.Struct('<hH')               # first symbol, symbols (0 = row unused)


@dataclass(frozen=True)
class PredictiveScan:
    """A coded scan and what the decoder reconstructs from it.

    Attributes:
        payload: the bytes.
        xyz: (M, 3) float32 decoded coordinates, in the coded order.
        intensity: (M,) intensity codes in the same order (the encoder's: as given; the decoder's:
            uint16, as the payload lists them), or None.
        order: (M,) indexes into the encoder's valid points: ``xyz[i]`` approximates point ``order[i]``.
        mode: 'spinning' or 'grid'.
        invalid_points: input rows left out (non-finite coordinate or zero range).
    """

    payload: bytes
    xyz: np.ndarray
    intensity: Optional[np.ndarray]
    order: np.ndarray
    mode: str
    invalid_points: int


def check_max_error(max_error: float) -> float:
    """``max_error`` as a float in (0, MAX_ERROR_LIMIT], else ParameterError."""
    try:
        value = float(max_error)
    except (TypeError, ValueError):
        value = float('nan')
    if not (math.isfinite(value) and 0 < value <= MAX_ERROR_LIMIT):
        raise ParameterError(f'lidar max_error is {max_error!r}; it must be a number of metres in '
                             f'(0, {MAX_ERROR_LIMIT}] (e.g. 0.01 for 1 cm per coordinate)')
    return value


# --- deterministic geometry --------------------------------------------------------------------

def _sincos_turn(index, turn):
    """sin and cos of ``2 pi index / turn`` (``turn`` a multiple of 4): an exact quadrant and octant
    reduction in integers, then Taylor polynomials on [0, pi/4] (error < 1e-11, far below any
    bound; what matters is that both ends compute the same bits)."""
    i = index % turn
    quarter = turn // 4
    quadrant = i // quarter
    rest = i - quadrant * quarter
    swap = 2 * rest > quarter
    if swap:
        rest = quarter - rest
    t = rest * ((2.0 * math.pi) / turn)
    t2 = t * t
    s = t * (1.0 - t2 * (1.0 / 6.0) * (1.0 - t2 * (1.0 / 20.0) * (1.0 - t2 * (1.0 / 42.0) * (
        1.0 - t2 * (1.0 / 72.0) * (1.0 - t2 * (1.0 / 110.0))))))
    c = 1.0 - t2 * 0.5 * (1.0 - t2 * (1.0 / 12.0) * (1.0 - t2 * (1.0 / 30.0) * (
        1.0 - t2 * (1.0 / 56.0) * (1.0 - t2 * (1.0 / 90.0) * (1.0 - t2 * (1.0 / 132.0))))))
    if swap:
        s, c = c, s
    if quadrant == 0:
        return s, c
    if quadrant == 1:
        return c, -s
    if quadrant == 2:
        return -s, -c
    return -c, s


def _sincos_table(turn):
    """sin and cos of every index of a turn, each exactly as :func:`_sincos_turn` gives it: the
    polynomials for the first eighth of the turn, the rest by the symmetries its reduction uses (the
    same bits, an eighth of the work)."""
    table = np.empty((turn, 2), dtype=np.float64)
    quarter = turn // 4
    for i in range(quarter):
        if 2 * i > quarter:  # _sincos_turn's swap
            table[i, 0], table[i, 1] = table[quarter - i, 1], table[quarter - i, 0]
        else:
            table[i, 0], table[i, 1] = _sincos_turn(i, turn)
    for i in range(quarter):
        s, c = table[i, 0], table[i, 1]
        table[quarter + i, 0], table[quarter + i, 1] = c, -s
        table[2 * quarter + i, 0], table[2 * quarter + i, 1] = -s, -c
        table[3 * quarter + i, 0], table[3 * quarter + i, 1] = -c, s
    return table


def _azimuth_table(azimuth_turn, points):
    """:func:`_sincos_table` of the azimuth turn where the turn is shorter than twice the scan (the
    integer divisions of :func:`_sincos_turn`'s reduction cost more than the polynomials), else an
    empty table: the points' angles are then reduced one by one."""
    if azimuth_turn <= 2 * points:
        return _sincos_table(azimuth_turn)
    return np.empty((0, 2), dtype=np.float64)


def _point(range_index, se, ce, sa, ca, range_step, height):
    """One point from its integer range and its angles' sines and cosines (the one formula both
    ends use)."""
    r = range_index * range_step
    horizontal = r * ce
    return horizontal * ca, horizontal * sa, r * se + height


# --- residuals as table symbols and raw bits ---------------------------------------------------

def _push(rows, values, histogram, n, row, value):
    """Append ``value`` under ``row``: itself when small, else an escape class and raw bits; count
    the table symbol in ``histogram`` (row, symbol + SYMBOL_MAX). The encoder's loop writes its
    frequent symbols itself (see :func:`_range_interval` on arrays passed to inlined functions) and
    calls this for the rare ones."""
    symbol = _symbol(value)
    rows[n] = row
    values[n] = symbol
    histogram[row, symbol + SYMBOL_MAX] += 1
    if -DIRECT <= value <= DIRECT:
        return n + 1
    return _push_raw(rows, values, n + 1, value)


def _symbol(value):
    """The table symbol of a residual: itself up to DIRECT, else an escape class (DIRECT + 1 + the bit
    length of its excess, with its sign)."""
    magnitude = value if value >= 0 else -value
    if magnitude <= DIRECT:
        return value
    symbol = DIRECT + 1 + _bit_length(magnitude - DIRECT - 1)
    return symbol if value > 0 else -symbol


def _bit_length(value):
    width = 0
    while (value >> width) > 0:
        width += 1
    return width


def _push_raw(rows, values, n, value):
    """Append the raw bits of a residual beyond DIRECT, after its escape symbol: the bits of its excess
    below the leading one, in chunks of up to RAW_BITS (row ``-bits``)."""
    excess = (value if value >= 0 else -value) - DIRECT - 1
    bits = _bit_length(excess) - 1
    while bits > 0:
        take = min(bits, rans_kernels.RAW_BITS)
        bits -= take
        rows[n] = -take
        values[n] = (excess >> bits) & ((1 << take) - 1)
        n += 1
    return n


def _pop(state, remaining, words, row, offsets, bounds, lookup):
    """The inverse of :func:`_push`: (value, state, remaining)."""
    symbol, state, remaining = rans_kernels.decode_symbol(state, remaining, words, row, offsets, bounds,
                                                          lookup, LOOKUP_SHIFT)
    magnitude = symbol if symbol >= 0 else -symbol
    if magnitude <= DIRECT:
        return symbol, state, remaining
    width = magnitude - DIRECT - 1
    excess = 0
    if width > 0:
        excess = 1
        bits = width - 1
        while bits > 0:
            take = min(bits, rans_kernels.RAW_BITS)
            bits -= take
            chunk, state, remaining = rans_kernels.decode_bits(state, remaining, words, take)
            excess = (excess << take) | chunk
    value = DIRECT + 1 + excess
    return (value if symbol > 0 else -value), state, remaining


def _size_class(value):
    """Context of the next residual from the size of the previous one: 0, 1, 2-3, 4-15, 16+."""
    # The contexts are sums of comparisons, not branches: they follow noisy residuals, and a
    # mispredicted branch costs more than the arithmetic (the decoder 3 % faster, side by side).
    magnitude = abs(value)
    return min(magnitude, 2) + (magnitude >= 4) + (magnitude >= 16)


def _wrap(value, turn):
    """``value`` modulo ``turn``, in [-turn/2, turn/2) (an integer division only when it is outside:
    one per point would cost more than the rest of the point's symbols)."""
    half = turn >> 1
    if -half <= value < half:
        return value
    return (value + half) % turn - half


# --- spinning mode: symbols of a laser-ordered scan ----------------------------------------------

def _shape_row(last_azimuth_residual, predicted_range, range_step):
    """Shape context: the sign of the previous azimuth residual (sensors alternate step sizes), and
    whether the previous point is beyond the reference range (far points need corrections)."""
    sign = (last_azimuth_residual < 0) + 2 * (last_azimuth_residual > 0)
    return ROW_SHAPE + sign + 3 * (predicted_range * range_step >= REFERENCE_RANGE_M)


def _shape_symbol(azimuth_residual, kind):
    """The shape symbol of an azimuth residual and a kind (0, 1, 2), centred on 0."""
    if -SHAPE_SPAN <= azimuth_residual <= SHAPE_SPAN:
        column = azimuth_residual + SHAPE_SPAN
    else:
        column = SHAPE_CLASSES - 1
    return column + SHAPE_CLASSES * kind - SHAPE_OFFSET


def _range_row(first, last_range_residual, azimuth_residual):
    """Range context: the previous range residual's size, and whether the azimuth skipped."""
    if first:
        return ROW_RANGE + 10
    return ROW_RANGE + _size_class(last_range_residual) + 5 * (azimuth_residual != 0)


def _corrected_row(range_index, range_step):
    """Whether-corrected context: near points (below the reference range) almost never are."""
    distance = range_index * range_step
    if distance < REFERENCE_RANGE_M:
        return ROW_CORRECTED
    return ROW_CORRECTED + (1 if distance < 2 * REFERENCE_RANGE_M else 2)


def _intensity_levels() -> np.ndarray:
    """int64 (51,): the level of each rank up to 50 (every larger rank is level 17)."""
    edges = np.array([8, 10, 12, 14, 17, 20, 24, 28, 33, 40, 50])
    ranks = np.arange(51)
    return np.where(ranks < 7, ranks, 6 + np.searchsorted(edges, ranks, side='right')).astype(np.int64)


_INTENSITY_LEVELS = _intensity_levels()


def _intensity_level(rank):
    """One of 18 levels of an intensity rank (0-6 alone, then wider): finer where sensors put most
    of their returns. A damaged stream can decode to a negative rank: it must still pick a row that
    exists (the kernels index tables without bounds checks), so below 0 counts as 0. Looked up: the
    encoder and decoder ask once a point."""
    return _INTENSITY_LEVELS[min(max(rank, 0), 50)]


def _intensity_row(first, range_residual, previous, before):
    """Intensity context: the previous intensity's level, whether the one before it was lower,
    close (within 2 ranks) or higher, and whether the range jumped (an edge: a new surface). The
    joint level and trend predict a noisy reflectance better than the last value or residual alone."""
    if first:
        return ROW_INTENSITY + 108
    jump = (range_residual > 1) | (range_residual < -1)
    trend = before - previous
    direction = int(trend >= -2) + int(trend > 2)  # numpy's bools would add as 'or' without numba
    return ROW_INTENSITY + _intensity_level(previous) + 18 * direction + 54 * jump


def _prediction(first, previous, laser_first, azimuth_step):
    """(range, azimuth, elevation, intensity) predicted for a point and the azimuth step it adds: a
    laser's first point from the previous laser's first (``laser_first``), every other from the point
    before it (``previous``). Encoder and decoder both call this, so they predict alike."""
    if first:
        return laser_first, 0
    return previous, azimuth_step


def _spinning_symbols(ranges, azimuths, elevations, has_correction, corrections, intensity, counts,
                      azimuth_turn, azimuth_step, range_step, rows, values, histogram):
    n = 0
    point = 0
    corrected_points = 0  # corrections hold a row per corrected point, in order
    has_intensity = intensity.shape[0] > 0
    previous = laser_first = (np.int64(0), np.int64(0), np.int64(0), np.int64(0))
    for laser in range(counts.shape[0]):
        last_range_residual = last_azimuth_residual = 0
        for j in range(counts[laser]):
            i = point
            point += 1
            first = j == 0
            predicted, step = _prediction(first, previous, laser_first, azimuth_step)
            azimuth_residual = _wrap(azimuths[i] - predicted[1] - step, azimuth_turn)
            elevation_residual = elevations[i] - predicted[2]
            corrected = has_correction[i]
            if first:
                n = _push(rows, values, histogram, n, ROW_AZIMUTH + 1, azimuth_residual)
                n = _push(rows, values, histogram, n, ROW_ELEVATION + 1, elevation_residual)
            else:
                kind = 2 if corrected else 1 if elevation_residual != 0 else 0
                row = _shape_row(last_azimuth_residual, predicted[0], range_step)
                symbol = _shape_symbol(azimuth_residual, kind)
                rows[n] = row
                values[n] = symbol
                histogram[row, symbol + SYMBOL_MAX] += 1
                n += 1
                if azimuth_residual < -SHAPE_SPAN or azimuth_residual > SHAPE_SPAN:
                    n = _push(rows, values, histogram, n, ROW_AZIMUTH, azimuth_residual)
                if kind != 0:
                    n = _push(rows, values, histogram, n, ROW_ELEVATION, elevation_residual)
            last_azimuth_residual = azimuth_residual
            range_residual = ranges[i] - predicted[0]
            row = _range_row(first, last_range_residual, azimuth_residual)
            symbol = _symbol(range_residual)
            rows[n] = row
            values[n] = symbol
            histogram[row, symbol + SYMBOL_MAX] += 1
            n += 1
            if not -DIRECT <= range_residual <= DIRECT:
                n = _push_raw(rows, values, n, range_residual)
            last_range_residual = range_residual
            if first:
                row = _corrected_row(ranges[i], range_step)
                n = _push(rows, values, histogram, n, row, 1 if corrected else 0)
            if corrected:
                for axis in range(3):
                    n = _push(rows, values, histogram, n, ROW_CORRECTION, corrections[corrected_points, axis])
                corrected_points += 1
            level = 0
            if has_intensity:
                level = intensity[i]
                before = intensity[i - 2] if j >= 2 else predicted[3]
                row = _intensity_row(first, range_residual, predicted[3], before)
                symbol = _symbol(level - predicted[3])
                rows[n] = row
                values[n] = symbol
                histogram[row, symbol + SYMBOL_MAX] += 1
                n += 1
                if not -DIRECT <= level - predicted[3] <= DIRECT:
                    n = _push_raw(rows, values, n, level - predicted[3])
            previous = (ranges[i], azimuths[i], elevations[i], level)
            if first:
                laser_first = previous
    return n


def _decode_spinning(words, counts, heights, azimuth_turn, elevation_turn, azimuth_step, range_step,
                     correction_step, has_intensity, offsets, bounds, lookup, out):
    """Decode the symbols of a spinning scan and write each point into the first three columns of
    ``out`` (float32 (N, >= 3)) as soon as its values are known: ``float32(base + K * correction_step)``
    per axis, where ``base`` is the point of its integer spherical values around its laser's origin
    (0, 0, height in mm / 1000) in float64 (:func:`_point`: the same bits on every machine) and ``K``
    its correction (0 without one). The rANS loop waits on each symbol's table row, chosen by the
    symbol before it; a point's arithmetic runs in that wait (with a pass of its own over the values,
    the decode took up to a fifth longer). Returns (intensity ranks, whether the stream ended where it
    should and held only symbols an encoder writes, whether every coordinate is finite)."""
    total = 0
    for laser in range(counts.shape[0]):
        total += counts[laser]
    intensity = np.zeros(total if has_intensity else 0, dtype=np.int64)
    table = _azimuth_table(azimuth_turn, total)
    tabulated = table.shape[0] > 0
    last_elevation = 0  # a laser's elevation rarely changes from one point to the next
    se, ce = _sincos_turn(0, elevation_turn)
    state, remaining = rans_kernels.decoder_start(words)
    valid = finite = True
    point = 0
    previous = laser_first = (np.int64(0), np.int64(0), np.int64(0), np.int64(0))
    for laser in range(counts.shape[0]):
        last_range_residual = last_azimuth_residual = 0
        height = heights[laser] / 1000.0
        for j in range(counts[laser]):
            i = point
            point += 1
            first = j == 0
            predicted, step = _prediction(first, previous, laser_first, azimuth_step)
            kind = 1
            if first:
                azimuth_residual, state, remaining = _pop(state, remaining, words, ROW_AZIMUTH + 1, offsets,
                                                          bounds, lookup)
                row = ROW_ELEVATION + 1
            else:
                row = _shape_row(last_azimuth_residual, predicted[0], range_step)
                shape, state, remaining = rans_kernels.decode_symbol(state, remaining, words, row, offsets,
                                                                     bounds, lookup, LOOKUP_SHIFT)
                shape += SHAPE_OFFSET
                if shape < 0 or shape >= SHAPE_CLASSES * SHAPE_KINDS:
                    valid = False  # a damaged table: a symbol no encoder writes
                    shape = 0
                kind = shape // SHAPE_CLASSES
                azimuth_residual = shape - SHAPE_CLASSES * kind - SHAPE_SPAN
                if azimuth_residual > SHAPE_SPAN:
                    azimuth_residual, state, remaining = _pop(state, remaining, words, ROW_AZIMUTH, offsets,
                                                              bounds, lookup)
                row = ROW_ELEVATION
            last_azimuth_residual = azimuth_residual
            azimuth = predicted[1] + step + azimuth_residual
            if azimuth < 0 or azimuth >= azimuth_turn:
                azimuth %= azimuth_turn
            residual = 0
            if kind != 0:
                residual, state, remaining = _pop(state, remaining, words, row, offsets, bounds, lookup)
            elevation = predicted[2] + residual
            row = _range_row(first, last_range_residual, azimuth_residual)
            range_residual, state, remaining = _pop(state, remaining, words, row, offsets, bounds, lookup)
            last_range_residual = range_residual
            range_index = predicted[0] + range_residual
            corrected = kind == 2
            if first:
                row = _corrected_row(range_index, range_step)
                flag, state, remaining = _pop(state, remaining, words, row, offsets, bounds, lookup)
                corrected = flag != 0
            k0 = k1 = k2 = 0
            if corrected:
                k0, state, remaining = _pop(state, remaining, words, ROW_CORRECTION, offsets, bounds, lookup)
                k1, state, remaining = _pop(state, remaining, words, ROW_CORRECTION, offsets, bounds, lookup)
                k2, state, remaining = _pop(state, remaining, words, ROW_CORRECTION, offsets, bounds, lookup)
            if elevation != last_elevation:
                last_elevation = elevation
                se, ce = _sincos_turn(elevation, elevation_turn)
            if tabulated:
                sa, ca = table[azimuth, 0], table[azimuth, 1]
            else:
                sa, ca = _sincos_turn(azimuth, azimuth_turn)
            x, y, z = _point(range_index, se, ce, sa, ca, range_step, height)
            x32, y32, z32 = (np.float32(x + k0 * correction_step), np.float32(y + k1 * correction_step),
                             np.float32(z + k2 * correction_step))
            out[i, 0], out[i, 1], out[i, 2] = x32, y32, z32
            finite &= math.isfinite(x32) & math.isfinite(y32) & math.isfinite(z32)
            level = np.int64(0)
            if has_intensity:
                before = intensity[i - 2] if j >= 2 else predicted[3]
                row = _intensity_row(first, range_residual, predicted[3], before)
                residual, state, remaining = _pop(state, remaining, words, row, offsets, bounds, lookup)
                level = predicted[3] + residual
                intensity[i] = level
            previous = (range_index, azimuth, elevation, level)
            if first:
                laser_first = previous
    done = valid and rans_kernels.decoder_done(state, remaining)
    return intensity, done, finite


# --- grid mode: symbols of a sorted grid -------------------------------------------------------

def _grid_symbols(cells, intensity, rows, values, histogram):
    n = 0
    last_intensity_residual = 0
    # The previous cell as scalars: a row view per point would count a reference per point.
    px = py = pz = np.int64(0)
    for i in range(cells.shape[0]):
        dx = cells[i, 0] - px
        dy = cells[i, 1] - py
        n = _push(rows, values, histogram, n, ROW_GRID_X, dx)
        n = _push(rows, values, histogram, n, ROW_GRID_Y + (dx != 0), dy)
        n = _push(rows, values, histogram, n, ROW_GRID_Z + (dx != 0 or dy != 0), cells[i, 2] - pz)
        px, py, pz = cells[i, 0], cells[i, 1], cells[i, 2]
        if intensity.shape[0]:
            residual = intensity[i] - (intensity[i - 1] if i > 0 else 0)
            row = ROW_GRID_INTENSITY + _size_class(last_intensity_residual)
            n = _push(rows, values, histogram, n, row, residual)
            last_intensity_residual = residual
    return n


def _decode_grid(words, total, has_intensity, offsets, bounds, lookup):
    cells = np.empty((total, 3), dtype=np.int64)
    intensity = np.zeros(total if has_intensity else 0, dtype=np.int64)
    state, remaining = rans_kernels.decoder_start(words)
    last_intensity_residual = 0
    px = py = pz = np.int64(0)  # the previous cell (see _grid_symbols)
    for i in range(total):
        dx, state, remaining = _pop(state, remaining, words, ROW_GRID_X, offsets, bounds, lookup)
        dy, state, remaining = _pop(state, remaining, words, ROW_GRID_Y + (dx != 0), offsets, bounds, lookup)
        row = ROW_GRID_Z + (dx != 0 or dy != 0)
        dz, state, remaining = _pop(state, remaining, words, row, offsets, bounds, lookup)
        px, py, pz = px + dx, py + dy, pz + dz
        cells[i, 0], cells[i, 1], cells[i, 2] = px, py, pz
        if has_intensity:
            row = ROW_GRID_INTENSITY + _size_class(last_intensity_residual)
            last_intensity_residual, state, remaining = _pop(state, remaining, words, row, offsets, bounds,
                                                             lookup)
            intensity[i] = (intensity[i - 1] if i > 0 else 0) + last_intensity_residual
    return cells, intensity, rans_kernels.decoder_done(state, remaining)


if numba is not None:
    _compile = numba.njit(nogil=True, cache=True)
    _inline = numba.njit(nogil=True, cache=True, inline='always')
    _sincos_turn = _inline(_sincos_turn)
    _sincos_table = _compile(_sincos_table)
    _azimuth_table = _compile(_azimuth_table)
    _point = _inline(_point)
    _push = _inline(_push)
    _symbol = _inline(_symbol)
    _bit_length = _inline(_bit_length)
    _push_raw = _inline(_push_raw)
    _pop = _inline(_pop)
    _size_class = _inline(_size_class)
    _wrap = _inline(_wrap)
    _prediction = _inline(_prediction)
    _shape_row = _inline(_shape_row)
    _shape_symbol = _inline(_shape_symbol)
    _range_row = _inline(_range_row)
    _corrected_row = _inline(_corrected_row)
    _intensity_level = _inline(_intensity_level)
    _intensity_row = _inline(_intensity_row)
    _spinning_symbols = _compile(_spinning_symbols)
    _decode_spinning = _compile(_decode_spinning)
    _grid_symbols = _compile(_grid_symbols)
    _decode_grid = _compile(_decode_grid)


# --- tables -------------------------------------------------------------------------------------

def _count_levels() -> np.ndarray:
    """int64 (256,): the symbol count a table byte stands for; 0, then steps of 2**(1/8)."""
    mantissas = np.array([16, 17, 19, 21, 23, 25, 27, 29], np.int64)
    codes = np.arange(255)
    return np.concatenate(([0], mantissas[codes % 8] << (codes // 8)))


COUNT_LEVELS = _count_levels()
# Geometric midpoints between levels: a count is sent as the nearest level (in ratio).
_COUNT_SPLITS = np.sqrt(COUNT_LEVELS[1:-1].astype(np.float64) * COUNT_LEVELS[2:])


def _new_histogram(num_rows: int) -> np.ndarray:
    """Counts of each (row, symbol + SYMBOL_MAX) of the table-coded entries, filled by :func:`_push`."""
    return np.zeros((num_rows, 2 * SYMBOL_MAX + 1), np.int64)


class _Table(NamedTuple):
    """A payload's table as both ends code with it: each row's first symbol and length, its counts
    out of ``2**TABLE_PRECISION`` and their 24-bit cumulative bounds
    (:func:`rans_kernels.model_bounds`)."""
    offsets: np.ndarray
    lengths: np.ndarray
    pmfs: np.ndarray
    bounds: np.ndarray


def _build_table(histogram: np.ndarray, num_rows: int) -> Tuple[_Table, bytes]:
    """The table of this scan's symbol histograms (each count rounded to a level of COUNT_LEVELS,
    one byte), and its serialization."""
    blob = _table_bytes(histogram, _COUNT_SPLITS).tobytes()
    # Built from the bytes, as the decoder builds it.
    return _parse_table(blob, 0, num_rows)[0], blob


def _table_bytes(histogram, splits):
    """The serialized table (uint8): the row count, then per row ``_ROW`` (first symbol and length of
    the span from its first to its last nonzero count; 0, 0 for an unused row) and a byte per count
    of the span, the index of its level (0 for none, else 1 + the first of ``splits`` at or above
    it). One compiled pass (numpy's take a call per row)."""
    rows, width = histogram.shape
    blob = np.empty(1 + rows * (4 + width), np.uint8)
    blob[0] = rows
    size = 1
    for row in range(rows):
        low, high = 0, -1
        for column in range(width):
            if histogram[row, column] > 0:
                if high < 0:
                    low = column
                high = column
        first, length = (low - SYMBOL_MAX, high - low + 1) if high >= 0 else (0, 0)
        blob[size], blob[size + 1] = first & 0xFF, (first >> 8) & 0xFF  # little-endian i16
        blob[size + 2], blob[size + 3] = length & 0xFF, length >> 8  # little-endian u16
        size += 4
        for column in range(low, low + length):
            count = histogram[row, column]
            blob[size] = 1 + np.searchsorted(splits, np.float64(count)) if count > 0 else 0
            size += 1
    return blob[:size]


if numba is not None:
    _table_bytes = numba.njit(nogil=True, cache=True)(_table_bytes)


def _parse_table(blob: bytes, offset: int, num_rows: int) -> Tuple[_Table, int]:
    """The table serialized at ``blob[offset:]`` and the offset past it."""
    _need(blob, offset, 1, 'table')
    if blob[offset] != num_rows:
        raise PacketError(f'LiDAR payload table has {blob[offset]} rows; this mode uses {num_rows}')
    # The row headers and the counts in a compiled pass each (numpy's calls per row, or its whole-array
    # gathers, cost more than the rest of the decoder's set-up).
    data = np.frombuffer(blob, np.uint8)
    firsts, lengths, starts, offset, first, length = _row_headers(data, offset + 1, num_rows)
    if offset < 0:
        raise PacketError(f'LiDAR payload is truncated inside its table ({len(blob)} bytes)')
    if length:
        raise PacketError(f'LiDAR payload table row covers {first}..{first + length - 1}, '
                          f'outside -{SYMBOL_MAX}..{SYMBOL_MAX}')
    counts = _table_counts(data, starts, lengths, COUNT_LEVELS)
    # quantize_pmf's arithmetic (exact on these integers: the same table everywhere) through its
    # kernel: what quantize_pmf checks first holds by construction (counts that are COUNT_LEVELS,
    # lengths 1..2 * SYMBOL_MAX + 1), and so does what a PmfTable would check of the result in numpy
    # passes (every count at least 1, each row summing to 2**TABLE_PRECISION).
    pmfs, overflowed = rans_kernels.quantize_rows(counts, lengths, TABLE_PRECISION)
    if overflowed:
        raise PacketError('LiDAR payload table is invalid: its counts overflow the table precision')
    return _Table(firsts, lengths, pmfs, rans_kernels.model_bounds(pmfs, lengths, TABLE_PRECISION)), offset


def _table_counts(data, starts, lengths, levels):
    """float64 (rows, longest row): the counts the bytes of each used row stand for (``levels``), and
    an unused row (start -1) as one symbol of count 1, never coded."""
    counts = np.zeros((starts.shape[0], lengths.max()), dtype=np.float64)
    for row in range(starts.shape[0]):
        if starts[row] < 0:
            counts[row, 0] = 1.0
            continue
        for column in range(lengths[row]):
            counts[row, column] = levels[data[starts[row] + column]]
    return counts


def _row_headers(blob, offset, num_rows):
    """(firsts, lengths, starts of the count bytes (-1: unused row), offset past the rows, and the
    first symbol and length of a row out of range, else 0, 0); offset -1 if the rows run past the
    blob. Row headers are ``_ROW``: little-endian i16 first symbol, u16 length."""
    firsts = np.zeros(num_rows, np.int64)
    lengths = np.ones(num_rows, np.int64)
    starts = np.full(num_rows, -1, np.int64)
    for row in range(num_rows):
        if offset + 4 > blob.shape[0]:
            return firsts, lengths, starts, -1, 0, 0
        first = np.int64(blob[offset]) | (np.int64(blob[offset + 1]) << 8)
        if first >= 1 << 15:
            first -= 1 << 16
        length = np.int64(blob[offset + 2]) | (np.int64(blob[offset + 3]) << 8)
        offset += 4
        if length == 0:
            continue
        if first < -SYMBOL_MAX or first + length - 1 > SYMBOL_MAX:
            return firsts, lengths, starts, offset, first, length
        if offset + length > blob.shape[0]:
            return firsts, lengths, starts, -1, 0, 0
        firsts[row], lengths[row], starts[row] = first, length, offset
        offset += length
    return firsts, lengths, starts, offset, 0, 0


if numba is not None:
    _row_headers = numba.njit(nogil=True, cache=True)(_row_headers)
    _table_counts = numba.njit(nogil=True, cache=True)(_table_counts)


def _decoder_tables(table: _Table) -> Tuple[np.ndarray, np.ndarray]:
    return table.bounds, rans_kernels.symbol_lookup(table.bounds, table.lengths, LOOKUP_BITS)


def _need(blob: bytes, offset: int, size: int, what: str) -> None:
    if offset + size > len(blob):
        raise PacketError(f'LiDAR payload is truncated inside its {what} ({len(blob)} bytes)')


def _entropy_code(rows: np.ndarray, values: np.ndarray, count: int, histogram: np.ndarray, num_rows: int,
                  side: bytes) -> bytes:
    """Side information and tables (zlib), then the rANS words."""
    rows, values = rows[:count], values[:count]
    table, table_blob = _build_table(histogram, num_rows)
    words = rans_kernels.encode_sequence(rows, values, count, table.offsets, table.bounds)
    packed = zlib.compress(side + table_blob, 6)  # 9: 1 ms more for 1 % of these bytes
    return _LENGTH.pack(len(packed)) + packed + words.astype('<u4').tobytes()


# --- encoder ------------------------------------------------------------------------------------

_workspace = threading.local()


def _scratch(name: str, size: int, dtype) -> np.ndarray:
    """``size`` items of a buffer that this thread keeps from scan to scan, for the encoder's per-point
    arrays that do not leave it: a steady loop of encodes measured 10-15 % faster than with fresh
    arrays (why is open: the page faults per encode stayed about the same; docs/lidar_stream.md)."""
    buffers = _workspace.__dict__.setdefault('buffers', {})
    buffer = buffers.get(name)
    if buffer is None or buffer.shape[0] < size or buffer.dtype != dtype:
        buffer = buffers[name] = np.empty(size + size // 4 + 1024, dtype)  # room for the next scans
    return buffer[:size]


def _choice_buffers(n: int, scratch: bool = True, out: Optional[np.ndarray] = None):
    """The arrays :func:`_choose_spherical` fills: ranges, azimuths, elevations (int64), whether a
    point has a correction (bool), the corrections (int64, a row per corrected point) and the decoded
    points (float32 (n, 3): new, or the first three columns of ``out``; they leave the encoder)."""
    new = _scratch if scratch else (lambda _, size, dtype: np.empty(size, dtype))
    return (new('ranges', n, np.int64), new('azimuths', n, np.int64), new('elevations', n, np.int64),
            new('has_correction', n, np.bool_), new('corrections', 3 * n, np.int64).reshape(n, 3),
            _coordinates_out(out, n))


def _steps(max_error: float, xyz: np.ndarray) -> Tuple[float, float, int]:
    """Correction step, range step and angle turn for this bound and these coordinates."""
    largest = max(float(xyz.max()), -float(xyz.min())) if len(xyz) else 0.0  # no (N, 3) temporary
    # Leave room for the float32 rounding of the decoded coordinates (at most |x| * 2**-24).
    correction_step = 2.0 * (max_error - (largest + max_error) * 2.0 ** -23)
    if correction_step <= 0 or largest / correction_step > 2.0 ** (MAX_ESCAPE_BITS - 2):
        raise ParameterError(f'lidar max_error {max_error} m is below the float32 resolution of '
                             f'coordinates up to {largest:.1f} m; raise it')
    angle = ANGLE_FRACTION * 2.0 * max_error / REFERENCE_RANGE_M
    turn = 4 * max(2, int(math.ceil(2.0 * math.pi / angle / 4.0)))
    return correction_step, RANGE_FRACTION * 2.0 * max_error, min(turn, 1 << 30)


def _laser_order(xyz: np.ndarray, rings: Optional[np.ndarray]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(order, points per laser) of a spinning scan (order None: the scan's own), or None for a cloud
    without that structure.

    With ``rings``, points are grouped by ring (stably: drivers give each ring in azimuth order;
    a ring out of order is sorted by azimuth). Without, lasers are read from the scan order as
    KITTI and unorganised driver output keep it: one laser's sweep after another, a new laser
    where the azimuth wraps around or steps back by more than SWEEP_BREAK_RADIANS (a scan cut to a
    camera's view, whose sweeps never reach the wrap).
    """
    n = len(xyz)
    if rings is not None:
        rings = rings.astype(np.int64)
        if rings.min() < 0 or rings.max() >= MAX_LASERS:
            return None
        order, counts = rans_kernels.group_order(rings.astype(np.int32), int(rings.max()) + 1)
        kinds = _step_kinds(xyz[order, 0], xyz[order, 1])
        same = np.diff(rings[order]) == 0
        order = order.astype(np.int64)
        if _monotonic_share(kinds[same]) < 0.8:
            xy = xyz[:, :2].astype(np.float64)
            _sort_rings(order, counts, np.arctan2(xy[:, 1], xy[:, 0]))
        return order, counts.astype(np.int64)
    kinds = _step_kinds(xyz[:, 0], xyz[:, 1])
    wraps, forward, backward = _step_summary(kinds)
    if _share_of(n - 1, wraps, forward, backward) < 0.9:
        return None
    back = STEP_BACKWARD if forward >= backward else STEP_FORWARD
    starts = np.union1d(wraps, _steps_back(xyz, kinds, back))
    if len(starts) + 1 > MAX_LASERS or n < 16 * (len(starts) + 1):
        return None
    counts = np.diff(np.concatenate(([0], starts + 1, [n])))
    return None, counts.astype(np.int64)


#: A step against the scan's direction this large starts a new laser's sweep (radians): far beyond
#: the azimuth noise within a sweep, far below the sweep a camera's view leaves (KITTI's: 90 degrees).
SWEEP_BREAK_RADIANS = math.radians(5.0)


def _steps_back(xyz: np.ndarray, kinds: np.ndarray, back: int) -> np.ndarray:
    """The steps of kind ``back`` (against the scan's direction) larger than SWEEP_BREAK_RADIANS. An
    encoder choice of layout: the payload lists the points per laser."""
    steps = np.flatnonzero(kinds == back)
    a, b = xyz[steps, :2].astype(np.float64), xyz[steps + 1, :2].astype(np.float64)
    turn = np.abs(np.arctan2(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))
    return steps[turn > SWEEP_BREAK_RADIANS]


def _sort_rings(order, counts, azimuths):
    """Sort each ring's run of ``order`` (grouped by ring: ``counts`` per ring) by azimuth, stably, in
    place: numpy's lexsort over rings and azimuths gives the same order, sorting the whole cloud."""
    start = 0
    for count in counts:
        run = order[start:start + count]
        run[:] = run[np.argsort(azimuths[run], kind='mergesort')]
        start += count


if numba is not None:
    _sort_rings = numba.njit(nogil=True, cache=True)(_sort_rings)


#: Elevation bands of a cloud whose order does not show its lasers (degrees): finer than the laser
#: spacing of 64-beam sensors (0.33-0.5 degrees), so that a band holds one laser's returns. On seven
#: shuffled KITTI scans 0.1 and 0.3 cost 3-4 % and 1-12 % more bits; a synthetic 128-beam scan (lasers
#: 0.33 degrees apart) is 21 % smaller in 0.1-degree bands (research/lidar_unordered_probe.py).
BAND_DEGREES = 0.2
#: Bins (degrees) of the elevation histogram that finds the lasers' height and whether they bunch.
BUNCH_DEGREES = 0.05
#: Below this bunching (:func:`_bunching`) no bands are tried: solid-state-like clouds measure 1.0 and a
#: KITTI scan in a vehicle frame 1.5, and the grid codes them in fewer bits; shuffled KITTI scans 3.3-6.2
#: (research/lidar_unordered_probe.py).
BUNCH_RATIO = 2.5
#: Heights (metres) tried for the lasers' origin above the cloud's, which is the sensor's frame (a
#: driver's): further away, the ground itself comes within reach, which bunches seen from its height.
_HEIGHTS = np.arange(-0.5, 0.5001, 0.05)
#: Elevations (degrees) left out of the bunching: a plane seen from its own height (the ground, for a
#: sensor mounted low) puts all its points there.
_LEVEL_DEGREES = 1.0
_PER_DEGREE = round(1 / BUNCH_DEGREES)
_BUNCH_SAMPLE = 4096


def _elevation_rings(xyz: np.ndarray) -> Optional[np.ndarray]:
    """Laser indexes inferred from the elevation angle, for a cloud whose order does not show its lasers
    (shuffled, voxel-filtered, or column by column without a ``ring`` field): bands of BAND_DEGREES of
    the elevation seen from the height where a sample's elevations bunch most (a KITTI scan's lasers sit
    0.1-0.3 m above its origin). None where they do not bunch (BUNCH_RATIO). An encoder choice only:
    the payload lists the points per band, and decoding never depends on it."""
    sample = xyz[::max(1, len(xyz) // _BUNCH_SAMPLE)].astype(np.float64)
    if len(sample) < 64:
        return None
    distance, z = np.hypot(sample[:, 0], sample[:, 1]), sample[:, 2]
    score, height = max((_bunching(z - h, distance), h) for h in _HEIGHTS)
    if score < BUNCH_RATIO:
        return None
    full = xyz.astype(np.float64)
    elevation = np.degrees(np.arctan2(full[:, 2] - height, np.hypot(full[:, 0], full[:, 1])))
    rings = ((elevation - elevation.min()) / BAND_DEGREES).astype(np.int64)
    return rings if rings.max() < MAX_LASERS else None


def _bunching(z: np.ndarray, distance: np.ndarray) -> float:
    """How many times more often two elevations within a degree of each other (in one of the sample's
    degree-wide bins) share its bin of BUNCH_DEGREES than if they spread evenly over the degree: 1 for
    smooth spreads, up to 20 for lines (spinning sensors' scans score 3.3-15 in
    research/lidar_unordered_probe.py). Pairs, so unbiased for the sample's size. Elevations within
    _LEVEL_DEGREES of level are left out: a plane seen from its own height bunches there."""
    elevation = np.degrees(np.arctan2(z, distance))
    elevation = elevation[np.abs(elevation) >= _LEVEL_DEGREES]
    n = len(elevation)
    if n < 2:
        return 0.0
    fine = np.bincount(((elevation - elevation.min()) / BUNCH_DEGREES).astype(np.int64))
    coarse = np.bincount(np.arange(len(fine)) // _PER_DEGREE, weights=fine)
    pairs = float(np.dot(coarse, coarse)) - n
    return (float(np.dot(fine, fine)) - n) * _PER_DEGREE / pairs if pairs > 0 else 0.0


def _step_kinds(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What :func:`_laser_order` asks of the azimuth step from each point to the next (int8, N - 1),
    answered as the differences of numpy's ``arctan2`` answer it: STEP_WRAP where the step's size
    exceeds pi (the azimuths lie across atan2's cut at -pi, pi), else STEP_FORWARD (> 0),
    STEP_BACKWARD (< 0), STEP_ZERO, or STEP_UNDEFINED (a NaN coordinate)."""
    return _step_kinds_kernel(x, y)


STEP_BACKWARD, STEP_ZERO, STEP_FORWARD, STEP_WRAP, STEP_UNDEFINED = -1, 0, 1, 2, 3
#: Steps whose sine is within this of 0 (turns of nearly 0 or pi, and the origin) take libm's
#: arctangents: elsewhere the cross product's sign, exact up to a relative 1e-15, decides as they do.
STEP_SINE_MARGIN = 4e-8


def _step_kinds_kernel(x, y):
    n = x.shape[0]
    kinds = np.empty(max(n - 1, 0), dtype=np.int8)
    # The steps to decide with libm, listed in this loop and decided in one of their own (behind a
    # branch here, LLVM would compute the side-effect free arctangents of every step).
    exact = np.empty(max(n - 1, 0), dtype=np.int64)
    count = 0
    margin = STEP_SINE_MARGIN * STEP_SINE_MARGIN
    x0 = np.float64(x[0]) if n else 0.0
    y0 = np.float64(y[0]) if n else 0.0
    norm0 = x0 * x0 + y0 * y0
    for i in range(n - 1):  # float64 of float32 coordinates: the products below are exact
        x1, y1 = np.float64(x[i + 1]), np.float64(y[i + 1])
        norm1 = x1 * x1 + y1 * y1
        cross = x0 * y1 - y0 * x1
        # atan2 takes the sign of y, signed zeros included: a step between the halves wraps where
        # the shorter turn crosses the cut, which the turn's direction tells.
        upper0, upper1 = math.copysign(1.0, y0) > 0, math.copysign(1.0, y1) > 0
        positive = cross > 0
        wrap = (upper0 != upper1) & (positive == upper0)
        kinds[i] = STEP_WRAP if wrap else STEP_FORWARD if positive else STEP_BACKWARD
        exact[count] = i
        product = norm0 * norm1
        count += (not cross * cross > margin * product) | (not product > 1e-250)  # NaN too
        x0, y0, norm0 = x1, y1, norm1
    for k in range(count):
        i = exact[k]
        step = (math.atan2(np.float64(y[i + 1]), np.float64(x[i + 1]))
                - math.atan2(np.float64(y[i]), np.float64(x[i])))
        kinds[i] = (STEP_WRAP if abs(step) > math.pi else STEP_FORWARD if step > 0
                    else STEP_BACKWARD if step < 0 else STEP_ZERO if step == 0 else STEP_UNDEFINED)
    return kinds


#: Largest error of :func:`_approximate_azimuth`, radians (about 20 times its truncation error).
AZIMUTH_APPROXIMATION_ERROR = 1e-8


def _approximate_azimuth(x, y):
    """atan2(y, x) within AZIMUTH_APPROXIMATION_ERROR: an octant reduction, then the arctangent series
    to the 19th power on |t| <= tan(pi / 8) (truncation error below 0.4143**21 / 21 = 5e-10)."""
    ax, ay = abs(x), abs(y)
    big, small = max(ax, ay), min(ax, ay)
    t = small / big if big > 0 else 0.0
    offset = 0.0
    if t > 0.41421356237309503:
        t = (t - 1.0) / (t + 1.0)
        offset = math.pi / 4
    t2 = t * t
    series = (1.0 - t2 * (1.0 / 3.0 - t2 * (1.0 / 5.0 - t2 * (1.0 / 7.0 - t2 * (1.0 / 9.0 - t2 * (
        1.0 / 11.0 - t2 * (1.0 / 13.0 - t2 * (1.0 / 15.0 - t2 * (1.0 / 17.0 - t2 * (1.0 / 19.0))))))))))
    angle = offset + t * series
    if ay > ax:
        angle = math.pi / 2 - angle
    if x < 0:
        angle = math.pi - angle
    return -angle if math.copysign(1.0, y) < 0 else angle  # -0.0 too: atan2(-0.0, -1) = -pi


def _rounding_margin(azimuth_turn):
    """How near a half step :func:`_rounding_azimuth` takes libm's arctangent: 4 times the fast one's
    error, in steps, and the rounding of the product (at most half a turn)."""
    return 4.0 * AZIMUTH_APPROXIMATION_ERROR * azimuth_turn / (2.0 * math.pi) + azimuth_turn * 2.0 ** -50


def _rounding_azimuth(x, y, azimuth_per_radian, margin):
    """An azimuth of (x, y) that rounds to the same step as libm's (numpy's) ``atan2(y, x)``:
    the fast arctangent, or libm's where the fast one's error could change the rounding (within
    ``margin`` of a half step, :func:`_rounding_margin`) and at the origin (a sign case)."""
    azimuth = _approximate_azimuth(x, y)
    scaled = azimuth * azimuth_per_radian
    if (abs(scaled - math.floor(scaled) - 0.5) <= margin) | ((x == 0) & (y == 0)):
        azimuth = math.atan2(y, x)
    return azimuth


def _step_summary(kinds):
    """(the steps larger than pi: where the scan's lasers wrap around, int64; of the others, how many
    go forward (>= 0) and how many backward (<= 0)) of :func:`_step_kinds`: one pass, not numpy's five."""
    wraps = np.empty(kinds.shape[0], dtype=np.int64)
    count = forward = backward = 0
    for i in range(kinds.shape[0]):
        kind = kinds[i]
        wraps[count] = i
        count += kind == STEP_WRAP
        forward += (kind == STEP_FORWARD) | (kind == STEP_ZERO)
        backward += (kind == STEP_BACKWARD) | (kind == STEP_ZERO)
    return wraps[:count], forward, backward


if numba is not None:
    _approximate_azimuth = numba.njit(nogil=True, cache=True, inline='always', error_model='numpy')(
        _approximate_azimuth)
    _step_kinds_kernel = numba.njit(nogil=True, cache=True, error_model='numpy')(_step_kinds_kernel)
    _step_summary = numba.njit(nogil=True, cache=True)(_step_summary)
    _rounding_azimuth = numba.njit(nogil=True, cache=True, inline='always', error_model='numpy')(
        _rounding_azimuth)
    _rounding_margin = numba.njit(nogil=True, cache=True, inline='always')(_rounding_margin)


def _monotonic_share(kinds: np.ndarray) -> float:
    """Share of azimuth steps (:func:`_step_kinds`; wraps left out) that go the scan's way."""
    return _share_of(len(kinds), *_step_summary(kinds))


def _share_of(count: int, wraps: np.ndarray, forward: int, backward: int) -> float:
    """:func:`_monotonic_share` of ``count`` steps from their :func:`_step_summary`."""
    within = count - len(wraps)
    return max(forward, backward) / within if within else 1.0


def encode(xyz: np.ndarray, intensity: Optional[np.ndarray], max_error: float,
           rings: Optional[np.ndarray] = None, invalid_points: int = 0,
           out: Optional[np.ndarray] = None) -> PredictiveScan:
    """Code valid float32 points (finite, nonzero range) within ``max_error`` metres per coordinate.

    Args:
        xyz: (N, 3) float32.
        intensity: (N,) non-negative integer codes, or None.
        max_error: the bound, metres.
        rings: (N,) laser index of each point (the PointCloud2 ``ring`` field), or None.
        invalid_points: rows the caller left out, recorded in the payload.
        out: float32 (N, >= 3) or None: the decoded points are written into its first three
            columns (``PredictiveScan.xyz`` is a view of them), so the caller's rows need no copy.
    """
    max_error = check_max_error(max_error)
    if xyz.dtype != np.float32 and xyz.dtype != np.float64:
        xyz = xyz.astype(np.float64)
    # Not converted to float64 here: the compiled passes read the coordinates as float64 (exact).
    xyz = np.ascontiguousarray(xyz)
    correction_step, range_step, turn = _steps(max_error, xyz)
    has_intensity = intensity is not None
    codes = np.asarray(intensity) if has_intensity else np.zeros(0, np.int64)
    if codes.dtype.kind not in 'iu':
        codes = codes.astype(np.int64)
    header = _HEADER.pack(FORMAT_VERSION, MODE_SPINNING, FLAG_INTENSITY if has_intensity else 0, 0,
                          max_error, correction_step, invalid_points)
    laid_out = _laser_order(xyz, rings) if len(xyz) else None
    if laid_out is not None:
        scan = _encode_spinning(xyz, codes, laid_out, header, correction_step, range_step, turn, max_error,
                                out)
        if scan is not None:
            return scan
    grid_header = header[:1] + bytes([MODE_GRID]) + header[2:]
    bands = _elevation_rings(xyz) if len(xyz) else None
    if bands is None:
        return _encode_grid(xyz, codes, grid_header, correction_step, max_error, has_intensity,
                            invalid_points, out)
    # A spinning sensor's cloud out of laser order: its elevation bands code it in about half the grid's
    # bits, but nothing promises that of every cloud whose elevations bunch: keep the smaller.
    banded = _encode_spinning(xyz, codes, _laser_order(xyz, bands), header, correction_step, range_step,
                              turn, max_error, out)
    try:
        grid = _encode_grid(xyz, codes, grid_header, correction_step, max_error, has_intensity,
                            invalid_points, None)
    except ParameterError:
        if banded is None:
            raise
        return banded
    if banded is not None and len(banded.payload) <= len(grid.payload):
        return banded
    return _keep(grid, out)


def _encode_spinning(xyz, codes, laid_out, header, correction_step, range_step, turn,
                     max_error, out) -> Optional[PredictiveScan]:
    order, counts = laid_out
    if order is None:
        order = np.arange(len(xyz), dtype=np.int64)
    elif not np.array_equal(order, np.arange(len(order))):
        xyz = xyz[order]
        codes = codes[order] if len(codes) else codes
    used, ranks = _intensity_ranks(codes)
    heights = _laser_heights(xyz, counts)
    same_laser, ends = _sampled_azimuths(xyz, counts)
    azimuth_turn = _azimuth_turn(same_laser, ends, turn)
    azimuth_step = _azimuth_step(same_laser, ends, azimuth_turn)
    ranges, azimuths, elevations, has_correction, corrections, decoded, within = _choose_spherical(
        xyz, counts, heights, range_step, azimuth_turn, turn, azimuth_step, correction_step,
        max_error, _choice_buffers(len(xyz), out=out))
    if not within:
        return None
    rows = _scratch('rows', len(ranges) * _ENTRIES_PER_POINT, np.int16)
    values = _scratch('values', len(ranges) * _ENTRIES_PER_POINT, np.int16)
    histogram = _new_histogram(SPINNING_ROWS)
    count = _spinning_symbols(ranges, azimuths, elevations, has_correction, corrections, ranks, counts,
                              azimuth_turn, azimuth_step, range_step, rows, values, histogram)
    side = (_SPINNING.pack(range_step, azimuth_turn, turn, azimuth_step, len(counts))
            + counts.astype('<u4').tobytes() + heights.astype('<i2').tobytes() + used)
    payload = header + _entropy_code(rows, values, count, histogram, SPINNING_ROWS, side)
    return PredictiveScan(payload, decoded, codes if len(codes) else None, order, 'spinning',
                          _HEADER.unpack_from(header)[6])


def _sampled_azimuths(xyz: np.ndarray, counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(same_laser, azimuths): for about 4096 points of the scan (evenly spaced, the last left out),
    whether the point after each is on the same laser, and the azimuths (radians) of each and of the
    point after it, (2, S): the firing step's sample."""
    return _sample_kernel(xyz, counts, 1 + len(xyz) // 4096)


def _sample_kernel(xyz, counts, stride):
    # One compiled pass: numpy's searchsorted, gather and arctan2 over these few thousand points cost
    # twice as much. libm's atan2 (numpy's arctan2 gave the same on all 63 KITTI scans on an AVX2 CPU).
    samples = max(0, (xyz.shape[0] - 1 + stride - 1) // stride)
    same_laser = np.empty(samples, dtype=np.bool_)
    azimuths = np.empty((2, samples), dtype=np.float64)
    laser = 0
    end = counts[0] if counts.shape[0] else 0  # past the current laser's points
    for k in range(samples):
        i = k * stride
        while i >= end and laser + 1 < counts.shape[0]:
            laser += 1
            end += counts[laser]
        same_laser[k] = i + 1 < end
        for side in range(2):
            azimuths[side, k] = math.atan2(np.float64(xyz[i + side, 1]), np.float64(xyz[i + side, 0]))
    return same_laser, azimuths


def _azimuth_step(same_laser: np.ndarray, ends: np.ndarray, azimuth_turn: int) -> int:
    """The typical azimuth step within a laser, in 1 / ``azimuth_turn`` (the median of a sample:
    any value decodes)."""
    if not np.any(same_laser):
        return 0
    indexes = np.rint(ends * (azimuth_turn / (2.0 * math.pi)))
    steps = _wrap_array(np.diff(indexes, axis=0)[0].astype(np.int64), azimuth_turn)
    return int(np.median(steps[same_laser]))


def _azimuth_turn(same_laser: np.ndarray, ends: np.ndarray, turn: int) -> int:
    """Azimuth steps per turn: a whole number of steps between a laser's firings (so that azimuth
    residuals are mostly zero), and at least ``turn`` (the bound's resolution)."""
    steps = np.abs(ends[1] - ends[0])
    same_laser = same_laser & (steps < math.pi)
    firing = float(np.median(steps[same_laser])) if np.any(same_laser) else 0.0
    if not firing > 2.0 * math.pi / (1 << 20):
        return turn
    per_firing = math.ceil(firing * turn / (2.0 * math.pi))
    return min(1 << 30, 4 * max(2, round(2.0 * math.pi * per_firing / firing / 4.0)))


def _laser_heights(xyz: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each laser's height (int16 millimetres): the z of its apparent origin, z = rho * tan(theta) + h.

    A spinning sensor's lasers sit at different heights (HDL-64E: about 0.2 m), so a laser's
    elevation seen from the sensor origin changes with distance; seen from its own origin it is
    nearly constant, and its residuals nearly zero. A least-squares line per laser, fitted to a
    sample of its points (:func:`_laser_sums`)."""
    sums = _laser_sums(xyz, counts)
    n, sr, sz, srr, srz = sums.T
    determinant = n * srr - sr * sr
    with np.errstate(invalid='ignore', divide='ignore'):
        height = (srr * sz - sr * srz) / determinant
    height = np.where((n > 2) & (np.abs(determinant) > 1e-9 * np.maximum(n * srr, 1e-300)), height, 0.0)
    return np.clip(np.rint(np.nan_to_num(height) * 1000.0), -32768, 32767).astype(np.int16)


def _laser_sums(xyz, counts):
    """Per laser: points, sum of rho, z, rho**2 and rho * z, over every k-th of its points, k its
    points // HEIGHT_SAMPLE (at least 1): fewer than 2 * HEIGHT_SAMPLE."""
    sums = np.zeros((counts.shape[0], 5), dtype=np.float64)
    start = 0
    for laser in range(counts.shape[0]):
        stride = max(1, counts[laser] // HEIGHT_SAMPLE)
        for point in range(start, start + counts[laser], stride):
            x, y, z = np.float64(xyz[point, 0]), np.float64(xyz[point, 1]), np.float64(xyz[point, 2])
            rho = math.sqrt(x * x + y * y)
            sums[laser, 0] += 1.0
            sums[laser, 1] += rho
            sums[laser, 2] += z
            sums[laser, 3] += rho * rho
            sums[laser, 4] += rho * z
        start += counts[laser]
    return sums


def _nearest(target, azimuth, height, range_step, azimuth_turn, azimuth_per_radian, elevation_per_radian,
             predicted_elevation, sine_bracket):
    """Integer range, azimuth and elevation nearest the point ``target`` (x, y, z) seen from its laser's
    origin (any values are valid: the corrections make up for them; these make the corrections zero).
    A sine strictly inside ``sine_bracket`` (:func:`_sine_bracket`) rounds to the predicted elevation:
    no arcsine then."""
    x, y, z = target[0], target[1], target[2] - height
    distance = math.sqrt(x * x + y * y + z * z)
    sine = min(1.0, max(-1.0, z / distance)) if distance > 0 else 0.0
    index = np.int64(round(azimuth * azimuth_per_radian))
    if index < 0 or index >= azimuth_turn:
        index %= azimuth_turn
    if sine_bracket[0] < sine < sine_bracket[1]:
        elevation = np.int64(predicted_elevation)
    else:
        elevation = np.int64(round(math.asin(sine) * elevation_per_radian))
    return np.int64(round(distance / range_step)), index, elevation


def _sine_bracket(elevation, se, ce, half_sine, half_cosine, elevation_turn):
    """(low, high): sines whose arcsine rounds to ``elevation`` for certain, the sines of its cell's
    edges, ``elevation -+ 1/2`` (``se``, ``ce`` its sine and cosine, ``half_sine``, ``half_cosine``
    those of half a cell), narrowed by 1e-9: far more than the errors of these sines (below 1e-10)
    and of the arcsine, so the arcsine would give the same integer. Empty (1, -1) for elevations
    beyond 60 degrees, where the arcsine's slope grows, and for integers beyond a quarter turn (not
    what an arcsine rounds to)."""
    if ce <= 0.5 or 4 * abs(elevation) >= elevation_turn:
        return 1.0, -1.0
    return se * half_cosine - ce * half_sine + 1e-9, se * half_cosine + ce * half_sine - 1e-9


def _fits(target, x, y, z, max_error):
    """Whether the float32 point (x, y, z) is within ``max_error`` of ``target`` on every axis."""
    return (abs(np.float64(np.float32(x)) - target[0]) <= max_error
            and abs(np.float64(np.float32(y)) - target[1]) <= max_error
            and abs(np.float64(np.float32(z)) - target[2]) <= max_error)


def _range_interval(target, se, ce, sa, ca, range_step, height, slack):
    """The integer ranges that put the point within ``slack`` of ``target`` (x, y, z) on every axis
    along these angles (empty: low > high). The helpers of the encoder's loop take coordinates, not
    the array: numba counts references to an array passed to an inlined function, an atomic
    increment and decrement per call that cost more than the arithmetic."""
    low, high, empty = _axis_interval(target[0], ce * ca * range_step, slack, -1e18, 1e18)
    if not empty:
        low, high, empty = _axis_interval(target[1], ce * sa * range_step, slack, low, high)
    if not empty:
        low, high, empty = _axis_interval(target[2] - height, se * range_step, slack, low, high)
    if empty or low > high:
        return 1, 0
    return np.int64(math.ceil(low)), np.int64(math.floor(high))


def _axis_interval(offset, u, slack, low, high):
    """(low, high, empty): the range interval narrowed by one axis, where a range step moves the
    point by ``u`` along it and the point lies ``offset`` from the laser's origin."""
    if abs(u) < 1e-12:
        return low, high, abs(offset) > slack
    inverse = 1.0 / u  # the encoder's choice only: _fits checks the result exactly
    a, b = (offset - slack) * inverse, (offset + slack) * inverse
    if a > b:
        a, b = b, a
    return max(low, a), min(high, b), False


def _choose_spherical(xyz, counts, heights, range_step, azimuth_turn, elevation_turn, azimuth_step,
                      correction_step, max_error, buffers):
    """The coded values of every point: (ranges, azimuths, elevations, whether it has a correction,
    the corrections of the points that have one, in their order (the first rows: a row per point would
    touch a page of memory per corrected point), decoded float32 points, whether all are within the
    bound). The arrays are those of ``buffers`` (:func:`_choice_buffers`).

    Where the predicted azimuth and elevation and a range near the predicted one already put a point
    within the bound, those are coded (zero or small residuals, no correction) instead of the
    nearest values: the bound is per coordinate, so there is slack to spend on cheaper symbols.
    Elsewhere (:func:`_choose_fallback`) the nearest values and, if they need it, a correction.
    """
    n = xyz.shape[0]
    ranges, azimuths, elevations, has_correction, corrections, decoded = buffers
    # Few points have corrections: a flag per point, and rows written only for those.
    has_correction[:] = False
    corrected = 0
    table = _azimuth_table(azimuth_turn, n)
    tabulated = table.shape[0] > 0
    slack = max_error * 0.999
    azimuth_per_radian = azimuth_turn / (2.0 * math.pi)
    elevation_per_radian = elevation_turn / (2.0 * math.pi)
    rounding_margin = _rounding_margin(azimuth_turn)
    cached_elevation = 0
    se, ce = _sincos_turn(0, elevation_turn)
    half_sine, half_cosine = math.sin(math.pi / elevation_turn), math.cos(math.pi / elevation_turn)
    sine_bracket = _sine_bracket(0, se, ce, half_sine, half_cosine, elevation_turn)
    within = True
    point = 0
    first_range = first_azimuth = first_elevation = 0
    for laser in range(counts.shape[0]):
        height = heights[laser] / 1000.0
        for j in range(counts[laser]):
            i = point
            point += 1
            if j == 0:
                predicted_range, predicted_elevation = first_range, first_elevation
                predicted_azimuth = first_azimuth % azimuth_turn
            else:
                predicted_range, predicted_elevation = ranges[i - 1], elevations[i - 1]
                predicted_azimuth = azimuths[i - 1] + azimuth_step
                if predicted_azimuth < 0 or predicted_azimuth >= azimuth_turn:
                    predicted_azimuth %= azimuth_turn
            if predicted_elevation != cached_elevation:
                cached_elevation = predicted_elevation
                se, ce = _sincos_turn(predicted_elevation, elevation_turn)
                sine_bracket = _sine_bracket(predicted_elevation, se, ce, half_sine, half_cosine,
                                             elevation_turn)
            if tabulated:
                sa, ca = table[predicted_azimuth, 0], table[predicted_azimuth, 1]
            else:
                sa, ca = _sincos_turn(predicted_azimuth, azimuth_turn)
            # The predicted angles and the range nearest the predicted one within the bound: most points.
            target = (np.float64(xyz[i, 0]), np.float64(xyz[i, 1]), np.float64(xyz[i, 2]))
            low, high = _range_interval(target, se, ce, sa, ca, range_step, height, slack)
            done = False
            if low <= high:
                chosen = min(max(predicted_range, low), high)
                x, y, z = _point(chosen, se, ce, sa, ca, range_step, height)
                if _fits(target, x, y, z, max_error):
                    ranges[i], azimuths[i], elevations[i] = chosen, predicted_azimuth, predicted_elevation
                    decoded[i, 0], decoded[i, 1], decoded[i, 2] = np.float32(x), np.float32(y), np.float32(z)
                    done = True
            if not done:
                azimuth = _rounding_azimuth(target[0], target[1], azimuth_per_radian, rounding_margin)
                near = _nearest(target, azimuth, height, range_step, azimuth_turn, azimuth_per_radian,
                                elevation_per_radian, predicted_elevation, sine_bracket)
                if tabulated:
                    near_sa, near_ca = table[near[1], 0], table[near[1], 1]
                else:
                    near_sa, near_ca = _sincos_turn(near[1], azimuth_turn)
                (ranges[i], azimuths[i], elevations[i]), point32, k, fits = _choose_fallback(
                    target, near, predicted_range, predicted_azimuth, predicted_elevation, se, ce, sa, ca,
                    near_sa, near_ca, height, range_step, elevation_turn, correction_step, max_error, slack)
                decoded[i, 0], decoded[i, 1], decoded[i, 2] = point32
                if k[0] != 0 or k[1] != 0 or k[2] != 0:
                    has_correction[i] = True
                    corrections[corrected, 0], corrections[corrected, 1], corrections[corrected, 2] = k
                    corrected += 1
                within &= fits
            if j == 0:
                first_range, first_azimuth, first_elevation = ranges[i], azimuths[i], elevations[i]
    return ranges, azimuths, elevations, has_correction, corrections[:corrected], decoded, within


def _choose_fallback(target, near, predicted_range, predicted_azimuth, predicted_elevation, predicted_se,
                     predicted_ce, predicted_sa, predicted_ca, near_sa, near_ca, height, range_step,
                     elevation_turn, correction_step, max_error, slack):
    """The coded values of a point ``target`` that the predicted angles miss, given its nearest values
    ``near`` (range, azimuth, elevation) and the sines and cosines of both azimuths: ((range, azimuth,
    elevation), the float32 decoded point, the correction, whether it is within the bound). Tried in
    turn: the predicted azimuth with the nearest elevation, the nearest azimuth with the predicted
    elevation, both nearest (each with a range within the bound), then the nearest values and a
    correction. Scalars only (see :func:`_range_interval`)."""
    near_range, near_azimuth, near_elevation = near
    near_se, near_ce = predicted_se, predicted_ce
    if near_elevation != predicted_elevation:
        near_se, near_ce = _sincos_turn(near_elevation, elevation_turn)
    for attempt in range(1, 5):
        nearest = attempt == 4  # the fallback: nearest values and a correction
        chosen_azimuth = predicted_azimuth if attempt < 2 else near_azimuth
        elevation = predicted_elevation if attempt % 2 == 0 and not nearest else near_elevation
        if (attempt == 1 and elevation == predicted_elevation) or (
                attempt == 2 and chosen_azimuth == predicted_azimuth) or (
                attempt == 3 and (chosen_azimuth == predicted_azimuth
                                  or elevation == predicted_elevation)):
            continue
        se, ce = (predicted_se, predicted_ce) if elevation == predicted_elevation else (near_se, near_ce)
        sa, ca = (predicted_sa, predicted_ca) if attempt < 2 else (near_sa, near_ca)
        if nearest:
            x, y, z = _point(near_range, se, ce, sa, ca, range_step, height)
            kx = np.int64(round((target[0] - x) / correction_step))
            ky = np.int64(round((target[1] - y) / correction_step))
            kz = np.int64(round((target[2] - z) / correction_step))
            point32 = (np.float32(x + kx * correction_step), np.float32(y + ky * correction_step),
                       np.float32(z + kz * correction_step))
            within = (abs(np.float64(point32[0]) - target[0]) <= max_error
                      and abs(np.float64(point32[1]) - target[1]) <= max_error
                      and abs(np.float64(point32[2]) - target[2]) <= max_error)
            return (near_range, chosen_azimuth, elevation), point32, (kx, ky, kz), within
        low, high = _range_interval(target, se, ce, sa, ca, range_step, height, slack)
        if low > high:
            continue
        chosen = min(max(predicted_range, low), high)
        x, y, z = _point(chosen, se, ce, sa, ca, range_step, height)
        if _fits(target, x, y, z, max_error):
            return ((chosen, chosen_azimuth, elevation), (np.float32(x), np.float32(y), np.float32(z)),
                    (np.int64(0), np.int64(0), np.int64(0)), True)
    return near, (np.float32(0), np.float32(0), np.float32(0)), (np.int64(0), np.int64(0), np.int64(0)), False


if numba is not None:
    _laser_sums = numba.njit(nogil=True, cache=True)(_laser_sums)
    _sample_kernel = numba.njit(nogil=True, cache=True)(_sample_kernel)
    _nearest = numba.njit(nogil=True, cache=True, inline='always')(_nearest)
    _sine_bracket = numba.njit(nogil=True, cache=True, inline='always')(_sine_bracket)
    _fits = numba.njit(nogil=True, cache=True, inline='always')(_fits)
    _range_interval = numba.njit(nogil=True, cache=True, inline='always')(_range_interval)
    _axis_interval = numba.njit(nogil=True, cache=True, inline='always')(_axis_interval)
    _choose_fallback = numba.njit(nogil=True, cache=True)(_choose_fallback)
    _choose_spherical = numba.njit(nogil=True, cache=True)(_choose_spherical)


def _intensity_ranks(codes: np.ndarray) -> Tuple[bytes, np.ndarray]:
    """The intensity codes that occur (serialized) and each code's rank among them.

    Sensors often use few of the codes (KITTI reflectance has 101 levels in 256 codes): residuals of
    ranks are smaller than residuals of codes."""
    if len(codes) == 0:
        return b'', np.zeros(0, np.int64)
    values, ranks = _rank_codes(np.ascontiguousarray(codes))
    if len(values) == 0:
        raise ParameterError('LiDAR intensity codes must be non-negative integers')
    return _LENGTH.pack(len(values)) + values.astype('<u2').tobytes(), ranks


def _rank_codes(codes):
    """(the codes that occur, ascending; each code's rank among them), int64; no codes if one is
    negative. Compiled passes, not numpy's bincount and gathers."""
    top = 0
    for i in range(codes.shape[0]):
        if codes[i] < 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        top = max(top, np.int64(codes[i]))
    rank_of = np.zeros(top + 1, np.int64)
    for i in range(codes.shape[0]):
        rank_of[codes[i]] = 1
    values = np.empty(top + 1, np.int64)
    used = 0
    for code in range(top + 1):
        present = rank_of[code]
        values[used] = code
        rank_of[code] = used
        used += present
    ranks = np.empty(codes.shape[0], np.int64)
    for i in range(codes.shape[0]):
        ranks[i] = rank_of[codes[i]]
    return values[:used], ranks


def _read_ranks(side: bytes, offset: int, has_intensity: bool) -> Tuple[np.ndarray, int]:
    """The intensity codes of the ranks (as :func:`_intensity_ranks` wrote them) and the offset past them."""
    if not has_intensity:
        return np.zeros(0, np.int64), offset
    _need(side, offset, _LENGTH.size, 'intensity codes')
    (count,) = _LENGTH.unpack_from(side, offset)
    offset += _LENGTH.size
    _need(side, offset, 2 * count, 'intensity codes')
    return np.frombuffer(side, '<u2', count, offset).astype(np.uint16), offset + 2 * count


def _intensity_codes(ranks: np.ndarray, values: np.ndarray) -> np.ndarray:
    codes, inside = _codes_of_ranks(ranks, values)
    if not inside:
        raise PacketError('LiDAR payload decodes to intensity ranks outside its list of codes')
    return codes


def _codes_of_ranks(ranks, values):
    """(``values[ranks]``, whether every rank indexes ``values``): one compiled pass, into an array of
    the type of ``values`` (uint16: a quarter of the memory of int64, each page of it a fault)."""
    codes = np.empty(ranks.shape[0], values.dtype)
    for i in range(ranks.shape[0]):
        rank = ranks[i]
        if rank < 0 or rank >= values.shape[0]:
            return codes, False
        codes[i] = values[rank]
    return codes, True


if numba is not None:
    _rank_codes = numba.njit(nogil=True, cache=True)(_rank_codes)
    _codes_of_ranks = numba.njit(nogil=True, cache=True)(_codes_of_ranks)


def _wrap_array(values: np.ndarray, turn: int) -> np.ndarray:
    return (values + turn // 2) % turn - turn // 2


def _encode_grid(xyz, codes, header, correction_step, max_error, has_intensity,
                 invalid_points, out) -> PredictiveScan:
    cells = np.empty((len(xyz), 3), np.int64)
    if not _grid_cells(xyz, correction_step, cells):
        raise ParameterError(f'lidar max_error {max_error} m is too small for this cloud\'s extent')
    order = _grid_order(cells)
    decoded = _coordinates_out(out, len(cells))
    if not _sorted_cells(cells, order, xyz, correction_step, max_error, decoded):
        raise ParameterError(f'lidar max_error {max_error} m cannot be met in float32 for this cloud')
    codes = codes[order] if has_intensity else codes
    used, ranks = _intensity_ranks(codes)
    rows = np.empty(len(cells) * _ENTRIES_PER_POINT, np.int16)
    values = np.empty(len(cells) * _ENTRIES_PER_POINT, np.int16)
    histogram = _new_histogram(GRID_ROWS)
    count = _grid_symbols(cells, ranks, rows, values, histogram)
    payload = header + _entropy_code(rows, values, count, histogram, GRID_ROWS, used)
    return PredictiveScan(payload, decoded, codes if has_intensity else None, order, 'grid', invalid_points)


def _grid_cells(xyz, step, cells):
    """Fill ``cells`` with each coordinate's nearest multiple of ``step`` (numpy's rint of the float64
    quotient); False if one is too large for an int64 key (a bound far too small for the cloud)."""
    for i in range(xyz.shape[0]):
        for axis in range(3):
            cell = np.rint(np.float64(xyz[i, axis]) / step)
            if not abs(cell) < 2.0 ** 60:
                return False
            cells[i, axis] = np.int64(cell)
    return True


def _grid_order(cells: np.ndarray) -> np.ndarray:
    """The points' order by x, then y, then z cell, ties in input order: numpy's lexsort of the three,
    as a compiled radix sort of one key that packs them, where it fits 63 bits."""
    if len(cells) == 0:
        return np.zeros(0, np.int64)
    low, high = cells.min(axis=0), cells.max(axis=0)
    widths = [int(span).bit_length() for span in (high - low)]
    if sum(widths) > 63:
        return np.lexsort((cells[:, 2], cells[:, 1], cells[:, 0])).astype(np.int64)
    return _radix_order(_packed_cells(cells, low, widths[1], widths[2]), sum(widths))


def _packed_cells(cells, low, y_bits, z_bits):
    keys = np.empty(cells.shape[0], np.int64)
    for i in range(cells.shape[0]):
        xy = ((cells[i, 0] - low[0]) << y_bits) | (cells[i, 1] - low[1])
        keys[i] = (xy << z_bits) | (cells[i, 2] - low[2])
    return keys


def _radix_order(keys, bits):
    """The stable order of non-negative ``keys`` below ``2**bits``: least significant byte first."""
    n = keys.shape[0]
    order, spare = np.arange(n), np.empty(n, np.int64)
    sorted_keys, spare_keys = keys.copy(), np.empty(n, np.int64)
    for shift in range(0, bits, 8):
        starts = np.zeros(257, np.int64)
        for i in range(n):
            starts[((sorted_keys[i] >> shift) & 255) + 1] += 1
        for digit in range(256):
            starts[digit + 1] += starts[digit]
        for i in range(n):
            digit = (sorted_keys[i] >> shift) & 255
            spare[starts[digit]], spare_keys[starts[digit]] = order[i], sorted_keys[i]
            starts[digit] += 1
        order, spare, sorted_keys, spare_keys = spare, order, spare_keys, sorted_keys
    return order


def _sorted_cells(cells, order, xyz, step, max_error, decoded):
    """Reorder ``cells`` in place, write each cell's float32 point into ``decoded`` and say whether
    every one is within ``max_error`` of its original on every axis (float32 may not hold it)."""
    original = cells.copy()
    within = True
    for i in range(order.shape[0]):
        j = order[i]
        for axis in range(3):
            cells[i, axis] = original[j, axis]
            decoded[i, axis] = np.float32(original[j, axis] * step)
            within &= abs(np.float64(decoded[i, axis]) - np.float64(xyz[j, axis])) <= max_error
    return within


if numba is not None:
    _grid_cells = numba.njit(nogil=True, cache=True)(_grid_cells)
    _packed_cells = numba.njit(nogil=True, cache=True)(_packed_cells)
    _radix_order = numba.njit(nogil=True, cache=True)(_radix_order)
    _sorted_cells = numba.njit(nogil=True, cache=True)(_sorted_cells)


def _keep(scan: PredictiveScan, out: Optional[np.ndarray]) -> PredictiveScan:
    """``scan`` with its decoded points in ``out``'s rows, as :func:`encode` promises."""
    if out is None:
        return scan
    out[:, :3] = scan.xyz
    return replace(scan, xyz=out[:, :3])


# --- decoder ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PayloadInfo:
    """What a payload's header declares."""

    mode: str
    max_error: float
    invalid_points: int
    has_intensity: bool


def read_info(payload: bytes) -> PayloadInfo:
    """The header of a payload; PacketError if it is not one this decoder reads."""
    _need(payload, 0, _HEADER.size, 'header')
    version, mode, flags, reserved, max_error, correction_step, invalid = _HEADER.unpack_from(payload)
    if version != FORMAT_VERSION:
        remedy = 'update the decoder' if version > FORMAT_VERSION else 're-encode the scan with this release'
        raise PacketError(f'LiDAR predictive payload has format version {version}; this decoder reads '
                          f'version {FORMAT_VERSION} only: {remedy}')
    if mode not in MODES or flags & ~FLAG_INTENSITY or reserved:
        raise PacketError(f'LiDAR predictive payload header is invalid (mode {mode}, flags 0x{flags:02x})')
    for name, value in (('max_error', max_error), ('correction step', correction_step)):
        if not (math.isfinite(value) and 0 < value <= 2 * MAX_ERROR_LIMIT):
            raise PacketError(f'LiDAR predictive payload declares a {name} of {value}')
    return PayloadInfo(MODES[mode], max_error, invalid, bool(flags & FLAG_INTENSITY))


def decode(payload: bytes, num_points: int,
           out: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Optional[np.ndarray], PayloadInfo]:
    """(M, 3) float32 coordinates, (M,) intensity codes or None, and the header of a payload. With
    ``out`` (float32 (num_points, >= 3)) the coordinates are written into its first three columns and
    returned as a view of them (the caller's rows then need no copy); a payload that raises
    PacketError may have written some of them."""
    info = read_info(payload)
    correction_step = _HEADER.unpack_from(payload)[5]
    offset = _HEADER.size
    _need(payload, offset, _LENGTH.size, 'side information')
    (packed_length,) = _LENGTH.unpack_from(payload, offset)
    offset += _LENGTH.size
    _need(payload, offset, packed_length, 'side information')
    try:
        side = zlib.decompressobj().decompress(payload[offset:offset + packed_length], 1 << 20)
    except zlib.error as exc:
        raise PacketError(f'LiDAR payload side information is corrupted: {exc}') from None
    offset += packed_length
    if (len(payload) - offset) % 4:
        raise PacketError('LiDAR payload rANS stream is not a whole number of 32-bit words')
    words = rans_kernels.sequence_words(np.frombuffer(payload, '<u4', offset=offset))
    if info.mode == 'spinning':
        xyz, intensity = _decode_spinning_payload(side, words, num_points, info, correction_step, out)
    else:
        xyz, intensity = _decode_grid_payload(side, words, num_points, info, correction_step, out)
    return xyz, intensity, info


def _decode_spinning_payload(side, words, num_points, info, correction_step, out):
    _need(side, 0, _SPINNING.size, 'laser layout')
    range_step, azimuth_turn, elevation_turn, azimuth_step, lasers = _SPINNING.unpack_from(side)
    if not (math.isfinite(range_step) and 0 < range_step <= 2 * MAX_ERROR_LIMIT):
        raise PacketError(f'LiDAR payload declares a range step of {range_step}')
    for turn in (azimuth_turn, elevation_turn):
        if turn < 8 or turn % 4 or turn > 1 << 30:
            raise PacketError(f'LiDAR payload declares an angle resolution of {turn} per turn')
    if not 1 <= lasers <= MAX_LASERS:
        raise PacketError(f'LiDAR payload declares {lasers} lasers')
    offset = _SPINNING.size
    _need(side, offset, 4 * lasers, 'laser layout')
    counts = np.frombuffer(side, '<u4', lasers, offset).astype(np.int64)
    if int(counts.sum()) != num_points:
        raise PacketError(f'LiDAR payload lasers hold {int(counts.sum())} points, the packet declares '
                          f'{num_points}')
    offset += 4 * lasers
    _need(side, offset, 2 * lasers, 'laser layout')
    heights = np.frombuffer(side, '<i2', lasers, offset)
    intensity_values, offset = _read_ranks(side, offset + 2 * lasers, info.has_intensity)
    table, offset = _parse_table(side, offset, SPINNING_ROWS)
    _no_trailing(side, offset)
    bounds, lookup = _decoder_tables(table)
    xyz = _coordinates_out(out, num_points)
    intensity, done, finite = _decode_spinning(
        words, counts, heights, azimuth_turn, elevation_turn, azimuth_step, range_step, correction_step,
        info.has_intensity, table.offsets, bounds, lookup, xyz)
    if not done:
        raise PacketError('LiDAR payload rANS stream is corrupted (it does not end where it should)')
    if not finite:
        raise PacketError('LiDAR payload decodes to non-finite coordinates')
    return xyz, _intensity_codes(intensity, intensity_values) if info.has_intensity else None


def _decode_grid_payload(side, words, num_points, info, correction_step, out):
    intensity_values, offset = _read_ranks(side, 0, info.has_intensity and num_points > 0)
    table, offset = _parse_table(side, offset, GRID_ROWS)
    _no_trailing(side, offset)
    bounds, lookup = _decoder_tables(table)
    cells, intensity, done = _decode_grid(words, num_points, info.has_intensity, table.offsets, bounds,
                                          lookup)
    if not done:
        raise PacketError('LiDAR payload rANS stream is corrupted (it does not end where it should)')
    xyz = _coordinates_out(out, num_points)
    xyz[:] = _finite((cells * correction_step).astype(np.float32))
    return xyz, _intensity_codes(intensity, intensity_values) if info.has_intensity else None


def _no_trailing(side: bytes, offset: int) -> None:
    if offset != len(side):
        raise PacketError(f'LiDAR payload side information has {len(side) - offset} bytes too many')


def _coordinates_out(out: Optional[np.ndarray], num_points: int) -> np.ndarray:
    """The decoded coordinates' array: the first three columns of ``out``, or a new one."""
    if out is None:
        return np.empty((num_points, 3), np.float32)
    if out.dtype != np.float32 or out.ndim != 2 or out.shape[0] != num_points or out.shape[1] < 3:
        raise ValueError(f'out must be float32 ({num_points}, >= 3), got {out.dtype} {out.shape}')
    return out[:, :3]


def _finite(xyz: np.ndarray) -> np.ndarray:
    if not np.isfinite(xyz).all():
        raise PacketError('LiDAR payload decodes to non-finite coordinates')
    return xyz
