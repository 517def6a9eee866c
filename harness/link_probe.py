"""Measure what a DDS link delivers: a talker of sized CompressedImage messages and a listener that logs them.

``python harness/link_probe.py talk --bytes 20000 --rate 10 --count 100 --qos reliable``
``python harness/link_probe.py listen --qos reliable --seconds 60 --out received.json``

The talker waits (bounded) for a subscriber, publishes ``--count`` messages whose header carries the
send time (``time.time_ns()``) and a sequence number, then lingers so reliable repairs can finish.
The listener records (sequence, send time, receive time, size) of every message, also from any
other topic it is asked to watch (``''`` as ``--topic`` for none), optionally the nodes'
/diagnostics, and stops ``--idle`` seconds after the last message or at
``--seconds``. Both ends must share a clock (two network namespaces on one machine do), so the
receive minus send time is the one-way latency. Only loops that end by themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Dict, List, Optional

TOPIC = '/xmodal/link_probe'


def _qos(name: str, depth: int):
    from xmodal_compress_ros.ros.node_main import qos_profile

    return qos_profile(name, depth)


def talk(args) -> dict:
    """Publish the messages; returns what was sent."""
    import rclpy
    from sensor_msgs.msg import CompressedImage

    rclpy.init()
    node = rclpy.create_node('xmodal_link_talker')
    publisher = node.create_publisher(CompressedImage, args.topic, _qos(args.qos, args.depth))
    deadline = time.monotonic() + args.match_timeout
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = publisher.get_subscription_count() > 0
    # The writer can see the reader before the reader has matched the writer; samples sent in between
    # are dropped by the reader (volatile), so wait for the listener to say it has matched too.
    while args.wait_file and not os.path.exists(args.wait_file) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(args.settle)
    payload = bytes((i * 7) & 0xFF for i in range(args.bytes))
    period = 1.0 / args.rate
    start = time.monotonic()
    sent = 0
    for seq in range(args.count if matched else 0):
        due = start + seq * period
        time.sleep(max(0.0, due - time.monotonic()))
        msg = CompressedImage()
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        msg.header.frame_id = str(seq)
        msg.format = 'link_probe'
        msg.data = payload
        publisher.publish(msg)
        sent += 1
        rclpy.spin_once(node, timeout_sec=0.0)
    linger_end = time.monotonic() + args.linger
    while time.monotonic() < linger_end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return {'matched': matched, 'sent': sent, 'bytes': args.bytes, 'rate_hz': args.rate, 'qos': args.qos}


def listen(args) -> dict:
    """Record arrivals until idle or out of time; returns the records."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import CompressedImage, Image

    from rclpy.signals import SignalHandlerOptions

    # SIGINT (the harness stopping it) only sets a flag: an exception raised wherever the signal lands,
    # possibly inside rclpy, could end the process before the records are written.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    interrupted: List[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    node = rclpy.create_node('xmodal_link_listener')
    records: List[list] = []
    diagnostics: Dict[str, dict] = {}
    types = {'compressed': CompressedImage, 'image': Image}

    seen = set()

    def announce(event: str) -> None:
        # First message per topic / first report per node, as a line on stdout: a harness can wait for it.
        if event not in seen:
            seen.add(event)
            print(event, flush=True)

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            entry = diagnostics.setdefault(status.name, {'first_received_ns': time.time_ns()})
            entry['values'] = {kv.key: kv.value for kv in status.values}
            announce(f'status {status.name}')

    def on_message(topic: str):
        def callback(msg) -> None:
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            kind = msg.format if hasattr(msg, 'format') else msg.encoding
            records.append([topic, msg.header.frame_id, stamp, time.time_ns(), len(msg.data), kind])
            announce(f'first {topic}')

        return callback

    subscriptions = {}
    for spec in ([f'{args.topic}:compressed'] if args.topic else []) + list(args.watch):
        topic, _, kind = spec.rpartition(':')
        subscriptions[topic] = node.create_subscription(
            types[kind], topic, on_message(topic), _qos(args.qos, args.depth))
    # When each subscription first saw a publisher: a volatile reader misses whatever was published
    # before, so a harness can tell such messages from ones lost later.
    matched_ns: Dict[str, int] = {}
    if args.diagnostics:
        node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 50)
    print('listening', flush=True)
    end = time.monotonic() + args.seconds
    last = None
    while time.monotonic() < end and not interrupted:
        if args.matched_file and not os.path.exists(args.matched_file) and _matched(node):
            open(args.matched_file, 'w').close()
        for topic, sub in subscriptions.items():
            if topic not in matched_ns and sub.get_publisher_count() > 0:
                matched_ns[topic] = time.time_ns()
        before = len(records)
        rclpy.spin_once(node, timeout_sec=0.05)
        if len(records) > before:
            last = time.monotonic()
        elif last is not None and time.monotonic() - last > args.idle:
            break
    result = {
        'records': records,
        'fields': ['topic', 'frame_id', 'stamp_ns', 'received_ns', 'bytes', 'format'],
        'diagnostics': diagnostics,
        'matched_ns': matched_ns,
    }
    # Written before shutting rclpy down: a harness that loses patience with a slow shutdown and kills
    # the process still finds the records.
    _write(result, args.out)
    node.destroy_node()
    rclpy.shutdown()
    return result


def _matched(node) -> bool:
    """Whether every subscription of ``node`` has matched at least one publisher."""
    return all(sub.get_publisher_count() > 0 for sub in node.subscriptions)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='link_probe', description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    for mode in ('talk', 'listen'):
        p = sub.add_parser(mode)
        p.add_argument('--topic', default=TOPIC)
        p.add_argument('--qos', choices=('reliable', 'best_effort'), default='reliable')
        p.add_argument(
            '--depth', type=int, default=1, help='KEEP_LAST depth (1: only the newest is repaired)'
        )
        p.add_argument('--out', default='', help='write the JSON result here (default: stdout)')
    talk_p, listen_p = sub.choices['talk'], sub.choices['listen']
    talk_p.add_argument('--bytes', type=int, default=20_000)
    talk_p.add_argument('--rate', type=float, default=10.0)
    talk_p.add_argument('--count', type=int, default=100)
    talk_p.add_argument('--match-timeout', type=float, default=20.0, help='seconds to wait for a subscriber')
    talk_p.add_argument('--settle', type=float, default=1.0, help='seconds between matching and publishing')
    talk_p.add_argument('--wait-file', default='', help='also wait for this file (the listener matched)')
    talk_p.add_argument(
        '--linger', type=float, default=2.0, help='seconds to keep serving repairs at the end'
    )
    listen_p.add_argument('--seconds', type=float, default=60.0, help='stop after this long in any case')
    listen_p.add_argument('--idle', type=float, default=3.0, help='stop this long after the last message')
    listen_p.add_argument('--matched-file', default='',
                          help='create this file once every subscription matched')
    listen_p.add_argument(
        '--watch',
        action='append',
        default=[],
        help='also record TOPIC:image or TOPIC:compressed (repeatable)',
    )
    listen_p.add_argument(
        '--diagnostics',
        action='store_true',
        help='keep the latest /diagnostics values per status (and when each was first seen)',
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == 'talk':
        _write(talk(args), args.out)
    else:
        listen(args)
    return 0


def _write(result: dict, out: str) -> None:
    """The result as JSON to ``out``, or to stdout when no file is given."""
    text = json.dumps(result)
    if out:
        with open(out, 'w') as handle:
            handle.write(text)
    else:
        print(text, flush=True)


if __name__ == '__main__':
    sys.exit(main())
