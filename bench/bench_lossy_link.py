"""Delivery and latency of packets over a lossy, delaying, reordering link between two network namespaces.

Needs root (network namespaces, nftables, a TUN device); see ``harness/lossy_link.py``.

Part 1 (``raw``): two rclpy processes, one per namespace, send 20 KB CompressedImage messages at
10 Hz under each transport setting (IP-fragmented 64 KB datagrams vs. DDS fragments of 1400 bytes;
best effort vs. reliable) and each loss rate, plus a 2 s burst of 100 % loss.
Part 2 (``nodes``): the real encoder node (with the bag player) in one namespace and the decoder
node in the other, under the recommended transport: delivery of decoded images, every packet that
arrives decoded, recovery after a loss burst, and a decoder started late.

    sudo nice -n 19 .venv/bin/python bench/bench_lossy_link.py --out bench/results/lossy_link_cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # harness/ is in the checkout
from harness import link_runs  # noqa: E402
from harness.lossy_link import LinkConfig, LossyLink, unavailable_reason  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--parts', default='raw,nodes', help='comma-separated: raw, nodes')
    parser.add_argument('--loss', default='0,10,30', help='loss percentages per IP packet, each direction')
    parser.add_argument('--delay-ms', type=float, default=20.0, help='one-way delay of the relay')
    parser.add_argument(
        '--jitter-ms', type=float, default=5.0, help='uniform extra delay per packet (reorders)'
    )
    parser.add_argument(
        '--transports',
        default=','.join(link_runs.TRANSPORTS),
        help=f'raw part: any of {", ".join(link_runs.TRANSPORTS)}',
    )
    parser.add_argument('--count', type=int, default=100, help='raw part: messages per run')
    parser.add_argument('--bytes', type=int, default=20_000, help='raw part: message payload')
    parser.add_argument('--rate', type=float, default=10.0, help='messages (frames) per second')
    parser.add_argument(
        '--models',
        default='',
        help='nodes part: LIDAR,TWIN model stems (default: tiny '
        'untrained models; the packet path is the same, only the image quality differs)',
    )
    parser.add_argument('--node-seconds', type=float, default=30.0, help='nodes part: playback per run')
    parser.add_argument('--node-width', type=int, default=256, help='nodes part: image width')
    parser.add_argument('--node-height', type=int, default=128, help='nodes part: image height')
    parser.add_argument('--node-points', type=int, default=6000, help='nodes part: LiDAR points per scan')
    parser.add_argument('--out', type=Path, default=None, help='write the JSON here too')
    return parser.parse_args(argv)


def raw_part(args, workdir: Path) -> list:
    runs = []
    losses = [int(x) for x in args.loss.split(',')]
    for name in args.transports.split(','):
        transport = link_runs.TRANSPORTS[name]
        for loss in losses:
            config = LinkConfig(loss, args.delay_ms, args.jitter_ms)
            with LossyLink(config) as link:
                result = link_runs.measure_raw(
                    link,
                    transport,
                    workdir / f'{name.replace("/", "-")}-{loss}',
                    args.count,
                    args.rate,
                    args.bytes,
                )
            runs.append(result)
            print(json.dumps(_brief(result)), flush=True)
        config = LinkConfig(10, args.delay_ms, args.jitter_ms)
        with LossyLink(config) as link:
            result = link_runs.measure_raw(
                link,
                transport,
                workdir / f'{name.replace("/", "-")}-burst',
                args.count,
                args.rate,
                args.bytes,
                burst=(6.0, 2.0, 100),
            )
        runs.append(result)
        print(json.dumps(_brief(result)), flush=True)
    return runs


def _brief(result: dict) -> dict:
    keys = ('transport', 'loss_percent', 'sent', 'received', 'delivery', 'latency_ms', 'burst', 'scenario')
    return {k: result[k] for k in keys if k in result}


def main(argv=None) -> int:
    args = parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f'cannot run: {reason}', file=sys.stderr)
        return 2
    parts = args.parts.split(',')
    result = {
        'machine': f'{platform.machine()} {os.cpu_count()}-core CPU',
        'kernel': platform.release(),
        'delay_ms': args.delay_ms,
        'jitter_ms': args.jitter_ms,
        'rate_hz': args.rate,
        'load_average_start': [round(x, 2) for x in os.getloadavg()],
        'started': time.strftime('%F %T'),
    }
    with tempfile.TemporaryDirectory(prefix='xmodal-link-') as tmp:
        if 'raw' in parts:
            result['raw'] = {
                'bytes': args.bytes,
                'count': args.count,
                'runs': raw_part(args, Path(tmp) / 'raw'),
            }
        if 'nodes' in parts:
            from harness import node_link_runs

            result['nodes'] = node_link_runs.bench(args, Path(tmp) / 'nodes')
    result['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')
    print(text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
