"""Time the message <-> NumPy conversions and sensor-bag write/read at KITTI size.

A 1242x375 RGB image and a 120k-point scan (x, y, z, intensity[, ring]) go through
``xmodal_compress_ros.ros.conversions`` with rclpy messages (when installed) and rosbags
dataclasses, then ``--bag-frames`` such frames are written to and read back from MCAP and sqlite3
bags in a temporary folder. Prints a table and writes bench/results/conversions_<tag>.json.

    .venv/bin/python bench/bench_conversions.py [--runs 30] [--bag-frames 20] [--tag cpu-2core]
"""
import argparse
import array
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.data import rosbag_io
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.geometry.calibration import Calibration
from xmodal_compress_ros.ros import conversions as conv

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT, POINTS = 1242, 375, 120_000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=30, help='timed runs per conversion')
    parser.add_argument('--bag-frames', type=int, default=20, help='frames per bag write/read')
    parser.add_argument('--tag', default=f'cpu-{os.cpu_count()}core', help='name in the output file')
    parser.add_argument('--out-dir', type=Path, default=REPO / 'bench' / 'results')
    return parser.parse_args(argv)


def time_ms(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {'median_ms': float(np.median(times)), 'min_ms': float(np.min(times)), 'runs': runs}


def families():
    """name -> (Image, PointCloud2) classes for each installed message family."""
    store = rosbag_io.typestore()
    found = {'rosbags': (store.types['sensor_msgs/msg/Image'], store.types['sensor_msgs/msg/PointCloud2'])}
    try:
        from sensor_msgs.msg import Image, PointCloud2
        found['rclpy'] = (Image, PointCloud2)
    except ImportError:
        pass
    return found


def conversion_results(runs):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    xyzi = rng.normal(0, 20, (POINTS, 4)).astype(np.float32)
    xyzir = np.hstack([xyzi, rng.integers(0, 64, (POINTS, 1)).astype(np.float32)])
    results = []
    for family, (image_type, cloud_type) in families().items():
        rgb = conv.numpy_to_image(image, 'rgb8', msg_type=image_type)
        bgr = conv.numpy_to_image(image, 'bgr8', msg_type=image_type)
        cloud4 = conv.numpy_to_pointcloud2(xyzi, msg_type=cloud_type)
        cloud5 = conv.numpy_to_pointcloud2(xyzir, msg_type=cloud_type)
        cases = {
            'numpy_to_image rgb8': lambda: conv.numpy_to_image(image, 'rgb8', msg_type=image_type),
            'image_to_rgb rgb8 (view)': lambda: conv.image_to_rgb(rgb),
            'image_to_rgb bgr8 (reorder)': lambda: conv.image_to_rgb(bgr),
            'numpy_to_pointcloud2 xyzi': lambda: conv.numpy_to_pointcloud2(xyzi, msg_type=cloud_type),
            'numpy_to_pointcloud2 xyzi+ring': lambda: conv.numpy_to_pointcloud2(xyzir, msg_type=cloud_type),
            'pointcloud2_to_numpy xyzi (view)': lambda: conv.pointcloud2_to_numpy(cloud4),
            'pointcloud2_to_numpy xyzi+ring': lambda: conv.pointcloud2_to_numpy(
                cloud5, fields=('x', 'y', 'z', 'intensity', 'ring')),
        }
        for name, fn in cases.items():
            results.append({'family': family, 'name': name, **time_ms(fn, runs)})
        if family == 'rclpy':
            # The slow path numpy_to_image avoids: assigning an ndarray to an rclpy uint8[] field.
            flat = image.reshape(-1)
            msg = image_type()

            def assign_ndarray():
                msg.data = flat

            def assign_array_array():
                packed = array.array('B')
                packed.frombytes(flat)
                msg.data = packed
            results.append({'family': family, 'name': 'msg.data = ndarray (avoided)',
                            **time_ms(assign_ndarray, 3)})
            results.append({'family': family, 'name': 'msg.data = array.array',
                            **time_ms(assign_array_array, runs)})
    return results


def bag_results(frame_count):
    rng = np.random.default_rng(1)
    P = np.array([[721.5, 0, 609.6, 44.9], [0, 721.5, 172.9, 0.2], [0, 0, 1, 0.003]])
    calib = Calibration(width=WIDTH, height=HEIGHT, K=P[:, :3], P=P, T_cam_lidar=np.eye(4))
    frames = [SensorFrame(image=rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8),
                          points=rng.normal(0, 20, (POINTS, 4)).astype(np.float32), calib=calib,
                          image_stamp_ns=i * 100_000_000, lidar_stamp_ns=i * 100_000_000, name=str(i))
              for i in range(frame_count)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for storage in rosbag_io.STORAGES:
            path = Path(tmp) / storage
            start = time.perf_counter()
            rosbag_io.write_sensor_bag(path, frames, storage=storage)
            write_s = time.perf_counter() - start
            start = time.perf_counter()
            count = sum(1 for _ in rosbag_io.read_sensor_frames(path))
            read_s = time.perf_counter() - start
            size = sum(p.stat().st_size for p in path.iterdir())
            results.append({'storage': storage, 'frames': count,
                            'write_ms_per_frame': write_s / frame_count * 1e3,
                            'read_ms_per_frame': read_s / count * 1e3, 'bytes_per_frame': size / count})
    return results


def main(argv=None):
    args = parse_args(argv)
    report = {
        'benchmark': 'conversions', 'tag': args.tag, 'image': [WIDTH, HEIGHT], 'points': POINTS,
        'cpu_count': os.cpu_count(), 'python': platform.python_version(), 'numpy': np.__version__,
        'conversions': conversion_results(args.runs), 'bags': bag_results(args.bag_frames),
    }
    for row in report['conversions']:
        print(f"{row['family']:8s} {row['name']:36s} median {row['median_ms']:8.3f} ms  "
              f"min {row['min_ms']:8.3f} ms")
    for row in report['bags']:
        print(f"bag {row['storage']:8s} write {row['write_ms_per_frame']:6.1f} ms/frame  "
              f"read {row['read_ms_per_frame']:6.1f} ms/frame  {row['bytes_per_frame'] / 1e6:.2f} MB/frame")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f'conversions_{args.tag}.json'
    out.write_text(json.dumps(report, indent=2) + '\n')
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
