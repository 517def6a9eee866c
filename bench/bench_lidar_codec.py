"""LiDAR codecs side by side on every full KITTI scan, at the same per-coordinate error bound.

On one CPU core (the process is pinned to one), for each bound (default 2 mm, 1 cm, 2 cm) and
every full scan of ``kitti_raw`` (50) and ``kitti_object`` (13; not ``kitti_object_fov``, which
is cut to the camera):

* ``predictive``: this project's codec (``LidarCodecConfig(max_error=bound)``), timed around
  ``encode_scan`` (which includes the encoder's own reconstruction) and ``decode_scan``;
* ``draco-kdtree`` and ``draco-sequential``: DracoPy at the fewest quantization bits whose grid
  step meets the bound (speed 3 = compression level 7, kd-tree; speed 10 = level 0, sequential);
* ``cloudini``: the ``pureini`` wheel (CloudINI format), lossy fields at resolution 2 * bound,
  ZSTD, intensity as a lossless uint8 field;
* ``zstd-lossless``: point_cloud_transport's zstd plugin sends the PointCloud2 data zstd-compressed
  (x, y, z, intensity float32; level 3 here): lossless, the same at every bound.

Per codec and bound: bits per point of geometry and of intensity (8-bit codes; for each codec the
size with intensity minus the size without), maximum and RMS coordinate error (metres, per axis,
against the float32 input), encode and decode p50 / p95 in ms (wall) and p50 of the thread's CPU
time (the better estimate of an idle core on a loaded machine). Prints a table and writes
``bench/results/lidar_codec_<tag>.json``.

With ``--baseline REV`` it instead times the predictive codec of this checkout against the one of
git revision REV, side by side in one process (REV's package is extracted with ``git archive`` and
imported under another name), on one core, both on each scan in turn (which goes first alternates):
encode and decode thread CPU time per scan (the median over the rounds), and whether the two write
the same payload bytes and decode the same points. Writes
``bench/results/lidar_codec_speed_<tag>.json``.

With ``--shuffle`` every scan's points are shuffled first (the same permutation for every codec): a
cloud whose order no longer shows its lasers, as a voxel filter or a merge leaves it. With
``--frustum`` every scan is cut to its camera's view first (``frustum_only``'s cut, the scan's
calibration from the data): the stream that conditioning alone needs. With ``--baseline`` the
JSON also gives both codecs' bits per point and the ratio of their bytes.

    python bench/bench_lidar_codec.py [--data ../shared/data] [--bounds 0.002 0.01 0.02] [--limit N]
    python bench/bench_lidar_codec.py --baseline HEAD~3 --bounds 0.01 [--rounds 5]
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import math
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.codec import lidar_predictive
from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig, decode_scan, encode_scan, frustum_mask
from xmodal_compress_ros.data.pointfiles import read_points

ZSTD_LEVEL = 3


def full_scans(root: Path):
    """(name, points) of every full KITTI scan: the object frames, then the raw drive."""
    for split in ('training', 'testing'):
        for path in sorted((root / 'kitti_object' / split / 'velodyne').glob('*.bin')):
            yield f'object/{split}/{path.stem}', read_points(path)
    for path in sorted((root / 'kitti_raw').glob('*/*_sync/velodyne_points/data/*.bin')):
        yield f'raw/{path.stem}', read_points(path)


def intensity_codes(points: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(points[:, 3].astype(np.float64), 0, 1) * 255).astype(np.uint8)


class Clock:
    """Wall and this thread's CPU milliseconds of calls; CPU time is the better estimate of an idle
    core on a loaded machine (it leaves out the waits for the CPU, not the cache and SMT sharing)."""

    def __init__(self):
        self.cpu_ms = {}

    def __call__(self, function, name='encode'):
        wall, cpu = time.perf_counter(), time.thread_time()
        result = function()
        self.cpu_ms[name] = (time.thread_time() - cpu) * 1e3
        return result, (time.perf_counter() - wall) * 1e3


clock = Clock()


def timings(encode_ms, decode_ms):
    return dict(encode_ms=encode_ms, decode_ms=decode_ms, encode_cpu_ms=clock.cpu_ms['encode'],
                decode_cpu_ms=clock.cpu_ms['decode'])


def errors(decoded: np.ndarray, original: np.ndarray):
    difference = np.abs(decoded.astype(np.float64) - original.astype(np.float64))
    return float(difference.max()), float(np.sqrt(np.mean(difference ** 2)))


def run_predictive(points, bound):
    config = LidarCodecConfig(max_error=bound)
    encoded, encode_ms = clock(lambda: encode_scan(points, config))
    decoded, decode_ms = clock(lambda: decode_scan(encoded.payload, encoded.num_points, config), 'decode')
    geometry = encode_scan(points, LidarCodecConfig(max_error=bound, keep_intensity=False))
    # The coded order, from the same inputs (whether a cloud out of laser order goes by elevation bands
    # or by the grid depends on its intensity's bits too).
    order = lidar_predictive.encode(points[:, :3].copy(), intensity_codes(points), bound).order
    max_error, rms = errors(decoded[:, :3], points[order, :3])
    return dict(bytes=len(encoded.payload), geometry_bytes=len(geometry.payload), max_error=max_error,
                rms_error=rms, **timings(encode_ms, decode_ms))


def draco_bits(points: np.ndarray, bound: float) -> int:
    """Fewest quantization bits whose grid step (extent / (2**bits - 1)) is at most 2 * bound."""
    extent = float((points[:, :3].max(0) - points[:, :3].min(0)).max())
    return min(30, max(1, math.ceil(math.log2(extent / (2 * bound) + 1))))


def run_draco(points, bound, level):
    import DracoPy

    xyz = points[:, :3]
    bits = draco_bits(points, bound)
    origin = xyz.min(0)
    extent = float((xyz.max(0) - origin).max())
    options = dict(quantization_bits=bits, compression_level=level, quantization_origin=origin,
                   quantization_range=extent)
    attributes = {0: intensity_codes(points)[:, None]}
    payload, encode_ms = clock(lambda: DracoPy.encode(xyz, generic_attributes=attributes, **options))
    cloud, decode_ms = clock(lambda: DracoPy.decode(payload), 'decode')
    method = payload[8]  # Draco header: 0 sequential, 1 kd-tree
    geometry = DracoPy.encode(xyz, **options)
    # Draco reconstructs each point on its grid (and reorders, dropping duplicates): the error of a
    # point is its distance to its grid point.
    step = np.float64(np.float32(extent)) / ((1 << bits) - 1)
    grid = origin + np.rint((xyz - origin) / step) * step
    max_error, rms = errors(grid, xyz)
    decoded_points = len(np.asarray(cloud.points))
    return dict(bytes=len(payload), geometry_bytes=len(geometry), max_error=max_error, rms_error=rms,
                quantization_bits=bits, method=int(method), decoded_points=decoded_points,
                **timings(encode_ms, decode_ms))


def cloudini_cloud(points, with_intensity):
    if not with_intensity:
        return np.ascontiguousarray(points[:, :3]).tobytes(), 12
    layout = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('i', 'u1'), ('pad', 'u1', 3)])
    cloud = np.zeros(len(points), layout)
    cloud['x'], cloud['y'], cloud['z'] = points[:, 0], points[:, 1], points[:, 2]
    cloud['i'] = intensity_codes(points)
    return cloud.tobytes(), 16


def run_cloudini(points, bound):
    import pureini

    resolution = 2 * bound * (1 - 1e-6)

    def encoder(with_intensity):
        fields = [pureini.PointField(name, 4 * k, pureini.FieldType.FLOAT32, resolution)
                  for k, name in enumerate('xyz')]
        if with_intensity:
            fields.append(pureini.PointField('intensity', 12, pureini.FieldType.UINT8, None))
        data, step = cloudini_cloud(points, with_intensity)
        info = pureini.EncodingInfo(fields, len(points), 1, step, pureini.EncodingOptions.LOSSY,
                                    pureini.CompressionOption.ZSTD)
        return pureini.PointcloudEncoder(info), data

    coder, data = encoder(True)
    payload, encode_ms = clock(lambda: coder.encode(data))
    (raw, _), decode_ms = clock(lambda: pureini.PointcloudDecoder().decode(payload), 'decode')
    decoded = np.frombuffer(raw, '<f4').reshape(-1, 4)[:, :3]
    geometry_coder, geometry_data = encoder(False)
    max_error, rms = errors(decoded, points[:, :3])
    return dict(bytes=len(payload), geometry_bytes=len(geometry_coder.encode(geometry_data)),
                max_error=max_error, rms_error=rms, **timings(encode_ms, decode_ms))


def run_zstd(points, _bound):
    from backports import zstd

    data = np.ascontiguousarray(points[:, :4], np.float32).tobytes()
    payload, encode_ms = clock(lambda: zstd.compress(data, ZSTD_LEVEL))
    _, decode_ms = clock(lambda: zstd.decompress(payload), 'decode')
    geometry = zstd.compress(np.ascontiguousarray(points[:, :3]).tobytes(), ZSTD_LEVEL)
    return dict(bytes=len(payload), geometry_bytes=len(geometry), max_error=0.0, rms_error=0.0,
                **timings(encode_ms, decode_ms))


CODECS = {
    'predictive': run_predictive,
    'draco-kdtree': lambda points, bound: run_draco(points, bound, 7),
    'draco-sequential': lambda points, bound: run_draco(points, bound, 0),
    'cloudini': run_cloudini,
    'zstd-lossless': run_zstd,
}


def summarize(rows):
    points = np.array([r['points'] for r in rows], np.float64)

    def bpp(key):
        return float(np.sum([r[key] for r in rows]) * 8 / points.sum())

    encode = [r['encode_ms'] for r in rows]
    decode = [r['decode_ms'] for r in rows]
    encode_cpu = [r['encode_cpu_ms'] for r in rows]
    decode_cpu = [r['decode_cpu_ms'] for r in rows]
    return dict(scans=len(rows), geometry_bpp=bpp('geometry_bytes'),
                intensity_bpp=bpp('bytes') - bpp('geometry_bytes'), total_bpp=bpp('bytes'),
                max_error_m=max(r['max_error'] for r in rows),
                rms_error_m=float(np.sqrt(np.mean([r['rms_error'] ** 2 for r in rows]))),
                encode_ms_p50=float(np.percentile(encode, 50)),
                encode_ms_p95=float(np.percentile(encode, 95)),
                decode_ms_p50=float(np.percentile(decode, 50)),
                decode_ms_p95=float(np.percentile(decode, 95)),
                encode_cpu_ms_p50=float(np.percentile(encode_cpu, 50)),
                decode_cpu_ms_p50=float(np.percentile(decode_cpu, 50)))


def baseline_codec(revision: str, root: Path):
    """The ``lidar_codec`` module of git revision ``revision``, imported as ``xmodal_baseline`` from a
    copy of its package under ``root`` (its absolute imports renamed to that package)."""
    repo = Path(__file__).resolve().parents[1]
    archive = subprocess.run(['git', 'archive', '--format=tar', revision, 'xmodal_compress_ros'], cwd=repo,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter='data')
    package = root / 'xmodal_baseline'
    (root / 'xmodal_compress_ros').rename(package)
    for path in package.rglob('*.py'):
        path.write_text(path.read_text().replace('xmodal_compress_ros', 'xmodal_baseline'))
    sys.path.insert(0, str(root))
    return importlib.import_module('xmodal_baseline.codec.lidar_codec')


def compare_with_baseline(args, scans) -> None:
    """This checkout's predictive codec against ``args.baseline``'s, side by side (see the module doc)."""
    from xmodal_compress_ros.codec import lidar_codec as current

    with tempfile.TemporaryDirectory() as root:
        baseline = baseline_codec(args.baseline, Path(root))
        codecs = {'baseline': baseline, 'current': current}
        load = [os.getloadavg()]
        results = {}
        for bound in args.bounds:
            times = {name: np.zeros((args.rounds, len(scans), 2)) for name in codecs}
            same = same_points = 0
            points_out, sizes = {}, {name: np.zeros(len(scans)) for name in codecs}
            for name, module in codecs.items():  # compile / warm up outside the timings
                config = module.LidarCodecConfig(max_error=bound)
                encoded = module.encode_scan(scans[0][1], config)
                module.decode_scan(encoded.payload, encoded.num_points, config)
            for round_ in range(args.rounds):
                payloads = {}
                for k, (_, points) in enumerate(scans):
                    # Both codecs on each scan in turn, the first one alternating: a machine whose speed
                    # drifts during a round then slows both alike.
                    names = list(codecs) if (round_ + k) % 2 == 0 else list(codecs)[::-1]
                    for name in names:
                        module = codecs[name]
                        config = module.LidarCodecConfig(max_error=bound)
                        cpu = time.thread_time()
                        encoded = module.encode_scan(points, config)
                        times[name][round_, k, 0] = (time.thread_time() - cpu) * 1e3
                        cpu = time.thread_time()
                        decoded = module.decode_scan(encoded.payload, encoded.num_points, config)
                        times[name][round_, k, 1] = (time.thread_time() - cpu) * 1e3
                        payloads[name, k] = encoded.payload
                        sizes[name][k] = len(encoded.payload)
                        points_out[name, k] = hashlib.sha256(decoded.tobytes()).digest()
                same += sum(payloads['baseline', k] == payloads['current', k] for k in range(len(scans)))
                same_points += sum(points_out['baseline', k] == points_out['current', k]
                                   for k in range(len(scans)))
            summary = {}
            for name, values in times.items():
                per_scan = np.median(values, axis=0)  # (scans, encode / decode)
                summary[name] = dict(encode_cpu_ms_p50=float(np.percentile(per_scan[:, 0], 50)),
                                     encode_cpu_ms_p95=float(np.percentile(per_scan[:, 0], 95)),
                                     decode_cpu_ms_p50=float(np.percentile(per_scan[:, 1], 50)),
                                     decode_cpu_ms_p95=float(np.percentile(per_scan[:, 1], 95)),
                                     encode_cpu_ms_best=float(np.percentile(values[:, :, 0].min(0), 50)))
            ratio, decode_ratio = (float(np.median(np.median(times['current'][:, :, stage], 0)
                                                   / np.median(times['baseline'][:, :, stage], 0)))
                                   for stage in (0, 1))
            runs = args.rounds * len(scans)
            points = sum(len(p) for _, p in scans)
            for name in codecs:
                summary[name]['bits_per_point'] = float(8 * sizes[name].sum() / points)
            results[f'{bound:g}'] = dict(summary, encode_time_ratio_p50=ratio,
                                         decode_time_ratio_p50=decode_ratio,
                                         bytes_ratio=float(sizes['current'].sum() / sizes['baseline'].sum()),
                                         identical_payloads=f'{same} of {runs}',
                                         identical_decoded_points=f'{same_points} of {runs}')
            for name in codecs:
                row = summary[name]
                print(f'{bound:7.3f} {name:<9} encode p50 {row["encode_cpu_ms_p50"]:6.2f} ms  p95 '
                      f'{row["encode_cpu_ms_p95"]:6.2f}  best-of-rounds p50 '
                      f'{row["encode_cpu_ms_best"]:6.2f}  decode p50 {row["decode_cpu_ms_p50"]:6.2f} ms',
                      flush=True)
            print(f'{bound:7.3f} current / baseline time (median over scans): encode {ratio:.3f}, decode '
                  f'{decode_ratio:.3f}; bits per point {summary["current"]["bits_per_point"]:.3f} / '
                  f'{summary["baseline"]["bits_per_point"]:.3f}; identical payloads {same}, decoded points '
                  f'{same_points} of {runs}', flush=True)
        load.append(os.getloadavg())
    out = Path(__file__).resolve().parent / 'results' / f'lidar_codec_speed_{args.tag}.json'
    out.write_text(json.dumps(dict(host=socket.gethostname(), cpu_count=os.cpu_count(), one_core=True,
                                   baseline=args.baseline, rounds=args.rounds, scans=len(scans),
                                   load_average_start_end=load, results=results), indent=1))
    print(f'wrote {out}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', type=Path, default=Path(__file__).resolve().parents[2] / 'shared' / 'data')
    parser.add_argument('--bounds', type=float, nargs='+', default=[0.002, 0.01, 0.02])
    parser.add_argument('--codecs', nargs='+', default=list(CODECS), choices=list(CODECS))
    parser.add_argument('--limit', type=int, default=0, help='first N scans only (0: all)')
    parser.add_argument('--tag', default=socket.gethostname())
    parser.add_argument('--baseline', help='git revision: time the predictive codec against it instead')
    parser.add_argument('--rounds', type=int, default=5, help='with --baseline: rounds over the scans')
    parser.add_argument('--shuffle', action='store_true',
                        help="shuffle each scan's points (seeded): a cloud whose order hides its lasers")
    parser.add_argument('--frustum', action='store_true',
                        help="keep each scan's points inside its camera's view (frustum_only's cut)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    scans = list(full_scans(args.data))
    if args.frustum:
        from bench_lidar import kitti_scans  # the same scans, with their calibrations

        scans = [(name, points[frustum_mask(points, calib)])
                 for name, points, calib in kitti_scans(args.data, raw_step=1)]
    if args.limit:
        scans = scans[:args.limit]
    if args.shuffle:
        rng = np.random.default_rng(0)
        scans = [(name, points[rng.permutation(len(points))]) for name, points in scans]
    if not scans:
        raise SystemExit(f'no KITTI scans under {args.data}')
    if args.baseline:
        compare_with_baseline(args, scans)
        return
    for name in args.codecs:  # compile / warm up outside the timings
        CODECS[name](scans[0][1], args.bounds[0])
    results = {}
    print(f'{len(scans)} scans, {np.mean([len(p) for _, p in scans]):.0f} points on average, one core')
    print(f'{"bound":>7} {"codec":<17} {"geom bpp":>8} {"int bpp":>7} {"max err":>8} {"rms err":>8} '
          f'{"enc p50":>7} {"enc p95":>7} {"dec p50":>7} {"dec p95":>7} {"enc cpu":>7} {"dec cpu":>7}')
    for bound in args.bounds:
        for name in args.codecs:
            rows = [dict(scan=scan, points=len(points), **CODECS[name](points, bound))
                    for scan, points in scans]
            summary = summarize(rows)
            results.setdefault(f'{bound:g}', {})[name] = dict(summary=summary, scans=rows)
            print(f'{bound:7.3f} {name:<17} {summary["geometry_bpp"]:8.2f} {summary["intensity_bpp"]:7.2f} '
                  f'{summary["max_error_m"]:8.4f} {summary["rms_error_m"]:8.4f} '
                  f'{summary["encode_ms_p50"]:7.1f} '
                  f'{summary["encode_ms_p95"]:7.1f} {summary["decode_ms_p50"]:7.1f} '
                  f'{summary["decode_ms_p95"]:7.1f} {summary["encode_cpu_ms_p50"]:7.1f} '
                  f'{summary["decode_cpu_ms_p50"]:7.1f}', flush=True)
    out = Path(__file__).resolve().parent / 'results' / f'lidar_codec_{args.tag}.json'
    out.write_text(json.dumps(dict(host=socket.gethostname(), cpu_count=os.cpu_count(), one_core=True,
                                   zstd_level=ZSTD_LEVEL, bounds=args.bounds, shuffled=args.shuffle,
                                   frustum=args.frustum, results=results), indent=1))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
