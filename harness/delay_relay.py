"""A delaying IP relay on a TUN device: every packet it reads is written back after a delay plus jitter.

``python harness/delay_relay.py --tun DEV --delay-ms 20 --jitter-ms 10 --seconds 120``

Runs inside the relay namespace of :class:`harness.lossy_link.LossyLink`, where policy routing sends
every packet arriving from either veth into the TUN device; what this relay writes back re-enters
the routing table from the TUN side and goes out the other veth. It works on IP packets (and IP
fragments, which are relayed one by one), so it is transparent to DDS: no ports or locators to
rewrite. A uniform jitter per packet reorders packets. The loop is bounded: it stops after
``--seconds``, or when its standard input closes (the harness that started it went away).
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65536
#: Packets held at most; beyond it new packets are dropped (a full router queue), so memory is bounded.
MAX_QUEUED = 20_000


def open_tun(name: str) -> int:
    """Attach to the (persistent) TUN device ``name``; returns its file descriptor."""
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def relay(fd: int, delay_s: float, jitter_s: float, seconds: float, seed: int = 0) -> dict:
    """Relay until ``seconds`` pass or stdin closes; returns packet counts."""
    rng = random.Random(seed)
    queue: list = []
    counts = {'relayed': 0, 'overflow': 0}
    order = 0
    end = time.monotonic() + seconds
    watched = [fd, sys.stdin.fileno()]
    while True:
        now = time.monotonic()
        if now >= end:
            break
        while queue and queue[0][0] <= now:
            os.write(fd, heapq.heappop(queue)[2])
            counts['relayed'] += 1
        wait = min(end - now, queue[0][0] - now if queue else 0.1, 0.1)
        readable, _, _ = select.select(watched, [], [], max(wait, 0.0))
        if sys.stdin.fileno() in readable and not os.read(sys.stdin.fileno(), 1024):
            break
        if fd in readable:
            packet = os.read(fd, MAX_PACKET)
            if len(queue) >= MAX_QUEUED:
                counts['overflow'] += 1
                continue
            order += 1
            due = time.monotonic() + delay_s + rng.uniform(0.0, jitter_s)
            heapq.heappush(queue, (due, order, packet))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='delay_relay', description=__doc__.splitlines()[0])
    parser.add_argument('--tun', required=True, help='TUN device to attach to (created by the harness)')
    parser.add_argument('--delay-ms', type=float, default=0.0, help='one-way delay added to every packet')
    parser.add_argument(
        '--jitter-ms', type=float, default=0.0, help='extra uniform 0..jitter delay per packet'
    )
    parser.add_argument('--seconds', type=float, default=600.0, help='stop after this long')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    fd = open_tun(args.tun)
    print('ready', flush=True)
    counts = relay(fd, args.delay_ms / 1e3, args.jitter_ms / 1e3, args.seconds, args.seed)
    print(counts, flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
