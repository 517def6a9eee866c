"""Soak: the encoder and decoder nodes under a synthetic bag at 10 Hz for minutes, sampled every 10 s.

Memory (RSS per node, GPU memory where present), node counters and end-to-end latency percentiles
of the decoded images are sampled every ``--period`` seconds; after ``--warmup`` seconds a linear
trend of each memory series must stay under 5 % growth over the run and p99 latency must not drift.
The bag (``xmodal synth``, KITTI-sized) is played in a loop (``bag_player --loop-seconds``) at its
recorded rate; an encoder slower
than 10 Hz drops frames (newest-frame policy) and the drops are counted.

    nice -n 19 .venv/bin/python bench/soak.py --minutes 10 --out bench/results/soak_cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from xmodal_compress_ros.bench import node_load


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=10.0, help='length of the run')
    parser.add_argument('--period', type=float, default=10.0, help='seconds between samples')
    parser.add_argument('--warmup', type=float, default=60.0, help='seconds excluded from the trends')
    parser.add_argument(
        '--bag', type=Path, default=None, help='sensor bag (default: xmodal synth into --workdir)'
    )
    parser.add_argument('--frames', type=int, default=30, help='frames to synthesize when no --bag is given')
    parser.add_argument(
        '--models', default='', help='LIDAR,TWIN stems (default: models/ if present, else tiny)'
    )
    parser.add_argument('--quality', type=int, default=3)
    parser.add_argument('--workdir', type=Path, default=Path('out/soak'))
    parser.add_argument('--out', type=Path, default=None, help='write the JSON here too')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from xmodal_compress_ros.ros.stream_session import StreamSession

    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    models, which = (
        (tuple(args.models.split(',')), 'given') if args.models else node_load.default_models(args.workdir)
    )
    bag = args.bag or node_load.synthetic_bag(args.workdir, args.frames)
    size = node_load.bag_image_size(bag)
    encoder, decoder = node_load.node_params(bag, models, size, args.quality)
    seconds = args.minutes * 60.0
    result = {
        'machine': f'{platform.machine()} {os.cpu_count()}-core CPU',
        'minutes': args.minutes,
        'models': list(models),
        'model_kind': which,
        'bag': str(bag),
        'image_size': list(size),
        'load_average_start': [round(x, 2) for x in os.getloadavg()],
    }
    with StreamSession(args.workdir / 'logs', encoder, decoder, start_timeout=600) as session:
        start = time.time()
        playback = node_load.LoopedPlayback(session, bag, 1.0, seconds, args.workdir).start()
        sampler = node_load.run_sampled(session, seconds, args.period)
        playback.wait()
        result.update(
            node_load.summarise(sampler, node_load.latencies(session, playback, sampler), args.warmup, start)
        )
        result['player_errors'] = playback.errors
        result['published'] = sum(len(v) for v in playback.published().values())
        result['published_hz'] = round(result['published'] / max(playback.active_seconds(), 1e-9), 2)
    result['memory_growth_under_5_percent'] = node_load.growth_ok(result)
    result['memory_growth_under_5_percent_second_half'] = node_load.growth_ok(result, suffix='_second_half')
    result['load_average_end'] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + '\n')
    print(json.dumps({k: v for k, v in result.items() if k != 'samples'}, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
