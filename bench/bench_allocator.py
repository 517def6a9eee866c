"""The nodes' malloc setting against glibc's defaults, side by side: whole encodes and decodes on the CPU.

``runtime.allocator.keep_freed_memory`` (what the nodes and the ``xmodal`` CLI call when they start)
keeps the memory a frame frees for the next one. Each round runs one child process per setting, the
first alternating, and each child codes the same frames the way ``bench_stages.py`` does (one Encoder
and one Decoder of ``--tier``, real KITTI raw frames at 1242x375 with their LiDAR scans, key frames),
so both settings meet the same machine. Per stage (the LiDAR scan's encode and decode, the image's):
p50 over every frame of every round, and the median over rounds of keep / default; the process's
minor page faults per timed frame (median) and each child's peak resident memory; and whether both
settings wrote the same packets (the setting must change time, never bits). Writes
``bench/results/allocator_<tier>_<thread>_<tag>.json``.

    python bench/bench_allocator.py [--tier fast] [--frames 10] [--rounds 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor

import numpy as np

import bench_stages
from xmodal_compress_ros.runtime import allocator

REPO = Path(__file__).resolve().parents[1]
STAGES = ('lidar_encode', 'encode_image', 'lidar_decode', 'decode_image')
SETTINGS = ('default', 'keep')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tier', default='fast', choices=('fast', 'quality'))
    parser.add_argument('--frames', type=int, default=10, help='timed frames per child')
    parser.add_argument('--warmup', type=int, default=3, help='untimed frames per child first')
    parser.add_argument('--rounds', type=int, default=3, help='children per setting, alternating')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads of the networks')
    parser.add_argument('--thread', default='worker', choices=('worker', 'main'),
                        help="code in a worker thread, as the nodes do (default), or in the main thread, as "
                             "the CLI does (glibc's malloc keeps a thread's memory in an arena of its own)")
    parser.add_argument('--tag', default='', help='result file suffix (default: cpu-<cores>core)')
    parser.add_argument('--child', type=Path, help=argparse.SUPPRESS)  # one child's samples, to this file
    parser.add_argument('--setting', choices=SETTINGS, help=argparse.SUPPRESS)  # the child's setting
    return parser.parse_args(argv)


def child(args) -> None:
    """Code the frames under ``args.setting`` and write the samples, faults and peak memory."""
    if args.setting == 'keep' and not allocator.keep_freed_memory():
        raise SystemExit('keep_freed_memory() did not take effect here (not glibc, or GLIBC_TUNABLES set)')
    stage_args = bench_stages.parse_args(['--frames', str(args.frames), '--warmup', str(args.warmup),
                                          '--threads', str(args.threads)])
    stage_args.tier = args.tier
    if args.thread == 'main':
        measured = bench_stages.measure(stage_args)
    else:
        with ThreadPoolExecutor(1) as worker:
            measured = worker.submit(bench_stages.measure, stage_args).result()
    result = {stage: measured['samples'][stage] for stage in STAGES}
    result.update(faults_per_frame=float(np.median(measured['minor_faults'])),
                  peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  packets_sha256=measured['packets_sha256'], source=measured['source'])
    args.child.write_text(json.dumps(result))


def run_child(args, setting: str, round_index: int) -> dict:
    with tempfile.TemporaryDirectory(prefix='xmodal-allocator-') as folder:
        out = Path(folder) / 'samples.json'
        command = [sys.executable, str(Path(__file__).resolve()), '--child', str(out), '--setting', setting,
                   '--tier', args.tier, '--frames', str(args.frames), '--warmup', str(args.warmup),
                   '--threads', str(args.threads), '--thread', args.thread]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        for name in ('GLIBC_TUNABLES', *allocator.environment()):  # glibc's defaults on the default side
            env.pop(name, None)
        print(f'round {round_index + 1}: {setting}', flush=True)
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(args)
        return {}
    from xmodal_compress_ros.runtime.cpu_features import cpu_name

    runs = {setting: [] for setting in SETTINGS}
    for round_index in range(args.rounds):
        order = SETTINGS if round_index % 2 == 0 else SETTINGS[::-1]
        for setting in order:
            runs[setting].append(run_child(args, setting, round_index))
    summary = {}
    for stage in STAGES:
        p50 = {setting: float(np.median([v for run in runs[setting] for v in run[stage]]))
               for setting in SETTINGS}
        ratios = [np.median(keep[stage]) / np.median(default[stage])
                  for keep, default in zip(runs['keep'], runs['default'])]
        summary[stage] = {'default_ms_p50': p50['default'], 'keep_ms_p50': p50['keep'],
                          'keep_over_default_median_of_rounds': float(np.median(ratios))}
        print(f'{stage:14s} default {p50["default"]:7.1f} ms  keep {p50["keep"]:7.1f} ms  '
              f'keep / default {np.median(ratios):.3f}')
    for setting in SETTINGS:
        summary[setting] = {key: [run[key] for run in runs[setting]]
                            for key in ('faults_per_frame', 'peak_rss_mb')}
        print(f'{setting:8s} page faults per frame {summary[setting]["faults_per_frame"]}, '
              f'peak RSS MB {[round(v) for v in summary[setting]["peak_rss_mb"]]}')
    same = len({run['packets_sha256'] for setting in SETTINGS for run in runs[setting]}) == 1
    print('same packets under both settings:', same)
    result = {'cpu': cpu_name(), 'cpu_count': os.cpu_count(), 'tier': args.tier, 'thread': args.thread,
              'threads': args.threads,
              'frames': args.frames, 'warmup': args.warmup, 'rounds': args.rounds,
              'source': runs['default'][0]['source'], 'same_packets': same, 'stages': summary}
    tag = args.tag or f'cpu-{os.cpu_count()}core'
    path = REPO / 'bench' / 'results' / f'allocator_{args.tier}_{args.thread}_{tag}.json'
    path.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {path}')
    return result


if __name__ == '__main__':
    main()
