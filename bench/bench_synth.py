"""Time the synthetic drive generator at full size (1242x375 camera, 64-beam LiDAR).

Renders ``--frames`` consecutive frames in this process and reports, per frame, the wall time and
the CPU time of the process (the machine may be shared: CPU time is what one frame costs, wall
time what it took under the load there was), plus scene setup time and scan sizes. Prints a table
and writes bench/results/synth_<tag>.json.

    .venv/bin/python bench/bench_synth.py [--frames 10] [--seed 0] [--tag cpu-2core]
"""
import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=10, help='frames to render')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tag', default=f'cpu-{os.cpu_count()}core', help='name in the output file')
    parser.add_argument('--out-dir', type=Path, default=REPO / 'bench' / 'results')
    return parser.parse_args(argv)


def _summary(values):
    return {'median': float(np.median(values)), 'min': float(np.min(values)), 'max': float(np.max(values))}


def main(argv=None):
    args = parse_args(argv)
    load_before = os.getloadavg()
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    drive = SyntheticDrive(SynthConfig(frames=args.frames, seed=args.seed))
    setup = {'wall_s': time.perf_counter() - start_wall, 'cpu_s': time.process_time() - start_cpu}
    wall, cpu, points = [], [], []
    for k in range(args.frames):
        w0, c0 = time.perf_counter(), time.process_time()
        frame = drive.render(k).frame
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        points.append(len(frame.points))
    result = {
        'frames': args.frames, 'seed': args.seed, 'width': drive.config.width, 'height': drive.config.height,
        'beams': drive.config.lidar.beams, 'columns': drive.config.lidar.columns,
        'primitives': len(drive.scene.prims), 'setup': setup,
        'frame_wall_s': _summary(wall), 'frame_cpu_s': _summary(cpu),
        'points_per_scan_mean': float(np.mean(points)),
        'loadavg_before': load_before, 'loadavg_after': os.getloadavg(),
        'cpu_count': os.cpu_count(), 'machine': platform.processor() or platform.machine(),
        'numpy': np.__version__,
    }
    print(f"setup            {setup['wall_s']:.2f} s wall, {setup['cpu_s']:.2f} s CPU "
          f"({result['primitives']} primitives)")
    print(f"frame (median)   {result['frame_wall_s']['median']:.2f} s wall, "
          f"{result['frame_cpu_s']['median']:.2f} s CPU")
    print(f"points per scan  {result['points_per_scan_mean']:.0f}")
    print(f"load average     {load_before[0]:.1f} -> {result['loadavg_after'][0]:.1f} "
          f"on {os.cpu_count()} cores")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f'synth_{args.tag}.json'
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
