"""``xmodal kitti2bag``: a KITTI raw drive as a rosbag2 with the project's camera and LiDAR topics."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from xmodal_compress_ros.cli.arguments import positive_int

HELP = 'Convert a KITTI raw drive into a rosbag2 (MCAP or sqlite3): Image, CameraInfo, PointCloud2.'


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--raw', required=True, type=Path, metavar='DRIVE_DIR',
                        help='synced drive folder holding image_0N/data and velodyne_points/data')
    parser.add_argument('--calib-dir', type=Path, metavar='DIR',
                        help='date folder with calib_cam_to_cam.txt and calib_velo_to_cam.txt '
                             '(default: the parent of DRIVE_DIR, as KITTI ships it)')
    parser.add_argument('--out', required=True, type=Path, metavar='BAG',
                        help='new rosbag2 directory to create (must not exist)')
    parser.add_argument('--camera', type=int, default=2, help='KITTI camera number (default 2, left colour)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='rosbag2 storage plugin (default mcap)')
    parser.add_argument('--frames', type=positive_int, metavar='N', help='convert only the first N frames')
    parser.add_argument('--extrinsic-out', type=Path, metavar='YAML',
                        help='where to write the full calibration incl. T_cam_lidar, which CameraInfo '
                             'cannot carry (default: BAG/calibration.yaml)')


def main(args: argparse.Namespace) -> int:
    from xmodal_compress_ros.data.kitti import KittiRawDrive
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    calib_dir = args.calib_dir if args.calib_dir is not None else args.raw.parent
    drive = KittiRawDrive(args.raw, calib_dir, camera=args.camera)
    count = len(drive) if args.frames is None else min(args.frames, len(drive))
    summary = write_sensor_bag(args.out, (drive[i] for i in range(count)), storage=args.storage,
                               calibration_out=args.extrinsic_out)
    print(json.dumps({
        'frames': summary.frames,
        'scans': summary.scans,
        'out': summary.path,
        'storage': summary.storage,
        'duration_s': round(summary.duration_s, 6),
        'calibration': summary.calibration_path,
        'timestamps': 'nominal_10hz' if drive.timestamps_nominal else 'files',
    }))
    return 0
