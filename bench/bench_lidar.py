"""Size, speed and geometric error of the LiDAR stream on real KITTI scans.

For Draco position quantization 8..14 bits, on full 360-degree scans and on the same scans cut
to the camera frustum (+2 px), with 8-bit intensity (and once without): packet bytes and bits
per scan, points, encode (including the encoder's own decode) and decode time, and the position
error of every input point (its distance to its grid point, per axis, metres). Reference:
point_cloud_transport's draco plugin at its defaults (lossless float32 fields) and with
force_quantization (14-bit positions).

Prints a table and writes ``bench/results/lidar_<tag>.json`` (tag: --tag, default the host name).

    python bench/bench_lidar.py [--data ../shared/data] [--raw-step 5] [--bits 8 9 10 11 12 13 14]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.codec.bitstream import pack_lidar_packet
from xmodal_compress_ros.codec.lidar_codec import (
    LidarCodecConfig, decode_scan, draco_reference_size, encode_scan, frustum_mask,
)
from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.geometry.calibration import load_calibration


def kitti_scans(root: Path, raw_step: int):
    """(name, points, calibration) of every full KITTI object scan and every raw_step-th raw scan."""
    import cv2

    for split in ('training', 'testing'):
        folder = root / 'kitti_object' / split
        for scan in sorted((folder / 'velodyne').glob('*.bin')):
            height, width = cv2.imread(str(folder / 'image_2' / (scan.stem + '.png'))).shape[:2]
            calib = load_calibration(folder / 'calib' / (scan.stem + '.txt'), image_size=(width, height))
            yield f'object/{split}/{scan.stem}', read_points(scan), calib
    date = root / 'kitti_raw' / '2011_09_26'
    calib = load_calibration(date)
    for drive in sorted(date.glob('*_sync')):
        for scan in sorted((drive / 'velodyne_points' / 'data').glob('*.bin'))[::raw_step]:
            yield f'raw/{drive.name}/{scan.stem}', read_points(scan), calib


def position_error(points: np.ndarray, payload: bytes, bits: int) -> np.ndarray:
    """|x - grid(x)| per axis of each input point, on the grid the payload declares."""
    *origin, extent = np.frombuffer(payload[:16], '<f4').astype(np.float64)
    step = extent / ((1 << bits) - 1)
    codes = np.rint((points[:, :3].astype(np.float64) - origin) / step)
    return np.abs(points[:, :3] - (origin + codes * step))


def timed(function):
    """Result, wall seconds and process CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get('XMODAL_SHARED_DATA',
                                       Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    parser.add_argument('--data', type=Path, default=default_data)
    parser.add_argument('--raw-step', type=int, default=5, help='use every n-th kitti_raw scan')
    parser.add_argument('--bits', type=int, nargs='+', default=list(range(8, 15)))
    parser.add_argument('--plain-bits', type=int, default=11, help='bits of the extra rows without intensity')
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    parser.add_argument('--tag', default=socket.gethostname(), help='result file suffix, e.g. cpu-2core')
    args = parser.parse_args()

    rows = {}
    references = {'pct_default_lossless': [], 'pct_force_quantization_14': []}
    scans = list(kitti_scans(args.data, args.raw_step))
    print(f'{len(scans)} real KITTI scans from {args.data}')
    for name, points, calib in scans:
        mask = frustum_mask(points, calib)
        references['pct_default_lossless'].append(draco_reference_size(points))
        references['pct_force_quantization_14'].append(draco_reference_size(points, force_quantization=True))
        settings = [(bits, frustum, True) for bits in args.bits for frustum in (False, True)]
        settings += [(args.plain_bits, frustum, False) for frustum in (False, True)]
        for bits, frustum, intensity in settings:
            config = LidarCodecConfig(quantization_bits=bits, frustum_only=frustum, keep_intensity=intensity)
            encoded, encode_s, encode_cpu_s = timed(lambda: encode_scan(points, config, calib))
            _, decode_s, decode_cpu_s = timed(
                lambda: decode_scan(encoded.payload, encoded.num_points, config))
            packet = pack_lidar_packet(encoded.to_packet(0, 0, 'velodyne'))
            error = position_error(points[mask] if frustum else points, encoded.payload, bits)
            rows.setdefault((bits, frustum, intensity), []).append({
                'scan': name, 'input_points': len(points), 'points': encoded.num_points,
                'payload_bytes': len(encoded.payload), 'packet_bytes': len(packet),
                'encode_ms': 1e3 * encode_s, 'decode_ms': 1e3 * decode_s,
                'encode_cpu_ms': 1e3 * encode_cpu_s, 'decode_cpu_ms': 1e3 * decode_cpu_s,
                'max_abs_error_m': float(error.max()), 'mean_abs_error_m': float(error.mean()),
            })

    print('enc/dec: wall ms / process CPU ms')
    print(f'{"setting":26} {"points":>7} {"KB/scan":>8} {"Mbit/scan":>9} {"bit/pt":>7} '
          f'{"enc ms":>11} {"dec ms":>11} {"max err m":>9} {"mean err m":>10}')
    summary = []
    # Rows with intensity first, then by bits and mode.
    for (bits, frustum, intensity), records in sorted(rows.items(), key=lambda kv: (not kv[0][2], kv[0])):
        mean = {key: statistics.mean(r[key] for r in records) for key in records[0] if key != 'scan'}
        mean['max_abs_error_m'] = max(r['max_abs_error_m'] for r in records)
        label = f'draco {bits:2d} bit {"frustum" if frustum else "full"}{"" if intensity else " xyz"}'
        summary.append({'quantization_bits': bits, 'frustum_only': frustum, 'intensity': intensity,
                        'scans': len(records), **mean})
        print(f'{label:26} {mean["points"]:>7.0f} {mean["packet_bytes"] / 1e3:>8.1f} '
              f'{8 * mean["packet_bytes"] / 1e6:>9.3f} {8 * mean["packet_bytes"] / mean["points"]:>7.2f} '
              f'{mean["encode_ms"]:>5.0f} / {mean["encode_cpu_ms"]:>3.0f} '
              f'{mean["decode_ms"]:>5.0f} / {mean["decode_cpu_ms"]:>3.0f} {mean["max_abs_error_m"]:>9.4f} '
              f'{mean["mean_abs_error_m"]:>10.5f}')
    points_full = statistics.mean(len(p) for _, p, _ in scans)
    for key, sizes in references.items():
        size = statistics.mean(sizes)
        print(f'{key:26} {points_full:>7.0f} {size / 1e3:>8.1f} {8 * size / 1e6:>9.3f} '
              f'{8 * size / points_full:>7.2f}')

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        'host': socket.gethostname(), 'tag': args.tag, 'cpus': os.cpu_count(),
        'scans': [name for name, _, _ in scans],
        'summary': summary,
        'per_scan': {f'{b}_{"frustum" if f else "full"}_{"xyzi" if i else "xyz"}': r
                     for (b, f, i), r in rows.items()},
        'reference_bytes': {key: statistics.mean(sizes) for key, sizes in references.items()},
        'reference_points': points_full, 'load_average': os.getloadavg(),
    }
    path = args.out / f'lidar_{args.tag}.json'
    path.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
