"""Time the LiDAR conditioning input (projection + equalisation) in NumPy, PyTorch CPU and CUDA.

Uses a real 120k-point KITTI scan at 1242x375 when ../shared/data is present, else a synthetic
cloud of the same size. Prints a table and writes bench/results/projection_<tag>.json.

    .venv/bin/python bench/bench_projection.py [--runs 50] [--scan PATH --calib PATH --image PATH]
"""
import argparse
import json
import os
import platform
import re
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xmodal_compress_ros.data.pointfiles import read_points
from xmodal_compress_ros.geometry.calibration import Calibration, load_calibration
from xmodal_compress_ros.geometry.projection import depth_condition, equalize_depth, project_to_depth
from xmodal_compress_ros.geometry.projection_torch import (
    depth_condition_torch, equalize_depth_torch, project_to_depth_torch)
from xmodal_compress_ros.runtime.cpu_features import cpu_name

REPO = Path(__file__).resolve().parents[1]
KITTI_FRAME = REPO.parent / 'shared' / 'data' / 'kitti_object' / 'training'
KITTI_STEM = '000001'  # 120268 points, 1242x375


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scan', type=Path, help='KITTI .bin or .npy scan (default: KITTI object 000001)')
    parser.add_argument('--calib', type=Path, help='calibration for --scan (see docs/calibration.md)')
    parser.add_argument('--image-size', type=int, nargs=2, metavar=('W', 'H'), default=(1242, 375))
    parser.add_argument('--runs', type=int, default=50, help='timed runs per implementation')
    parser.add_argument('--warmup', type=int, default=5, help='untimed runs first')
    parser.add_argument('--torch-threads', type=int,
                        help='torch.set_num_threads for the CPU runs (default: torch\'s)')
    parser.add_argument('--tag', help='name in the output file (default: GPU name or N-core CPU)')
    parser.add_argument('--out-dir', type=Path, default=REPO / 'bench' / 'results')
    return parser.parse_args(argv)


def load_input(args):
    """(points, calib, source description)."""
    if args.scan is not None:
        calib = load_calibration(args.calib, image_size=args.image_size)
        return read_points(args.scan), calib, str(args.scan)
    scan = KITTI_FRAME / 'velodyne' / f'{KITTI_STEM}.bin'
    if scan.is_file():
        calib = load_calibration(KITTI_FRAME / 'calib' / f'{KITTI_STEM}.txt', image_size=(1242, 375))
        return read_points(scan), calib, f'kitti_object/training/velodyne/{KITTI_STEM}.bin'
    return synthetic_scan(), kitti_like_calibration(), 'synthetic 120k points (KITTI data absent)'


def synthetic_scan(count=120_000, seed=0):
    """A 360-degree cloud like an HDL-64E scan: range 2-80 m, heights -2..2 m, float32 x, y, z, r."""
    rng = np.random.default_rng(seed)
    azimuth = rng.uniform(-np.pi, np.pi, count)
    distance = rng.uniform(2.0, 80.0, count)
    return np.stack([distance * np.cos(azimuth), distance * np.sin(azimuth),
                     rng.uniform(-2.0, 2.0, count), rng.uniform(0, 1, count)], axis=1).astype(np.float32)


def kitti_like_calibration():
    K = np.array([[721.5377, 0, 609.5593], [0, 721.5377, 172.854], [0, 0, 1]])
    T = np.array([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]])
    return Calibration(width=1242, height=375, K=K, P=np.hstack([K, np.zeros((3, 1))]), T_cam_lidar=T)


def time_it(fn, runs, warmup, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    times = np.array(times)
    return {'median_ms': float(np.median(times)), 'p95_ms': float(np.percentile(times, 95)),
            'min_ms': float(times.min())}


def cases(points, calib):
    """(name, callable, sync) for every implementation available here."""
    depth = project_to_depth(points, calib)
    tensor = torch.from_numpy(points)
    yield 'numpy depth_condition', lambda: depth_condition(points, calib), None
    yield 'numpy project_to_depth', lambda: project_to_depth(points, calib), None
    yield 'numpy equalize_depth', lambda: equalize_depth(depth), None
    yield 'torch-cpu depth_condition', lambda: depth_condition_torch(tensor, calib), None
    yield 'torch-cpu project_to_depth', lambda: project_to_depth_torch(tensor, calib), None
    yield 'torch-cpu equalize_depth', lambda: equalize_depth_torch(torch.from_numpy(depth)), None
    if torch.cuda.is_available():
        on_gpu = tensor.cuda()
        depth_gpu = torch.from_numpy(depth).cuda()
        sync = torch.cuda.synchronize
        yield 'torch-cuda depth_condition', lambda: depth_condition_torch(on_gpu, calib), sync
        yield 'torch-cuda project_to_depth', lambda: project_to_depth_torch(on_gpu, calib), sync
        yield 'torch-cuda equalize_depth', lambda: equalize_depth_torch(depth_gpu), sync
        yield ('torch-cuda depth_condition incl. upload',
               lambda: depth_condition_torch(tensor, calib, device='cuda'), sync)


def bit_exact(points, calib):
    """Whether every available torch device reproduces the NumPy conditioning image exactly."""
    reference = depth_condition(points, calib)
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    return {device: bool(np.array_equal(
        depth_condition_torch(torch.from_numpy(points), calib, device=device).cpu().numpy(), reference))
        for device in devices}


def machine_tag():
    if torch.cuda.is_available():
        return re.sub(r'[^A-Za-z0-9]+', '-', torch.cuda.get_device_name(0)).strip('-').lower()
    return f'cpu-{os.cpu_count()}core'


def main(argv=None):
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    points, calib, source = load_input(args)
    results = []
    print(f'{source}: {len(points)} points, {calib.width}x{calib.height}, '
          f'{args.runs} runs after {args.warmup} warm-up')
    print(f'{"implementation":42s} {"median ms":>10s} {"p95 ms":>10s} {"min ms":>10s}')
    for name, fn, sync in cases(points, calib):
        stats = time_it(fn, args.runs, args.warmup, sync or (lambda: None))
        results.append(dict(name=name, **stats))
        print(f'{name:42s} {stats["median_ms"]:10.2f} {stats["p95_ms"]:10.2f} {stats["min_ms"]:10.2f}')
    exact = bit_exact(points, calib)
    print('bit-exact with numpy:', exact)
    record = {
        'benchmark': 'projection', 'source': source, 'points': int(len(points)),
        'width': calib.width, 'height': calib.height, 'runs': args.runs, 'warmup': args.warmup,
        'host': socket.gethostname(), 'cpu': cpu_name(), 'cpu_count': os.cpu_count(),
        'torch_threads': torch.get_num_threads(),
        # Other jobs share the machine: the load says how much of the CPU these numbers had.
        'load_average_1min': os.getloadavg()[0],
        'gpu': torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        'python': platform.python_version(), 'numpy': np.__version__, 'torch': torch.__version__,
        'bit_exact_with_numpy': exact, 'results': results,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f'projection_{args.tag or machine_tag()}.json'
    out.write_text(json.dumps(record, indent=2) + '\n')
    print('wrote', out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
