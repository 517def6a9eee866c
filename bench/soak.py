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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # harness/ is in the checkout
from harness import node_load  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=10.0, help='length of the run')
    parser.add_argument('--period', type=float, default=10.0, help='seconds between samples')
    parser.add_argument('--warmup', type=float, default=60.0, help='seconds excluded from the trends')
    node_load.add_run_arguments(parser, 'out/soak')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from xmodal_compress_ros.ros.stream_session import StreamSession

    args = parse_args(argv)
    run = node_load.prepare_run(args)
    seconds = args.minutes * 60.0
    result = dict(run.result, minutes=args.minutes)
    with StreamSession(args.workdir / 'logs', run.encoder, run.decoder, start_timeout=600) as session:
        start = time.time()
        playback = node_load.LoopedPlayback(session, run.bag, 1.0, seconds, args.workdir).start()
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
    result['load_average_end'] = node_load.load_average()
    node_load.write_result(result, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
