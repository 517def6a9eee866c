"""Would predicting a LiDAR point's range from the previous scan, moved by the ego-motion, pay?

The predictive codec (``codec/lidar_predictive.py``) predicts each point's range from the point before
it on the same laser. This probe asks what the previous scan could add, before anything is built:

1. Both scans are laid out as the codec lays them out (laser order, its azimuth turn and firing step,
   its laser heights and range step ``2 max_error``) and the codec's own spherical integers are taken
   for the current scan (``_choose_spherical``: the angles it codes and the ranges it picks).
2. The current scan is registered to the previous one (``geometry.ego_motion.ScanRegistration``,
   small_gicp); the previous scan's points are moved into the current frame and binned into a range
   image by (laser, firing cell), the nearest return of a cell kept (what occludes what, seen from
   the current pose). A point's *inter* prediction is the range of its cell (else of a neighbouring
   cell on the same laser; else none and the intra prediction stands).
3. Each range residual is taken the way the codec takes it: the encoder spends the bound's slack by
   picking, within the ranges that keep the point within ``max_error`` along its coded angles, the one
   nearest the prediction. The intra residual is the codec's own; the inter residual is the same
   choice against the inter prediction.
4. Costs are empirical entropies of this scan's residuals (what a per-scan table gives, table bytes
   left out): order 0, and under the codec's range contexts (previous residual's size x azimuth skip,
   first point of a laser). Schemes: (a) intra, (b) inter, (c) an oracle choosing per block of 32 points
   with 1 bit of side information a block, (d) the intra residual with the inter prediction as a
   context (the sign and size of inter minus intra prediction: no side information), (e) the inter
   residual under the same kind of context from the intra prediction.

Range only: the angles, the correction flags and the tables cost the same either way, so savings are
also given as a share of the codec's whole geometry payload (encoded without intensity).

    .venv/bin/python research/lidar_interscan_probe.py [--pairs 20] [--max-error 0.01]

Writes research/results/lidar_interscan_probe_kitti_raw.json.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.codec import lidar_predictive as lp
from xmodal_compress_ros.geometry.ego_motion import ScanRegistration

DEFAULT_DATA = Path('../shared/data/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync/velodyne_points/data')
BLOCK = 32


def read_scan(path):
    points = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    xyz = points[:, :3]
    keep = np.isfinite(xyz).all(axis=1) & (np.abs(xyz).sum(axis=1) > 0)
    return xyz[keep]


def codec_layout(xyz, max_error):
    """The codec's layout and spherical integers of a scan (as ``_encode_spinning`` computes them)."""
    xyz64 = xyz.astype(np.float64)
    correction_step, range_step, turn = lp._steps(max_error, xyz64)
    order, counts = lp._laser_order(xyz64, None)
    if order is not None:
        xyz64 = xyz64[order]
    heights = lp._laser_heights(xyz64, counts)
    same_laser, ends = lp._sampled_azimuths(xyz64, counts)
    azimuth_turn = lp._azimuth_turn(same_laser, ends, turn)
    azimuth_step = lp._azimuth_step(same_laser, ends, azimuth_turn)
    ranges, azimuths, elevations, corrected, corrections, _, within = lp._choose_spherical(
        xyz64, counts, heights, range_step, azimuth_turn, turn, azimuth_step, correction_step, max_error,
        lp._choice_buffers(len(xyz64), scratch=False))
    laser = np.repeat(np.arange(len(counts)), counts)
    return dict(xyz=xyz64, order=order, counts=counts, laser=laser, heights=heights, range_step=range_step,
                azimuth_turn=azimuth_turn, elevation_turn=turn, azimuth_step=azimuth_step, ranges=ranges,
                azimuths=azimuths, elevations=elevations, corrected=corrected, corrections=corrections,
                correction_step=correction_step, max_error=max_error, within=within)


def range_intervals(lay, max_error):
    """(low, high) integer ranges keeping each point within the bound along its coded angles
    (vectorised ``_range_interval``; low > high where none does)."""
    slack = max_error * 0.999
    az = 2.0 * np.pi * lay['azimuths'] / lay['azimuth_turn']
    el = 2.0 * np.pi * lay['elevations'] / lay['elevation_turn']
    step = lay['range_step']
    height = lay['heights'][lay['laser']] / 1000.0
    xyz = lay['xyz']
    low = np.full(len(xyz), -1e18)
    high = np.full(len(xyz), 1e18)
    for offset, u in ((xyz[:, 0], np.cos(el) * np.cos(az) * step),
                      (xyz[:, 1], np.cos(el) * np.sin(az) * step),
                      (xyz[:, 2] - height, np.sin(el) * step)):
        tiny = np.abs(u) < 1e-12
        with np.errstate(divide='ignore', invalid='ignore'):
            a, b = (offset - slack) / u, (offset + slack) / u
        a, b = np.minimum(a, b), np.maximum(a, b)
        a = np.where(tiny, np.where(np.abs(offset) > slack, 1e18, -1e18), a)
        b = np.where(tiny, np.where(np.abs(offset) > slack, -1e18, 1e18), b)
        low, high = np.maximum(low, a), np.minimum(high, b)
    return np.ceil(low).astype(np.int64), np.floor(high).astype(np.int64)


def intra_predictions(lay):
    """The codec's range prediction of each point: the point before it on its laser, a laser's first
    point from the first point of the laser before (0 for the very first)."""
    ranges, counts = lay['ranges'], lay['counts']
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    first = np.zeros(len(ranges), bool)
    first[starts] = True
    prediction = np.empty_like(ranges)
    prediction[1:] = ranges[:-1]
    prediction[starts[1:]] = ranges[starts[:-1]]
    prediction[0] = 0
    return prediction, first


def cell_of(azimuth_index, lay):
    cells = int(round(lay['azimuth_turn'] / lay['azimuth_step']))
    return np.rint(azimuth_index / lay['azimuth_step']).astype(np.int64) % cells, cells


def laser_elevations(lay):
    """Each laser's elevation (radians, seen from its origin): the median of its coded elevations."""
    angle = 2.0 * np.pi * lay['elevations'] / lay['elevation_turn']
    starts = np.concatenate(([0], np.cumsum(lay['counts'])))
    return np.array([np.median(angle[a:b]) if b > a else np.nan for a, b in zip(starts[:-1], starts[1:])])


def inter_predictions(previous, current, T_prev_cur, reproject):
    """Range index predicted for each current point from the previous scan moved into its frame
    (the nearest return of its (laser, cell), else of cell +-1, else -1). The previous points keep
    their laser index, or with ``reproject`` go to the current laser whose ray elevation is nearest
    theirs as seen from the current pose (within half the spacing of the lasers)."""
    inverse = np.linalg.inv(T_prev_cur)
    moved = previous['xyz'] @ inverse[:3, :3].T + inverse[:3, 3]
    lasers = len(current['counts'])
    heights = current['heights'] / 1000.0
    if reproject:
        elevations = laser_elevations(current)
        rho = np.hypot(moved[:, 0], moved[:, 1])
        laser = np.empty(len(moved), np.int64)
        error = np.empty(len(moved))
        for a in range(0, len(moved), 16384):
            seen = np.arctan2(moved[a:a + 16384, 2:3] - heights[None, :], rho[a:a + 16384, None])
            mismatch = np.abs(seen - elevations[None, :])
            mismatch[:, np.isnan(elevations)] = np.inf
            laser[a:a + 16384] = np.argmin(mismatch, axis=1)
            error[a:a + 16384] = mismatch[np.arange(len(seen)), laser[a:a + 16384]]
        spacing = np.nanmedian(np.abs(np.diff(np.sort(elevations[np.isfinite(elevations)]))))
        keep = error <= spacing / 2
    else:
        laser = previous['laser']
        keep = laser < lasers
    moved, laser = moved[keep], laser[keep]
    height = heights[laser]
    distance = np.sqrt(moved[:, 0] ** 2 + moved[:, 1] ** 2 + (moved[:, 2] - height) ** 2)
    azimuth = np.arctan2(moved[:, 1], moved[:, 0]) % (2.0 * np.pi) * current['azimuth_turn'] / (2.0 * np.pi)
    cell, cells = cell_of(azimuth, current)
    image = np.full(lasers * cells, np.inf)
    np.minimum.at(image, laser * cells + cell, distance)
    own, _ = cell_of(current['azimuths'], current)
    found = np.full(len(own), np.inf)
    for shift in (0, -1, 1):
        look = image[current['laser'] * cells + (own + shift) % cells]
        found = np.where(np.isinf(found), look, found)
    prediction = np.where(np.isfinite(found), np.rint(found / current['range_step']), -1).astype(np.int64)
    return prediction, np.isfinite(found)


def size_class(values):
    magnitude = np.abs(values)
    return np.select([magnitude < 2, magnitude < 4, magnitude < 16], [magnitude, 2, 3], 4)


def codec_rows(residuals, first, azimuth_skip, counts):
    """The codec's range row of each point from a residual sequence (previous residual on the laser)."""
    last = np.zeros_like(residuals)
    last[1:] = residuals[:-1]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    last[starts] = 0
    return np.where(first, 10, size_class(last) + 5 * azimuth_skip)


def code_lengths(symbols, rows):
    """Per point, -log2 of the empirical probability of its symbol within its row (this scan's table)."""
    key = rows.astype(np.int64) * (1 << 32) + (symbols.astype(np.int64) + (1 << 31))
    _, inverse, count = np.unique(key, return_inverse=True, return_counts=True)
    _, row_inverse, row_count = np.unique(rows, return_inverse=True, return_counts=True)
    return np.log2(row_count[row_inverse] / count[inverse])


def table_entries(symbols, rows):
    """Non-zero histogram entries (what a payload's tables grow with)."""
    key = rows.astype(np.int64) * (1 << 32) + (symbols.astype(np.int64) + (1 << 31))
    return len(np.unique(key))


def oracle_blocks(length_a, length_b, block=BLOCK):
    """Bits when an oracle picks the cheaper of two code lengths per block, plus 1 bit a block."""
    n = len(length_a)
    pad = (-n) % block
    a = np.concatenate((length_a, np.zeros(pad))).reshape(-1, block).sum(axis=1)
    b = np.concatenate((length_b, np.zeros(pad))).reshape(-1, block).sum(axis=1)
    choice_b = b < a
    return float(np.minimum(a, b).sum() + len(a)), float(choice_b.mean()), choice_b


#: The inter-scan predictors: (previous scan moved by the registered motion?, laser by elevation?).
PREDICTORS = {'identity': (False, False), 'ego_same_laser': (True, False), 'ego_reprojected': (True, True)}


def pair_costs(previous, current, T_prev_cur, max_error):
    n = len(current['ranges'])
    intra_pred, first = intra_predictions(current)
    intra = current['ranges'] - intra_pred
    low, high = range_intervals(current, max_error)
    feasible = low <= high
    # Sanity: where the codec took the fast path, its range is the intra prediction clamped to the interval.
    fast = feasible & ~current['corrected']
    agree = float(np.mean(np.clip(intra_pred[fast], low[fast], high[fast]) == current['ranges'][fast]))
    azimuths = current['azimuths']
    skip = np.zeros(n, np.int64)
    skip[1:] = lp._wrap_array(azimuths[1:] - azimuths[:-1] - current['azimuth_step'],
                              current['azimuth_turn']) != 0
    skip[first] = 0
    zeros = np.zeros(n, np.int64)
    rows_intra = codec_rows(intra, first, skip, current['counts'])
    bits = {'a_intra_order0': float(code_lengths(intra, zeros).sum()) / n,
            'a_intra_codec_contexts': float(code_lengths(intra, rows_intra).sum()) / n}
    entries = {'a_intra_codec_contexts': table_entries(intra, rows_intra)}
    result = dict(points=n, intra_rule_agreement=agree, exact_intra_share=float(np.mean(intra == 0)),
                  bits=bits, table_entries=entries, predictors={})
    for name, (moved, reproject) in PREDICTORS.items():
        motion = T_prev_cur if moved else np.eye(4)
        inter_pred, covered = inter_predictions(previous, current, motion, reproject)
        chosen = np.where(feasible, np.clip(inter_pred, low, high), current['ranges'])
        inter = np.where(covered, chosen - inter_pred, intra)
        rows_inter = codec_rows(inter, first, skip, current['counts'])
        # (d), (e): the other prediction as a context, by the sign and size of their difference.
        difference = np.where(covered, inter_pred - intra_pred, 0)
        bucket = np.where(covered, np.sign(difference) * size_class(difference) + 4, 9)
        lengths = {
            'a_intra_order0': code_lengths(intra, zeros),
            'b_inter_order0': code_lengths(inter, zeros),
            'a_intra_codec_contexts': code_lengths(intra, rows_intra),
            'b_inter_codec_contexts': code_lengths(inter, rows_inter),
        }
        bits[f'{name}/b_inter_order0'] = float(lengths['b_inter_order0'].sum()) / n
        bits[f'{name}/b_inter_codec_contexts'] = float(lengths['b_inter_codec_contexts'].sum()) / n
        bits[f'{name}/d_intra_given_inter_context'] = float(
            code_lengths(intra, rows_intra * 10 + bucket).sum()) / n
        bits[f'{name}/e_inter_given_intra_context'] = float(
            code_lengths(inter, rows_inter * 10 + bucket).sum()) / n
        entries[f'{name}/b_inter_codec_contexts'] = table_entries(inter, rows_inter)
        entries[f'{name}/d_intra_given_inter_context'] = table_entries(intra, rows_intra * 10 + bucket)
        entries[f'{name}/e_inter_given_intra_context'] = table_entries(inter, rows_inter * 10 + bucket)
        shares = {}
        for tag, (a, b) in {'order0': ('a_intra_order0', 'b_inter_order0'),
                            'codec_contexts': ('a_intra_codec_contexts', 'b_inter_codec_contexts')}.items():
            total, share, choice = oracle_blocks(lengths[a], lengths[b])
            # Once more with tables of the residuals the oracle picked (a real coder's would be those).
            pick = np.repeat(choice, BLOCK)[:n]
            mixed = np.where(pick, inter, intra)
            rows = zeros if tag == 'order0' else codec_rows(mixed, first, skip, current['counts'])
            refit = code_lengths(mixed, rows).sum() + len(choice)
            bits[f'{name}/c_oracle_block{BLOCK}_{tag}'] = float(min(total, refit)) / n
            shares[tag] = share
        result['predictors'][name] = dict(coverage=float(covered.mean()), oracle_inter_block_share=shares,
                                          exact_inter_share=float(np.mean(inter[covered] == 0)))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--pairs', type=int, default=20)
    parser.add_argument('--first', type=int, default=0)
    parser.add_argument('--max-error', type=float, default=0.01)
    parser.add_argument('--out', type=Path,
                        default=Path('research/results/lidar_interscan_probe_kitti_raw.json'))
    args = parser.parse_args(argv)
    files = sorted(args.data.glob('*.bin'))[args.first:args.first + args.pairs + 1]
    if len(files) < 2:
        sys.exit(f'need at least 2 scans in {args.data}')
    registration = ScanRegistration()
    rows, previous = [], None
    for path in files:
        xyz = read_scan(path)
        T = registration.register(xyz)
        ok = registration.last.ok
        current = codec_layout(xyz, args.max_error)
        geometry_bits = len(lp.encode(xyz, None, args.max_error).payload) * 8 / len(xyz)
        if previous is not None:
            start = time.perf_counter()
            row = pair_costs(previous, current, T, args.max_error)
            row.update(scan=path.stem, registered=ok, translation_m=float(np.linalg.norm(T[:3, 3])),
                       rotation_deg=float(math.degrees(math.acos(min(1.0, (np.trace(T[:3, :3]) - 1) / 2)))),
                       lasers=(len(previous['counts']), len(current['counts'])), geometry_bpp=geometry_bits,
                       probe_s=time.perf_counter() - start)
            rows.append(row)
            bits = row['bits']
            print(f"{path.stem} move {row['translation_m']:.2f} m geometry {geometry_bits:.3f} intra "
                  f"{bits['a_intra_codec_contexts']:.3f}; " + '; '.join(
                      f"{name}: inter {bits[f'{name}/b_inter_codec_contexts']:.3f} "
                      f"oracle {bits[f'{name}/c_oracle_block{BLOCK}_codec_contexts']:.3f} "
                      f"d {bits[f'{name}/d_intra_given_inter_context']:.3f}" for name in PREDICTORS),
                  flush=True)
        previous = current
    names = rows[0]['bits'].keys()
    mean_bits = {name: float(np.mean([r['bits'][name] for r in rows])) for name in names}
    geometry = float(np.mean([r['geometry_bpp'] for r in rows]))
    reference = mean_bits['a_intra_codec_contexts']
    saving = {name: {'bits_per_point': reference - value,
                     'share_of_range_bits': (reference - value) / reference,
                     'share_of_geometry_bits': (reference - value) / geometry}
              for name, value in mean_bits.items() if 'order0' not in name}
    reference0 = mean_bits['a_intra_order0']
    saving.update({name: {'bits_per_point': reference0 - value, 'share_of_range_bits': (reference0 - value)
                          / reference0, 'share_of_geometry_bits': (reference0 - value) / geometry}
                   for name, value in mean_bits.items() if 'order0' in name})
    summary = dict(pairs=len(rows), max_error=args.max_error, block=BLOCK, geometry_bpp=geometry,
                   range_bits_per_point=mean_bits, saving_against_intra=saving,
                   coverage={name: float(np.mean([r['predictors'][name]['coverage'] for r in rows]))
                             for name in PREDICTORS},
                   # Table growth of a context split, at one byte a histogram entry (the payload's
                   # count format before zlib): bits per point the split must beat.
                   extra_table_bits_per_point={name: float(np.mean([
                       8.0 * (r['table_entries'][name] - r['table_entries']['a_intra_codec_contexts'])
                       / r['points'] for r in rows])) for name in rows[0]['table_entries'] if '/' in name},
                   intra_rule_agreement=float(np.mean([r['intra_rule_agreement'] for r in rows])),
                   translation_m_mean=float(np.mean([r['translation_m'] for r in rows])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(summary=summary, pairs=rows), indent=1, default=int))
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    main()
