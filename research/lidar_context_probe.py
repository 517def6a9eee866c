"""Where do the predictive LiDAR codec's bits go, and which contexts or predictors would save some?

Step 1 (breakdown): each scan is coded as ``codec/lidar_predictive.py`` codes it; every table symbol's
cost is taken under the table the payload carries (its quantized 16-bit pmf), grouped by what the
symbol codes (shape, range, escapes' raw bits, corrections, intensity, first-of-laser), with the
zlib-compressed table bytes apart.

Step 2 (candidates): a candidate is a way to form each point's symbol (a residual) and its context
row from values already decoded. Its cost is measured as the codec would pay it: symbols under a
per-scan table built like the codec's (counts on the 2**(1/8) byte scale, ``quantize_pmf``), raw
bits of escapes, and the table's zlib bytes. Also given for most: the same symbols under an adaptive
model (counts updated as symbols are coded, no table sent), to see where tables cost more than they
save. Candidates: intensity contexts and predictors (``intensity_candidates``), range contexts,
predictors from the laser above and escapes re-coded against it (``range_candidates``), the azimuth
part of the shape symbol under finer contexts (``shape_candidates``), and smoothing range predictors
with the ranges re-chosen within the bound against each, as the encoder's slack spending would
(``range_predictors``).

    PYTHONPATH=$PWD python research/lidar_context_probe.py --data ../shared/data [--scans 16]

Writes research/results/lidar_context_probe_kitti.json.
"""
import argparse
import json
import zlib
from pathlib import Path

import numpy as np

from lidar_interscan_probe import codec_layout, range_intervals
from xmodal_compress_ros.codec import lidar_predictive as lp

try:
    import numba
except ImportError:
    numba = None

SYMBOLS = 2 * lp.SYMBOL_MAX + 1


def read_points(path):
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    keep = np.isfinite(points[:, :3]).all(axis=1) & (np.abs(points[:, :3]).sum(axis=1) > 0)
    return points[keep]


def scan_paths(root: Path, count: int):
    """Every other object frame and every fifth raw frame, up to ``count``."""
    objects = sorted((root / 'kitti_object').glob('*/velodyne/*.bin'))[::2]
    raw = sorted((root / 'kitti_raw').glob('*/*_sync/velodyne_points/data/*.bin'))[::5]
    paths = objects + raw
    return paths[:: max(1, len(paths) // count)][:count]


def layout(points, max_error):
    """The codec's spherical integers and intensity ranks of a scan (as ``_encode_spinning`` computes)."""
    scan = codec_layout(points[:, :3], max_error)
    assert scan['within']
    codes = np.rint(np.clip(points[:, 3].astype(np.float64), 0, 1) * 255).astype(np.int64)
    _, ranks = lp._intensity_ranks(codes if scan['order'] is None else codes[scan['order']])
    return dict(scan, ranks=ranks)


# --- costs ------------------------------------------------------------------------------------

def symbols_and_raw(values):
    """Table symbols (escape classes beyond DIRECT) and raw bits of residuals, as the codec forms them."""
    magnitude = np.abs(values)
    excess = np.maximum(magnitude - lp.DIRECT - 1, 0)
    width = np.where(excess > 0, np.floor(np.log2(np.maximum(excess, 1))).astype(np.int64) + 1, 0)
    symbol = np.where(magnitude <= lp.DIRECT, values, np.sign(values) * (lp.DIRECT + 1 + width))
    raw = np.where(magnitude > lp.DIRECT, np.maximum(width - 1, 0), 0)
    return symbol.astype(np.int64), raw


def table_cost(rows, symbols):
    """(bits of the symbols under a per-scan table, table bytes after zlib), rows any non-negative ints."""
    if len(rows) == 0:
        return 0.0, 0
    _, rows = np.unique(rows, return_inverse=True)
    histogram = np.zeros((rows.max() + 1, SYMBOLS), np.int64)
    np.add.at(histogram, (rows, symbols + lp.SYMBOL_MAX), 1)
    bits = 0.0
    blobs = []
    for start in range(0, len(histogram), 255):
        part = histogram[start:start + 255]
        table, blob = lp._build_table(part, len(part))
        blobs.append(blob)
        pmf = table.pmfs.astype(np.float64) / 2.0 ** lp.TABLE_PRECISION
        used = np.nonzero(part)
        column = used[1] - lp.SYMBOL_MAX - table.offsets[used[0]]
        bits += float(-(part[used] * np.log2(pmf[used[0], column])).sum())
    return bits, len(zlib.compress(b''.join(blobs), 6))


def _seen_before(keys):
    """For each entry, how many earlier entries have the same key."""
    order = np.argsort(keys, kind='stable')
    start = np.r_[0, np.flatnonzero(np.diff(keys[order])) + 1]
    seen = np.empty(len(keys), np.int64)
    seen[order] = np.arange(len(keys)) - np.repeat(start, np.diff(np.r_[start, len(keys)]))
    return seen


def adaptive_bits(rows, symbols, increment=24, alphabet=32):
    """Bits under adaptive counts per row (each row starts uniform over ``alphabet`` symbols near 0
    plus the escapes; a coded symbol's count grows by ``increment``): no table is sent."""
    seen_symbol = _seen_before(rows.astype(np.int64) * SYMBOLS + symbols + lp.SYMBOL_MAX)
    seen_row = _seen_before(rows)
    p = (1.0 + increment * seen_symbol) / (alphabet + increment * seen_row)
    return float(-np.log2(p).sum())


def rebuilt_bits(rows, symbols, increment=32, alphabet=32, first=16):
    """Bits when each row's table is rebuilt from its counts so far whenever the row has coded
    ``first``, 2 ``first``, 4 ``first``... symbols (a few rebuilds a row instead of an update a symbol)."""
    total = 0.0
    for row in np.unique(rows):
        x = symbols[rows == row] + lp.SYMBOL_MAX
        t = np.arange(len(x))
        snapshot = np.where(t < first, 0, first * 2 ** np.floor(np.log2(np.maximum(t, first) / first)))
        snapshot = snapshot.astype(np.int64)
        seen = np.zeros((len(x) + 1, SYMBOLS), np.int32)
        np.add.at(seen, (t + 1, x), 1)
        seen = np.cumsum(seen, axis=0)
        p = (1.0 + increment * seen[snapshot, x]) / (alphabet + increment * snapshot)
        total += float(-np.log2(p).sum())
    return total


def cost(rows, values, adaptive=False):
    """dict: bits per point parts of coding ``values`` under context ``rows`` (per-scan tables)."""
    symbols, raw = symbols_and_raw(values)
    bits, table_bytes = table_cost(rows, symbols)
    result = dict(symbol_bits=bits, raw_bits=float(raw.sum()), table_bits=8.0 * table_bytes)
    result['total_bits'] = result['symbol_bits'] + result['raw_bits'] + result['table_bits']
    if adaptive:
        result['adaptive_bits'] = adaptive_bits(rows, symbols) + result['raw_bits']
    return result


# --- step 1: the codec's own symbols -------------------------------------------------------------

ROW_GROUPS = (('range', 0, 10), ('range_first', 10, 11), ('shape', 11, 17), ('azimuth_escape', 17, 19),
              ('elevation', 19, 21), ('corrected_flag', 21, 24), ('correction', 24, 25),
              ('intensity', 25, 133), ('intensity_first', 133, 134))


def breakdown(lay):
    n = len(lay['ranges'])
    rows = np.empty(n * lp._ENTRIES_PER_POINT, np.int16)
    values = np.empty(n * lp._ENTRIES_PER_POINT, np.int16)
    histogram = lp._new_histogram(lp.SPINNING_ROWS)
    count = lp._spinning_symbols(lay['ranges'], lay['azimuths'], lay['elevations'], lay['corrected'],
                                 lay['corrections'], lay['ranks'], lay['counts'], lay['azimuth_turn'],
                                 lay['azimuth_step'], lay['range_step'], rows, values, histogram)
    rows, values = rows[:count].astype(np.int64), values[:count].astype(np.int64)
    table, blob = lp._build_table(histogram, lp.SPINNING_ROWS)
    coded = rows >= 0
    pmf = table.pmfs.astype(np.float64) / 2.0 ** lp.TABLE_PRECISION
    bits = np.zeros(count)
    bits[coded] = -np.log2(pmf[rows[coded], values[coded] - table.offsets[rows[coded]]])
    bits[~coded] = -rows[~coded]
    # Raw chunks belong to the symbol before them.
    owner = np.maximum.accumulate(np.where(coded, np.arange(count), 0))
    owner_row = rows[owner]
    parts = {}
    for name, low, high in ROW_GROUPS:
        mine = (owner_row >= low) & (owner_row < high)
        parts[name] = float(bits[mine & coded].sum()) / n
        parts[name + '_raw'] = float(bits[mine & ~coded].sum()) / n
    geometry_rows = np.zeros(lp.SPINNING_ROWS, bool)
    geometry_rows[:25] = True
    zero = histogram.copy()
    zero[~geometry_rows] = 0
    parts['table_geometry'] = 8.0 * len(zlib.compress(lp._build_table(zero, lp.SPINNING_ROWS)[1], 6)) / n
    zero = histogram.copy()
    zero[geometry_rows] = 0
    parts['table_intensity'] = 8.0 * len(zlib.compress(lp._build_table(zero, lp.SPINNING_ROWS)[1], 6)) / n
    parts['table_all'] = 8.0 * len(zlib.compress(blob, 6)) / n
    parts['side_other'] = 8.0 * (4 * len(lay['counts']) + 2 * len(lay['counts']) + 24) / n
    parts.update(table_serializations(blob, n))
    return parts


def table_serializations(blob, n):
    """Bits per point of the same table serialized otherwise: row headers first, then the count
    levels (as they are, or as differences along each row), compressed with zlib 6 or 9 or LZMA."""
    import lzma
    headers, levels, deltas = [], [], []
    offset = 1
    for _ in range(lp.SPINNING_ROWS):
        _, length = lp._ROW.unpack_from(blob, offset)
        headers.append(blob[offset:offset + 4])
        offset += 4
        row = np.frombuffer(blob, np.uint8, length, offset).astype(np.int64)
        levels.append(row.astype(np.uint8).tobytes())
        deltas.append(np.diff(np.r_[0, row]).astype(np.uint8).tobytes())
        offset += length
    layouts = dict(as_sent=blob, headers_levels=b''.join(headers + levels),
                   headers_deltas=b''.join(headers + deltas))
    compressors = dict(zlib6=lambda data: zlib.compress(data, 6), zlib9=lambda data: zlib.compress(data, 9),
                       lzma=lambda data: lzma.compress(data, format=lzma.FORMAT_RAW,
                                                       filters=[{'id': lzma.FILTER_LZMA2, 'preset': 9}]))
    return {f'table_{name}_{how}': 8.0 * len(compress(data)) / n for name, data in layouts.items()
            for how, compress in compressors.items()}


# --- step 2: candidates --------------------------------------------------------------------------

def per_point(lay):
    """Per point (laser order): first-of-laser flag, the laser, previous values within the laser."""
    counts = lay['counts']
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    n = len(lay['ranges'])
    first = np.zeros(n, bool)
    first[starts] = True
    j = np.arange(n) - np.repeat(starts, counts)
    laser = np.repeat(np.arange(len(counts)), counts)

    def back(a, k):
        out = np.zeros_like(a)
        out[k:] = a[:-k]
        return out

    return dict(first=first, j=j, laser=laser, back=back)


LEVELS = lp._INTENSITY_LEVELS


def level(rank):
    return LEVELS[np.clip(rank, 0, 50)]


def size_class(v):
    m = np.abs(v)
    return np.select([m < 2, m < 4, m < 16], [m, 2, 3], 4)


def intensity_candidates(lay, pp):
    """Intensity residual costs (points within a laser; first points are the same in every candidate)."""
    rank = lay['ranks']
    R = lay['ranges']
    j, back = pp['j'], pp['back']
    inner = j >= 1
    p1 = back(rank, 1)
    p2 = np.where(j >= 2, back(rank, 2), p1)
    p3 = np.where(j >= 3, back(rank, 3), p2)
    rr = R - back(R, 1)
    rr1 = np.where(j >= 2, back(rr, 1), 0)
    jump = np.abs(rr) > 1
    trend = p2 - p1
    direction = np.where(trend < -2, 0, np.where(trend <= 2, 1, 2))
    distance = R * lay['range_step']
    dist_class = np.digitize(distance, [6.0, 12.0, 25.0])
    out = {}

    def add(name, rows, values):
        out[name] = cost(rows[inner], values[inner], adaptive=True)

    current = level(p1) + 18 * direction + 54 * jump
    add('current', current, rank - p1)
    add('current+distance4', current + 108 * dist_class, rank - p1)
    jump3 = np.where(np.abs(rr) <= 1, 0, np.where(np.abs(rr) <= 8, 1, 2))
    add('current_jump3', level(p1) + 18 * direction + 54 * jump3, rank - p1)
    add('current+prevjump', current + 108 * (np.abs(rr1) > 1), rank - p1)
    avg = (p1 + p2 + 1) // 2
    add('avg2_pred_level_jump', level(avg) + 18 * direction + 54 * jump, rank - avg)
    avg3 = (2 * p1 + p2 + p3 + 2) // 4
    add('avg3_pred_level_trend_jump', level(avg3) + 18 * direction + 54 * jump, rank - avg3)
    add('level_p1_x_level_p2_jump', level(p1) * 18 + level(p2) + 324 * jump, rank - p1)
    # Per-laser noise group: the laser's mean |rank - p1| in 4 classes (side information: 2 bits a laser).
    lasers = len(lay['counts'])
    noise = np.bincount(pp['laser'][inner], np.abs(rank - p1)[inner], lasers) / np.maximum(
        np.bincount(pp['laser'][inner], minlength=lasers), 1)
    edges = np.quantile(noise, [0.25, 0.5, 0.75])
    group = np.digitize(noise, edges)[pp['laser']]
    add('current+laser_noise4', current + 108 * group, rank - p1)
    # The laser's median rank subtracted from the previous value's level.
    median = np.array([np.median(rank[a:a + c]) if c else 0 for a, c in
                       zip(np.r_[0, np.cumsum(lay['counts'])[:-1]], lay['counts'])])
    relative = np.clip(np.rint(p1 - median[pp['laser']]).astype(np.int64), -6, 6) + 6
    add('rel_laser_median13_trend_jump', relative + 13 * direction + 39 * jump, rank - p1)
    # Fewer levels, more trend.
    d5 = np.select([trend < -6, trend < -2, trend <= 2, trend <= 6], [0, 1, 2, 3], 4)
    add('level_trend5_jump', level(p1) + 18 * d5 + 90 * jump, rank - p1)
    # Direct coding of the rank (no residual), context as current.
    add('direct_current', current, rank - 0)
    # The laser above: whether its intensity changes (by more than 4 ranks) between the azimuths of the
    # previous point and this one (a vertical edge of the texture), as a context.
    above_here, found_here = above_at(rank, lay, pp, lay['azimuths'])
    above_before, found_before = above_at(rank, lay, pp, back(lay['azimuths'], 1))
    edge = found_here & found_before & (np.abs(above_here - above_before) > 4)
    add('current+above_edge', current + 108 * edge, rank - p1)
    # A per-scan table for only 3 trend classes x jump with the level folded in coarsely (fewer rows).
    coarse = np.minimum(level(p1), 11)
    add('level12_trend_jump', coarse + 12 * direction + 36 * jump, rank - p1)
    # Adaptive models (no table sent): a smaller count increment, and tables rebuilt at doublings.
    symbols, raw = symbols_and_raw((rank - p1)[inner])
    for name, rows in (('current', current), ('level_trend5_jump', level(p1) + 18 * d5 + 90 * jump)):
        out[name]['adaptive16_bits'] = adaptive_bits(rows[inner], symbols, increment=16) + float(raw.sum())
        out[name]['rebuilt_bits'] = rebuilt_bits(rows[inner], symbols) + float(raw.sum())
    return out


def above_at(values, lay, pp, azimuths):
    """Per point, ``values`` of the point of the laser before (in coding order) whose azimuth is nearest
    ``azimuths``, and whether one lies within a firing step (a decoder can follow it with a pointer)."""
    counts, az, step = lay['counts'], lay['azimuths'], abs(lay['azimuth_step'])
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    out = np.zeros(len(az), np.int64)
    found = np.zeros(len(az), bool)
    for k in range(1, len(counts)):
        a, b, pa = starts[k], starts[k] + counts[k], starts[k - 1]
        if counts[k - 1] < 2:
            continue
        order = np.argsort(az[pa:pa + counts[k - 1]], kind='stable')
        sorted_az = az[pa:pa + counts[k - 1]][order]
        index = np.clip(np.searchsorted(sorted_az, azimuths[a:b]), 1, len(sorted_az) - 1)
        left = np.abs(azimuths[a:b] - sorted_az[index - 1]) < np.abs(sorted_az[index] - azimuths[a:b])
        chosen = np.where(left, index - 1, index)
        out[a:b] = values[pa:pa + counts[k - 1]][order[chosen]]
        found[a:b] = np.abs(azimuths[a:b] - sorted_az[chosen]) <= step
    return out, found


def shape_candidates(lay, pp):
    """The azimuth part of the shape symbol under finer contexts (kinds left out: they cost the same)."""
    az, j, back = lay['azimuths'], pp['j'], pp['back']
    inner = j >= 1
    residual = np.zeros(len(az), np.int64)
    residual[1:] = lp._wrap_array(az[1:] - az[:-1] - lay['azimuth_step'], lay['azimuth_turn'])
    residual[j == 0] = 0
    step = lay['azimuth_step']
    predicted = np.where(j > 0, back(az, 1) + step, 0) % lay['azimuth_turn']
    above, found = above_at(residual, lay, pp, predicted)

    def kind(v):
        half = step // 2
        return np.select([v == 0, v == -half, v == -half + 1, v == -step, np.abs(v) <= lp.SHAPE_SPAN],
                         [0, 1, 2, 3, 4], 5)

    p1 = kind(back(residual, 1))
    p2 = np.where(j >= 2, kind(back(residual, 2)), 0)
    a = np.where(found, kind(above), 6)
    sign = np.sign(back(residual, 1)) + 1
    far = (back(lay['ranges'], 1) * lay['range_step'] >= lp.REFERENCE_RANGE_M)
    out = {}

    def add(name, rows):
        out[name] = cost(rows[inner], residual[inner], adaptive=True)

    add('current', sign + 3 * far)
    add('prev1_class6', p1 + 6 * far)
    add('prev2_classes', p1 + 6 * p2 + 36 * far)
    add('prev1_above', p1 + 6 * a + 42 * far)
    add('prev2_above', p1 + 6 * p2 + 36 * a + 252 * far)
    return out


def range_candidates(lay, pp):
    R = lay['ranges']
    j, back = pp['j'], pp['back']
    inner = j >= 1
    rr = R - back(R, 1)
    rr1 = np.where(j >= 2, back(rr, 1), 0)
    rr2 = np.where(j >= 3, back(rr, 2), 0)
    askip = np.zeros(len(R), np.int64)
    az = lay['azimuths']
    askip[1:] = (lp._wrap_array(az[1:] - az[:-1] - lay['azimuth_step'], lay['azimuth_turn']) != 0)
    out = {}

    def add(name, rows, values):
        out[name] = cost(rows[inner], values[inner], adaptive=True)

    add('current', size_class(rr1) + 5 * askip, rr)
    add('two_prev_sizes', size_class(rr1) + 5 * size_class(rr2) + 25 * askip, rr)
    signed = np.sign(rr1) + 1
    add('signed_prev_size', size_class(rr1) + 5 * signed + 15 * askip, rr)
    # Linear extrapolation as a context: the previous residual's value when small (signed, clipped to
    # +-6), so the table learns the shift; the residual stays the codec's.
    clip = np.clip(rr1, -6, 6) + 6
    add('prev_residual13', clip + 13 * askip, rr)
    add('prev_residual13_x_size2', clip + 13 * size_class(rr2) + 65 * askip, rr)
    # Linear prediction 2r1 - r2 (without re-choosing the values: an upper bound on the loss).
    add('linear_pred_ctx_size', size_class(rr1) + 5 * askip, rr - rr1)
    # Predicted from the laser above too (without re-choosing the values: the codec's ranges favour
    # the previous range): the previous range plus the laser above's change between the previous
    # point's azimuth and this one's (a plane through both lasers), half that change, and LOCO-I's
    # median edge detector of the previous range, the laser above here and there. Where the laser
    # above has no point within a firing step, the previous range.
    above_here, found_here = above_at(R, lay, pp, az)
    above_there, found_there = above_at(R, lay, pp, back(az, 1))
    both = inner & found_here & found_there
    change = np.where(both, above_here - above_there, 0)
    add('planar_laser_above', size_class(rr1) + 5 * askip, rr - change)
    add('half_planar_laser_above', size_class(rr1) + 5 * askip, rr - change // 2)
    r1 = back(R, 1)
    median = np.where(above_there >= np.maximum(r1, above_here), np.minimum(r1, above_here),
                      np.where(above_there <= np.minimum(r1, above_here), np.maximum(r1, above_here),
                               r1 + above_here - above_there))
    add('median_edge_laser_above', size_class(rr1) + 5 * askip, np.where(both, R - median, rr))
    # Escapes re-coded against the laser above at the same azimuth when that is cheaper: a marker symbol
    # (the unused widest escape class) in the range row, then the residual to the laser above's range
    # under a row of its own.
    alternative = R - above_here
    switch = inner & found_here & (np.abs(rr) > lp.DIRECT) & (np.abs(alternative) * 4 < np.abs(rr))
    rows = (size_class(rr1) + 5 * askip)[inner]
    symbols, raw = symbols_and_raw(rr[inner])
    symbols = np.where(switch[inner], lp.SYMBOL_MAX, symbols)
    raw = np.where(switch[inner], 0, raw)
    bits, table_bytes = table_cost(rows, symbols)
    alt_symbols, alt_raw = symbols_and_raw(alternative[switch])
    alt_bits, alt_bytes = table_cost(np.zeros(len(alt_symbols), np.int64), alt_symbols)
    out['escape_to_laser_above'] = dict(
        symbol_bits=bits + alt_bits, raw_bits=float(raw.sum() + alt_raw.sum()),
        table_bits=8.0 * (table_bytes + alt_bytes), switched=int(switch.sum()))
    out['escape_to_laser_above']['total_bits'] = sum(out['escape_to_laser_above'][k] for k in (
        'symbol_bits', 'raw_bits', 'table_bits'))
    return out


def chosen_ranges(ranges, low, high, counts, mode):
    """The ranges the encoder would code (within ``low..high`` where that is not empty, else the
    codec's own) and their residuals, each point predicted by ``mode`` from the values chosen before
    it on its laser: 0 the previous range (the codec), 1 the mean of the previous two, 2 (2 r1 + r2 +
    r3) / 4, 3 the mean of the previous four, 4 (3 r1 + r2) / 4, 5 whichever of the previous range and
    the mean of two did better lately (decaying absolute errors). Means restart after a jump."""
    n = ranges.shape[0]
    out = np.empty(n, np.int64)
    residuals = np.zeros(n, np.int64)
    point = 0
    first_range = 0
    for laser in range(counts.shape[0]):
        run = 0
        error_last = error_mean = 0.0
        for j in range(counts[laser]):
            i = point
            point += 1
            if j == 0:
                predicted = first_range
            elif mode == 0 or run < 2:
                predicted = out[i - 1]
            elif mode == 1 or (mode in (2, 3) and run < 4):
                predicted = (out[i - 1] + out[i - 2] + 1) // 2
            elif mode == 2:
                predicted = (2 * out[i - 1] + out[i - 2] + out[i - 3] + 2) // 4
            elif mode == 3:
                predicted = (out[i - 1] + out[i - 2] + out[i - 3] + out[i - 4] + 2) // 4
            elif mode == 4:
                predicted = (3 * out[i - 1] + out[i - 2] + 2) // 4
            else:
                predicted = (out[i - 1] + out[i - 2] + 1) // 2 if error_mean < error_last else out[i - 1]
            value = min(max(predicted, low[i]), high[i]) if low[i] <= high[i] else ranges[i]
            out[i] = value
            residuals[i] = value - predicted
            if j == 0:
                run = 1
                first_range = value
                continue
            if run >= 2:
                error_last = 0.7 * error_last + abs(value - out[i - 1])
                error_mean = 0.7 * error_mean + abs(value - (out[i - 1] + out[i - 2] + 1) // 2)
            if abs(value - out[i - 1]) > 3:
                run = 1
                error_last = error_mean = 0.0
            else:
                run += 1
    return out, residuals


if numba is not None:
    chosen_ranges = numba.njit(cache=False)(chosen_ranges)

RANGE_PREDICTORS = ('previous', 'mean2', 'weighted3', 'mean4', 'weighted2', 'switched')


def range_predictors(lay, pp):
    """Range residual costs of smoothing predictors under the codec's range contexts, the ranges
    re-chosen within the bound against each (mode 0 reproduces the codec's ranges)."""
    lay = dict(lay, laser=pp['laser'])
    low, high = range_intervals(lay, lay['max_error'])
    j = pp['j']
    inner = j >= 1
    askip = np.zeros(len(j), np.int64)
    az = lay['azimuths']
    askip[1:] = lp._wrap_array(az[1:] - az[:-1] - lay['azimuth_step'], lay['azimuth_turn']) != 0
    out = {'one_range_share': dict(points=float(np.count_nonzero(high == low)),
                                   empty=float(np.count_nonzero(high < low)))}
    for mode, name in enumerate(RANGE_PREDICTORS):
        chosen, residuals = chosen_ranges(lay['ranges'], low, high, lay['counts'], mode)
        if mode == 0:
            assert np.array_equal(chosen, lay['ranges'])
        last = np.where(j >= 2, pp['back'](residuals, 1), 0)
        out[name] = cost((size_class(last) + 5 * askip)[inner], residuals[inner])
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=Path('../shared/data'))
    parser.add_argument('--scans', type=int, default=16)
    parser.add_argument('--max-error', type=float, default=0.01)
    parser.add_argument('--out', type=Path, default=Path('research/results/lidar_context_probe_kitti.json'))
    args = parser.parse_args()
    totals = {}
    points = 0
    per_scan = []
    for path in scan_paths(args.data, args.scans):
        scan = read_points(path)
        lay = layout(scan, args.max_error)
        pp = per_point(lay)
        n = len(lay['ranges'])
        points += n
        result = dict(scan=str(path.relative_to(args.data)), points=n, breakdown=breakdown(lay),
                      intensity=intensity_candidates(lay, pp), range=range_candidates(lay, pp),
                      shape=shape_candidates(lay, pp), range_predictors=range_predictors(lay, pp))
        per_scan.append(result)
        for group in ('intensity', 'range', 'shape', 'range_predictors'):
            for name, value in result[group].items():
                entry = totals.setdefault(group, {}).setdefault(name, {})
                for key, bits in value.items():
                    entry[key] = entry.get(key, 0.0) + bits
        for key, bpp in result['breakdown'].items():
            totals.setdefault('breakdown', {})[key] = totals.get('breakdown', {}).get(key, 0.0) + bpp * n
        print(path.name, n, flush=True)
    summary = {group: {name: {k: v / points for k, v in value.items()} for name, value in entries.items()}
               for group, entries in totals.items() if group != 'breakdown'}
    summary['breakdown'] = {k: v / points for k, v in totals['breakdown'].items()}
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(max_error=args.max_error, scans=len(per_scan), points=points,
                                        bits_per_point=summary, per_scan=per_scan), indent=1))


if __name__ == '__main__':
    main()
