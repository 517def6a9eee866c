"""Runs over a :class:`harness.lossy_link.LossyLink`: a DDS talker and listener, and their statistics.

The processes run in the link's namespaces with a generated Fast DDS profile (``ros/udp_profile.py``)
on a fresh ROS domain, and :mod:`harness.link_probe` records what arrives. Used by
``bench/bench_lossy_link.py`` and ``test/reliability/test_lossy_link.py``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from harness.lossy_link import DEC_ADDR, ENC_ADDR, LossyLink
from xmodal_compress_ros.ros.udp_profile import (
    IP_FRAGMENTED_MESSAGE_SIZE,
    SINGLE_FRAME_MESSAGE_SIZE,
    UdpLinkProfile,
    link_environment,
    write_profile,
)

PROBE = (str(Path(__file__).with_name('link_probe.py')),)


@dataclass(frozen=True)
class Transport:
    """How packets cross the link: the RTPS message size and the reliability of the packet topic."""

    name: str
    max_message_size: int
    qos: str
    heartbeat_ms: int = 20

    def profile(self, peer: str, own: str) -> UdpLinkProfile:
        # The own address too: processes on the same host find each other at once, not only by multicast.
        return UdpLinkProfile(
            peers=(peer, own), max_message_size=self.max_message_size, heartbeat_ms=self.heartbeat_ms
        )


TRANSPORTS = {
    t.name: t
    for t in (
        Transport('ip-frag/best_effort', IP_FRAGMENTED_MESSAGE_SIZE, 'best_effort'),
        Transport('ip-frag/reliable', IP_FRAGMENTED_MESSAGE_SIZE, 'reliable'),
        Transport('rtps-frag/best_effort', SINGLE_FRAME_MESSAGE_SIZE, 'best_effort'),
        Transport('rtps-frag/reliable', SINGLE_FRAME_MESSAGE_SIZE, 'reliable'),
    )
}
#: The settings this project recommends between hosts (see docs/reliability.md).
RECOMMENDED = 'rtps-frag/reliable'


def environments(transport: Transport, workdir: Path) -> Dict[str, Dict[str, str]]:
    """Per side ('enc', 'dec'): the environment with its own profile (peer: the other side), one domain."""
    domain = random.randint(1, 101)
    envs = {}
    for side, peer, own in (('enc', DEC_ADDR, ENC_ADDR), ('dec', ENC_ADDR, DEC_ADDR)):
        path = write_profile(workdir / f'fastdds-{side}.xml', transport.profile(peer, own))
        envs[side] = link_environment(path, domain)
    return envs


def percentiles(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """p50/p95/p99/max of ``values`` (None when empty), rounded to 0.1."""
    if not len(values):
        return {'p50': None, 'p95': None, 'p99': None, 'max': None}
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=np.float64), (50, 95, 99))
    return {
        'p50': round(float(p50), 1),
        'p95': round(float(p95), 1),
        'p99': round(float(p99), 1),
        'max': round(float(np.max(values)), 1),
    }


def start_listener(
    link: LossyLink,
    env: Dict[str, str],
    out: Path,
    qos: str,
    seconds: float,
    idle: float,
    watch: Sequence[str] = (),
    topic: Optional[str] = None,
    depth: int = 10,
    diagnostics: bool = False,
    side: str = 'dec',
    matched_file: Optional[Path] = None,
) -> subprocess.Popen:
    """Start the link_probe listener in the namespace of ``side``; returns once it is subscribed.

    ``matched_file``: the listener creates it once its subscriptions have matched a publisher.
    """
    argv = [
        sys.executable,
        *PROBE,
        'listen',
        '--qos',
        qos,
        '--seconds',
        str(seconds),
        '--idle',
        str(idle),
        '--out',
        str(out),
        '--depth',
        str(depth),
    ]
    argv += ['--topic', topic] if topic is not None else []
    argv += ['--diagnostics'] if diagnostics else []
    argv += ['--matched-file', str(matched_file)] if matched_file else []
    for spec in watch:
        argv += ['--watch', spec]
    proc = link.popen(side, argv, env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if line != 'listening':
        raise RuntimeError(f'the listener did not start (exit code {proc.wait(timeout=30)})')
    return proc


def measure_raw(
    link: LossyLink,
    transport: Transport,
    workdir: Path,
    count: int = 100,
    rate: float = 10.0,
    nbytes: int = 20_000,
    burst: Optional[tuple] = None,
    depth: int = 10,
) -> Dict:
    """Send ``count`` messages of ``nbytes`` at ``rate`` Hz between two rclpy processes; delivery and latency.

    ``burst``: (start_s, seconds, loss_percent) after the talker starts, then back to the link's loss.
    ``depth``: KEEP_LAST history of both ends (the nodes' default is 10; 1 repairs only the newest).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    envs = environments(transport, workdir)
    received_path = workdir / 'received.json'
    matched_file = workdir / 'listener.matched'
    listener = start_listener(
        link, envs['dec'], received_path, transport.qos, count / rate + 60, 4.0, depth=depth,
        matched_file=matched_file,
    )
    talker = link.popen(
        'enc',
        [
            sys.executable,
            *PROBE,
            'talk',
            '--qos',
            transport.qos,
            '--count',
            str(count),
            '--rate',
            str(rate),
            '--bytes',
            str(nbytes),
            '--depth',
            str(depth),
            '--wait-file',
            str(matched_file),
        ],
        envs['enc'],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    burst_window = None
    if burst is not None:
        burst_window = _run_burst(link, burst, rate, count)
    sent = json.loads(talker.communicate(timeout=count / rate + 90)[0].strip().splitlines()[-1])
    listener.wait(timeout=120)
    records = json.loads(received_path.read_text())['records']
    result = {
        'transport': transport.name,
        'max_message_size': transport.max_message_size,
        'qos': transport.qos,
        'loss_percent': link.config.loss_percent,
        'delay_ms': link.config.delay_ms,
        'jitter_ms': link.config.jitter_ms,
        'bytes': nbytes,
        'rate_hz': rate,
        'depth': depth,
    }
    result.update(delivery(sent['sent'], records))
    result['ip_packets'] = link.packet_counts()
    if burst_window is not None:
        result['burst'] = recovery(records, burst_window)
    return result


def _run_burst(link: LossyLink, burst: tuple, rate: float, count: int) -> tuple:
    """Sleep until the burst starts (measured from now plus the talker's start-up), apply it, restore."""
    start_s, seconds, percent = burst
    time.sleep(start_s)
    begin = time.time_ns()
    link.set_loss(percent)
    time.sleep(seconds)
    link.set_loss(link.config.loss_percent)
    return begin, time.time_ns()


def delivery(sent: int, records: List[list]) -> Dict:
    """Delivery ratio, duplicates and one-way latency percentiles (ms) of link_probe records."""
    seqs = [int(r[1]) for r in records]
    unique = len(set(seqs))
    latencies = [(r[3] - r[2]) / 1e6 for r in records]
    longest_gap = 0
    ordered = sorted(set(seqs))
    for a, b in zip(ordered, ordered[1:]):
        longest_gap = max(longest_gap, b - a - 1)
    return {
        'sent': sent,
        'received': unique,
        'duplicates': len(seqs) - unique,
        'delivery': round(unique / sent, 4) if sent else None,
        'out_of_order': sum(1 for a, b in zip(seqs, seqs[1:]) if b < a),
        'longest_run_lost': longest_gap,
        'latency_ms': percentiles(latencies),
    }


def recovery(records: List[list], window: tuple) -> Dict:
    """After a loss burst: how soon the first message sent after it arrived, and how late it was."""
    begin, end = window
    after = [r for r in records if r[2] >= end]
    first = min(after, key=lambda r: r[3]) if after else None
    return {
        'burst_s': round((end - begin) / 1e9, 2),
        'first_after_burst_ms': round((first[3] - end) / 1e6, 1) if first else None,
        'first_after_burst_latency_ms': round((first[3] - first[2]) / 1e6, 1) if first else None,
        'received_during_burst': sum(1 for r in records if begin <= r[2] < end),
    }
