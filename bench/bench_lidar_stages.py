"""Where the predictive LiDAR codec's time goes: each stage timed inside whole encode and decode calls.

On one CPU core (the process is pinned to one), every full KITTI scan (as ``bench_lidar_codec.py``
reads them) is coded with ``encode_scan`` and decoded with ``decode_scan`` at one bound, ``--rounds``
times; the codec's stage functions are wrapped to add up their thread CPU time within those calls,
so each stage is timed where it runs (with the caches the stages before it leave), not alone.
Per stage: the mean over scans of its median over rounds, in ms; ``rest`` is the call's time outside
the listed stages (Python and numpy between them). Stages nest as listed: ``entropy coding`` holds
``table`` and ``rANS``. Writes ``bench/results/lidar_codec_stages_<tag>.json``.

    python bench/bench_lidar_stages.py [--data ../shared/data] [--bound 0.01] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench_lidar_codec import full_scans
from xmodal_compress_ros.codec import lidar_codec, lidar_predictive, rans_kernels
from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig

#: (stage name, module, function), top-level stages first; nested ones name their parent.
ENCODE_STAGES = (
    ('input checks', lidar_codec, '_clean'),
    ('intensity codes', lidar_codec, '_quantize_intensity'),
    ('coordinate range', lidar_predictive, '_steps'),
    ('laser layout', lidar_predictive, '_laser_order'),
    ('intensity ranks', lidar_predictive, '_intensity_ranks'),
    ('laser heights', lidar_predictive, '_laser_heights'),
    ('firing step', lidar_predictive, '_sampled_azimuths'),
    ('coded values', lidar_predictive, '_choose_spherical'),
    ('symbols', lidar_predictive, '_spinning_symbols'),
    ('entropy coding', lidar_predictive, '_entropy_code'),
    ('entropy coding: table', lidar_predictive, '_build_table'),
    ('entropy coding: rANS', rans_kernels, 'encode_sequence'),
    ('intensity column', lidar_codec, '_add_intensity'),
)
DECODE_STAGES = (
    ('tables', lidar_predictive, '_parse_table'),
    ('lookups', lidar_predictive, '_decoder_tables'),
    ('rANS, symbols and points', lidar_predictive, '_decode_spinning'),
    ('intensity codes', lidar_predictive, '_intensity_codes'),
    ('intensity column', lidar_codec, '_add_intensity'),
)


class StageClock:
    """Adds up the thread CPU time of the wrapped functions within the call (encode or decode) they
    were wrapped for."""

    def __init__(self):
        self.active = None
        self.ms = defaultdict(float)
        self._originals = []

    def wrap(self, call, stages):
        for name, module, function in stages:
            self._originals.append((module, function, getattr(module, function)))
            setattr(module, function, self._timed(call, name, getattr(module, function)))

    def unwrap(self):
        """Put the codec's functions back."""
        for module, function, original in reversed(self._originals):
            setattr(module, function, original)
        self._originals.clear()

    def _timed(self, call, name, function):
        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                if self.active == call:
                    self.ms[f'{call}: {name}'] += (time.thread_time() - start) * 1e3
        return timed

    def run(self, call, function):
        """Time ``function()`` as ``call``; returns its result."""
        self.active = call
        start = time.thread_time()
        try:
            return function()
        finally:
            self.ms[f'{call}: total'] += (time.thread_time() - start) * 1e3
            self.active = None


def stage_times(scans, config: LidarCodecConfig, rounds: int) -> dict:
    """{'encode: STAGE' or 'decode: STAGE': mean over ``scans`` ((name, points) pairs) of the
    median over ``rounds`` of that stage's thread CPU ms, with each call's 'total' and 'rest'}."""
    lidar_codec.warm_up(config)  # compile outside the timings
    clock = StageClock()
    clock.wrap('encode', ENCODE_STAGES)
    clock.wrap('decode', DECODE_STAGES)
    per_scan = defaultdict(lambda: np.zeros((rounds, len(scans))))
    try:
        for round_ in range(rounds):
            for k, (_, points) in enumerate(scans):
                clock.ms.clear()
                encoded = clock.run('encode', lambda: lidar_codec.encode_scan(points, config))
                clock.run('decode', lambda: lidar_codec.decode_scan(encoded.payload, encoded.num_points,
                                                                    config))
                for key, ms in clock.ms.items():
                    per_scan[key][round_, k] = ms
    finally:
        clock.unwrap()
    means = {key: float(np.median(values, axis=0).mean()) for key, values in per_scan.items()}
    for call, stages in (('encode', ENCODE_STAGES), ('decode', DECODE_STAGES)):
        top = [name for name, _, _ in stages if ':' not in name]
        inside = sum(means.get(f'{call}: {name}', 0.0) for name in top)
        means[f'{call}: rest'] = means[f'{call}: total'] - inside
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', type=Path, default=Path(__file__).resolve().parents[2] / 'shared' / 'data')
    parser.add_argument('--bound', type=float, default=0.01)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--limit', type=int, default=0, help='first N scans only (0: all)')
    parser.add_argument('--tag', default=socket.gethostname())
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    scans = list(full_scans(args.data))[:args.limit or None]
    if not scans:
        raise SystemExit(f'no KITTI scans under {args.data}')
    load = [os.getloadavg()]
    means = stage_times(scans, LidarCodecConfig(max_error=args.bound), args.rounds)
    load.append(os.getloadavg())
    for key, ms in means.items():
        print(f'{key:<40} {ms:6.2f} ms')
    out = Path(__file__).resolve().parent / 'results' / f'lidar_codec_stages_{args.tag}.json'
    out.write_text(json.dumps(dict(host=socket.gethostname(), cpu_count=os.cpu_count(), one_core=True,
                                   bound=args.bound, rounds=args.rounds, scans=len(scans),
                                   load_average_start_end=load, thread_cpu_ms_per_scan=means), indent=1))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
