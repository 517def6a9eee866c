"""Time a camera-sized sensor_msgs/Image between two rclpy processes under several DDS transports.

For each transport setting and reliability a subscriber process and a publisher process run on a
private localhost ROS domain; the publisher sends ``--count`` images at ``--hz`` with the wall-clock
send time in the header stamp, and the subscriber (EventsExecutor) records receive minus send time.
Prints a table and writes bench/results/ros_transport_<tag>.json.

    .venv/bin/python bench/bench_ros_transport.py [--width 1242 --height 375 --count 50 --hz 10]
"""
import argparse
import array
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.ros.transport import isolated_environment, profile_path, transport_environment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TRANSPORT = {'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp'}
SETTINGS = {
    'default': DEFAULT_TRANSPORT,
    'large_data_env': {**DEFAULT_TRANSPORT, 'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'},
    'large_data_xml': {**DEFAULT_TRANSPORT, 'FASTDDS_DEFAULT_PROFILES_FILE': str(profile_path())},
    'shipped': transport_environment(),
}
TOPIC = '/bench/image'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--width', type=int, default=1242)
    parser.add_argument('--height', type=int, default=375)
    parser.add_argument('--count', type=int, default=50, help='images per run')
    parser.add_argument('--hz', type=float, default=10.0, help='publishing rate')
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument('--reliability', nargs='+', default=['reliable', 'best_effort'],
                        choices=['reliable', 'best_effort'])
    parser.add_argument('--any-host', action='store_true',
                        help='leave discovery unrestricted (default: localhost only, as the demo and tests)')
    parser.add_argument('--tag', default=f'cpu-{os.cpu_count()}core')
    parser.add_argument('--out-dir', type=Path, default=REPO / 'bench' / 'results')
    parser.add_argument('--role', choices=['pub', 'sub'], help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def qos(reliability):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    policy = ReliabilityPolicy.RELIABLE if reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=10, reliability=policy)


def publish(args, reliability):
    """Publisher role: wait for the subscriber, send the images, wait for acks."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_pub')
    pub = node.create_publisher(Image, TOPIC, qos(reliability))
    deadline = time.monotonic() + 20
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    pixels = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    data = array.array('B')
    data.frombytes(pixels.tobytes())
    for i in range(args.count):
        msg = Image(height=args.height, width=args.width, encoding='rgb8', step=3 * args.width)
        msg.data = data
        msg.header.frame_id = str(i)
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub.publish(msg)
        time.sleep(1.0 / args.hz)
    pub.wait_for_all_acked()
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()


def subscribe(args, reliability):
    """Subscriber role: print one JSON line with the latencies of the images received."""
    import rclpy
    from rclpy.experimental import EventsExecutor
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node('bench_sub')
    latencies = []

    def on_image(msg):
        sent = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        latencies.append((time.time_ns() - sent) / 1e6)
        np.frombuffer(msg.data, np.uint8)

    node.create_subscription(Image, TOPIC, on_image, qos(reliability))
    executor = EventsExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + args.count / args.hz + 25
    while len(latencies) < args.count and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
    print(json.dumps(latencies), flush=True)
    node.destroy_node()
    rclpy.shutdown()


def run_pair(args, setting, reliability):
    env = isolated_environment(transport=False)
    for key in ('FASTDDS_BUILTIN_TRANSPORTS', 'FASTDDS_DEFAULT_PROFILES_FILE', 'MALLOC_MMAP_THRESHOLD_',
                'MALLOC_TRIM_THRESHOLD_'):
        env.pop(key, None)
    env.update(SETTINGS[setting])
    if args.any_host:
        env.pop('ROS_AUTOMATIC_DISCOVERY_RANGE')
        env.pop('ROS_LOCALHOST_ONLY')
    base = [sys.executable, __file__, '--width', str(args.width), '--height', str(args.height),
            '--count', str(args.count), '--hz', str(args.hz), '--reliability', reliability]
    sub = subprocess.Popen(base + ['--role', 'sub'], env=env, stdout=subprocess.PIPE, text=True)
    pub = subprocess.Popen(base + ['--role', 'pub'], env=env, stdout=subprocess.DEVNULL)
    try:
        out, _ = sub.communicate(timeout=args.count / args.hz + 60)
        pub.wait(timeout=30)
    finally:
        for proc in (sub, pub):
            if proc.poll() is None:
                proc.kill()
    latencies = np.array(json.loads(out.strip().splitlines()[-1]))
    record = {'setting': setting, 'reliability': reliability, 'sent': args.count, 'received': len(latencies)}
    if len(latencies):
        record.update(p50_ms=float(np.percentile(latencies, 50)), p99_ms=float(np.percentile(latencies, 99)))
    return record


def main(argv=None):
    args = parse_args(argv)
    if args.role == 'pub':
        return publish(args, args.reliability[0])
    if args.role == 'sub':
        return subscribe(args, args.reliability[0])
    records = []
    print(f'{"setting":16} {"reliability":12} {"received":>9} {"p50 ms":>8} {"p99 ms":>8}')
    for setting in args.settings:
        for reliability in args.reliability:
            record = run_pair(args, setting, reliability)
            records.append(record)
            p50, p99 = record.get('p50_ms', float('nan')), record.get('p99_ms', float('nan'))
            print(f'{setting:16} {reliability:12} {record["received"]:>4}/{record["sent"]:<4} '
                  f'{p50:8.2f} {p99:8.2f}', flush=True)
    result = {'image': f'{args.width}x{args.height} rgb8', 'bytes': args.width * args.height * 3,
              'hz': args.hz, 'machine': f'{platform.machine()} {os.cpu_count()} cores',
              'shipped': SETTINGS['shipped'], 'localhost_only': not args.any_host, 'records': records}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f'ros_transport_{args.tag}.json'
    out.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
