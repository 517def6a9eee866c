"""``xmodal synth``: render a synthetic drive (camera + 64-beam LiDAR) as KITTI raw files and a rosbag2."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from xmodal_compress_ros.cli.arguments import positive_int

HELP = 'Generate a synthetic street drive: camera images and LiDAR scans (KITTI raw layout + rosbag2 MCAP).'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--out', required=True, type=Path, metavar='DIR',
                        help='output folder: DIR/<date>/<date>_drive_synth_sync, DIR/bag, '
                             'DIR/calibration.yaml')
    parser.add_argument('--frames', type=positive_int, default=100, metavar='N',
                        help='frames at 10 Hz (default 100)')
    parser.add_argument('--seed', type=int, default=0, help='scene, motion and noise seed (default 0)')
    parser.add_argument('--width', type=positive_int, default=1242, help='image width (default 1242, KITTI)')
    parser.add_argument('--height', type=positive_int, default=375, help='image height (default 375, KITTI)')
    parser.add_argument('--beams', type=positive_int, default=64, help='LiDAR beams (default 64, HDL-64E)')
    parser.add_argument('--columns', type=positive_int, default=2083,
                        help='LiDAR azimuth steps per revolution (default 2083: 0.17 deg at 10 Hz)')
    parser.add_argument('--workers', type=positive_int, default=1,
                        help='processes rendering frames in parallel (default 1; frames are identical '
                             'for any count)')
    parser.add_argument('--no-bag', action='store_true', help='write only the KITTI raw files, no rosbag2')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='rosbag2 storage plugin (default mcap)')


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from xmodal_compress_ros.data.synthetic.kitti_layout import drive_dir, write_kitti_raw
    from xmodal_compress_ros.data.synthetic.lidar import LidarConfig
    from xmodal_compress_ros.data.synthetic.sequence import (START, SynthConfig, kitti_calibration,
                                                             render_frames)
    from xmodal_compress_ros.errors import DatasetError

    bag_path = args.out / 'bag'
    if not args.no_bag and bag_path.exists():
        raise DatasetError(f'{bag_path} exists already: choose a new --out folder or delete it')
    config = SynthConfig(frames=args.frames, seed=args.seed, width=args.width, height=args.height,
                         lidar=LidarConfig(beams=args.beams, columns=args.columns))
    date = START.strftime('%Y_%m_%d')
    args.out.mkdir(parents=True, exist_ok=True)
    kitti_calibration(args.width, args.height).to_yaml(args.out / 'calibration.yaml')
    point_counts = []
    started = time.perf_counter()

    def rendered():
        for frame in tqdm(render_frames(config, args.workers), total=config.frames, unit='frame',
                          desc='synth'):
            point_counts.append(len(frame.points))
            yield frame

    frames = write_kitti_raw(args.out, rendered(), date)
    if args.no_bag:
        for _ in frames:
            pass
    else:
        from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

        write_sensor_bag(bag_path, frames, storage=args.storage)
    elapsed = time.perf_counter() - started
    print(json.dumps({
        'frames': len(point_counts), 'out': str(args.out), 'drive': str(drive_dir(args.out, date)),
        'bag': None if args.no_bag else str(bag_path),
        'seconds_per_frame': round(elapsed / len(point_counts), 3),
        'points_per_scan_mean': round(float(sum(point_counts)) / len(point_counts), 1),
        'width': args.width, 'height': args.height, 'seed': args.seed}))
    return 0
