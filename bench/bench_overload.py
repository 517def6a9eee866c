"""Overload: camera images at 3x the rate the encoder node can sustain; latency, drops and memory.

Phase 1 plays the bag at its recorded rate and takes the encoder's service time per frame from its
diagnostics (median scan + image encode time); its inverse is the rate R it sustains. Phase 2 plays
it at ``--factor`` x R for ``--seconds`` and samples every ``--period`` s: with the newest-frame
policy the encoder codes the latest image and drops the ones it could not get to, so end-to-end
latency stays bounded (about one to two encode times plus transport) instead of growing with a
queue, the drops are counted in the nodes' diagnostics, and memory stays flat.

    nice -n 19 .venv/bin/python bench/bench_overload.py --out bench/results/overload_cpu-2core.json
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
    parser.add_argument('--factor', type=float, default=3.0, help='offered rate / sustainable rate')
    parser.add_argument('--seconds', type=float, default=120.0, help='length of the overload phase')
    parser.add_argument(
        '--calibration-seconds',
        type=float,
        default=30.0,
        help='length of phase 1 (the bag at its recorded rate, to time the encoder)',
    )
    parser.add_argument('--period', type=float, default=5.0, help='seconds between samples')
    node_load.add_run_arguments(parser, 'out/overload')
    return parser.parse_args(argv)


def bag_rate_hz(bag: Path) -> float:
    from xmodal_compress_ros.data import rosbag_io

    stamps = [
        e.stamp_ns for e in rosbag_io.read_sensor_bag(bag, info_topic=None) if e.kind == rosbag_io.IMAGE
    ]
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)


def main(argv=None) -> int:
    from xmodal_compress_ros.ros.stream_session import StreamSession

    args = parse_args(argv)
    run = node_load.prepare_run(args)
    bag = run.bag
    recorded_hz = bag_rate_hz(bag)
    result = dict(run.result, bag_rate_hz=round(recorded_hz, 2))
    encoder, decoder = run.encoder, run.decoder
    with StreamSession(args.workdir / 'logs', encoder, decoder, start_timeout=600) as session:
        node_load.LoopedPlayback(
            session, bag, 1.0, args.calibration_seconds, args.workdir / 'calibration'
        ).start().wait()
        # The encoder's worker codes one scan and one image per frame, one after the other: the sum of
        # their median times is its service time, its inverse the rate it sustains.
        enc = node_load.diagnostics_values(session, node_load.ENCODER)
        service_ms = float(enc.get('encode_latency_p50_ms', 0) or 0) + float(
            enc.get('lidar_encode_latency_p50_ms', 0) or 0
        )
        if service_ms <= 0:
            raise RuntimeError(f'the encoder reported no encode times during calibration: {enc}')
        sustainable = 1000.0 / service_ms
        offered = args.factor * sustainable
        result.update(
            {
                'service_ms': round(service_ms, 1),
                'sustainable_hz': round(sustainable, 2),
                'offered_hz': round(offered, 2),
            }
        )
        print(f'encoder sustains {sustainable:.2f} images/s; offering {offered:.2f}/s', flush=True)
        counters = node_load.diagnostics_values(session, node_load.ENCODER)
        start = time.time()
        playback = node_load.LoopedPlayback(
            session, bag, offered / recorded_hz, args.seconds, args.workdir / 'overload'
        ).start()
        sampler = node_load.run_sampled(session, args.seconds, args.period)
        playback.wait()
        summary = node_load.summarise(
            sampler, node_load.latencies(session, playback, sampler), min(20.0, args.seconds / 4), start
        )
        published = sum(len(v) for v in playback.published().values())
        enc = node_load.diagnostics_values(session, node_load.ENCODER)
        dec = node_load.diagnostics_values(session, node_load.DECODER)
    encoded = int(enc.get('frames_out', 0)) - int(counters.get('frames_out', 0))
    dropped = int(enc.get('dropped', 0)) - int(counters.get('dropped', 0))
    play_s = playback.active_seconds()
    result.update(summary)
    result.update(
        {
            'published': published,
            'encoded': encoded,
            'encoder_dropped': dropped,
            'playing_s': round(play_s, 1),
            'published_hz_while_playing': round(published / play_s, 2),
            'encoded_hz_while_playing': round(encoded / play_s, 2),
            'drops_counted': {k: v for k, v in enc.items() if k.startswith('dropped')},
            'decoder_dropped': dec.get('dropped.superseded'),
            'decoder_errors': dec.get('errors'),
            'player_errors': playback.errors,
            'memory_growth_under_5_percent': node_load.growth_ok(summary),
            'memory_growth_under_5_percent_second_half': node_load.growth_ok(summary, suffix='_second_half'),
            'load_average_end': node_load.load_average(),
        }
    )
    node_load.write_result(result, args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
