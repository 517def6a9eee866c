"""Speed and overhead of the entropy coder at KITTI latent size.

Synthetic but realistic symbols: each y element gets a scale index, its symbol is
round(N(0, scale)) clamped to the table (what a mean-scale hyperprior produces after
subtracting the mean); z symbols come from per-channel discretized Laplacians. Two index
profiles: ``uniform`` (indexes spread evenly over the 64 scales, the hard case: many wide rows)
and ``skewed`` (index = floor(64 u^3), most elements at small scales, as trained models give).

Both engines of the coder, which write the same bytes: ``constriction`` (the reference; it holds the
GIL) and ``numba`` (compiled kernels that drop the GIL and code the substreams on all cores). A GIL
check decodes one stream twice, serially and in two threads, with each engine.

Prints a table and writes ``bench/results/entropy_<tag>.json`` (tag: --tag, default the host name).

    python bench/bench_entropy.py [--channels 320 --height 24 --width 80 --repeats 5]
                                  [--engines constriction numba]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from xmodal_compress_ros.codec import rans_kernels
from xmodal_compress_ros.codec.entropy import (
    ConstrictionAnsCoder, PmfTable, clamp_symbols, default_scale_table, gaussian_table, table_from_pmfs,
)


def y_latent(rng: np.random.Generator, size: int, profile: str, scales: np.ndarray, table: PmfTable):
    if profile == 'uniform':
        indexes = rng.integers(0, scales.size, size)
    else:
        indexes = np.floor(scales.size * rng.random(size) ** 3).astype(np.int64)
    symbols = np.round(rng.normal(0.0, scales[indexes])).astype(np.int64)
    return clamp_symbols(symbols, indexes, table), indexes.astype(np.int32)


def z_latent(rng: np.random.Generator, channels: int, per_channel: int, tail: int = 16):
    """Per-channel discretized Laplacians with spreads 0.3..4 and the matching table."""
    spread = np.exp(rng.uniform(np.log(0.3), np.log(4.0), channels))
    values = np.arange(-tail, tail + 1)
    pmf = np.exp(-np.abs(values)[None, :] / spread[:, None])
    table = table_from_pmfs(pmf, np.full(channels, -tail))
    indexes = np.repeat(np.arange(channels), per_channel).astype(np.int32)
    symbols = np.round(rng.laplace(0.0, spread[indexes])).astype(np.int64)
    return table, clamp_symbols(symbols, indexes, table), indexes


def best_of(repeats: int, function, clock=time.perf_counter) -> float:
    """Shortest of ``repeats`` runs on ``clock`` (wall time, or process CPU time on a shared machine)."""
    times = []
    for _ in range(repeats):
        start = clock()
        function()
        times.append(clock() - start)
    return min(times)


def gil_check(work) -> dict:
    """Run ``work`` twice serially and in two threads: equal times = the GIL is held."""
    serial = best_of(3, lambda: (work(), work()))

    def threaded():
        threads = [threading.Thread(target=work) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    parallel = best_of(3, threaded)
    return {'serial_s': serial, 'two_threads_s': parallel, 'speedup': serial / parallel}


def one_row_decoders(y_table, scales, rng) -> dict:
    """Per engine, a function decoding 2,000,000 symbols of one row from one stream."""
    import constriction

    row = 40
    model = ConstrictionAnsCoder._model(y_table, row)
    row_symbols = np.round(rng.normal(0, scales[row], 2_000_000)).astype(np.int64)
    columns = (clamp_symbols(row_symbols, np.full(row_symbols.size, row), y_table)
               - y_table.offsets[row]).astype(np.int32)
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(columns, model)
    words = coder.get_compressed()
    runs = [[(row, 0, columns.size)]]
    order = np.arange(columns.size, dtype=np.int32)
    return {
        'constriction': lambda: constriction.stream.stack.AnsCoder(words).decode(model, columns.size),
        'numba': lambda: rans_kernels.decode([words], order, runs, y_table, np.empty(columns.size, np.int32)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--channels', type=int, default=320, help='y channels (M)')
    parser.add_argument('--height', type=int, default=24, help='y height (padded 384 / 16)')
    parser.add_argument('--width', type=int, default=80, help='y width (padded 1280 / 16)')
    parser.add_argument('--z-channels', type=int, default=192)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--substreams', type=int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--engines', nargs='+', choices=('constriction', 'numba'),
                        default=['constriction', 'numba'] if rans_kernels.available() else ['constriction'])
    parser.add_argument('--out', type=Path, default=Path(__file__).parent / 'results')
    parser.add_argument('--tag', default=socket.gethostname(), help='result file suffix, e.g. cpu-2core')
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    scales = default_scale_table()
    y_table = gaussian_table(scales)
    y_size = args.channels * args.height * args.width
    z_per_channel = (args.height // 4) * (args.width // 4)
    z_table, z_symbols, z_indexes = z_latent(rng, args.z_channels, z_per_channel)
    total = y_size + z_symbols.size
    print(f'{y_size} y symbols ({args.channels}x{args.height}x{args.width}) + {z_symbols.size} z symbols '
          f'= {total}; best of {args.repeats}; {os.cpu_count()} CPUs')
    print('Msym/s: wall clock / process CPU time (the second is what an idle core would give)')
    print(f'{"engine":12} {"profile":8} {"K":>2} {"enc Msym/s":>11} {"dec Msym/s":>11} {"bytes":>9} '
          f'{"ideal":>9} {"overhead":>8}')
    records = []
    latents = {}
    for profile in ('uniform', 'skewed'):
        latents[profile] = y_latent(rng, y_size, profile, scales, y_table)
    for engine, profile, substreams in itertools.product(args.engines, latents, args.substreams):
        y_symbols, y_indexes = latents[profile]
        ideal_bits = y_table.ideal_bits(y_symbols, y_indexes) + z_table.ideal_bits(z_symbols, z_indexes)
        coder = ConstrictionAnsCoder(substreams, engine)

        def encode():
            y_bytes = coder.encode(y_symbols, y_indexes, y_table)
            return y_bytes, coder.encode(z_symbols, z_indexes, z_table)

        y_bytes, z_bytes = encode()

        def decode():
            return coder.decode(y_bytes, y_indexes, y_table), coder.decode(z_bytes, z_indexes, z_table)

        y_back, z_back = decode()
        assert np.array_equal(y_back, y_symbols) and np.array_equal(z_back, z_symbols)
        encode_s = best_of(args.repeats, encode)
        decode_s = best_of(args.repeats, decode)
        encode_cpu_s = best_of(args.repeats, encode, time.process_time)
        decode_cpu_s = best_of(args.repeats, decode, time.process_time)
        size = len(y_bytes) + len(z_bytes)
        record = {
            'engine': engine, 'profile': profile, 'substreams': substreams, 'symbols': total,
            'encode_s': encode_s, 'decode_s': decode_s,
            'encode_cpu_s': encode_cpu_s, 'decode_cpu_s': decode_cpu_s,
            'encode_msym_per_s': total / encode_s / 1e6, 'decode_msym_per_s': total / decode_s / 1e6,
            'encode_msym_per_cpu_s': total / encode_cpu_s / 1e6,
            'decode_msym_per_cpu_s': total / decode_cpu_s / 1e6,
            'bytes': size, 'ideal_bytes': ideal_bits / 8,
            'overhead_pct': 100 * (8 * size / ideal_bits - 1),
        }
        records.append(record)
        speeds = [f'{record[f"{step}_msym_per_s"]:.1f} / {record[f"{step}_msym_per_cpu_s"]:.1f}'
                  for step in ('encode', 'decode')]
        print(f'{engine:12} {profile:8} {substreams:>2} {speeds[0]:>11} {speeds[1]:>11} {size:>9} '
              f'{ideal_bits / 8:>9.0f} {record["overhead_pct"]:>7.3f}%')

    gil = {}
    for engine, work in one_row_decoders(y_table, scales, rng).items():
        if engine in args.engines:
            gil[engine] = gil_check(work)
            check = gil[engine]
            print(f'GIL, {engine}: two decodes serially {check["serial_s"] * 1e3:.1f} ms, in two threads '
                  f'{check["two_threads_s"] * 1e3:.1f} ms (speedup {check["speedup"]:.2f}x)')

    args.out.mkdir(parents=True, exist_ok=True)
    result = {
        'host': socket.gethostname(), 'tag': args.tag, 'cpus': os.cpu_count(),
        'y_shape': [args.channels, args.height, args.width],
        'z_shape': [args.z_channels, args.height // 4, args.width // 4], 'repeats': args.repeats,
        'records': records, 'gil': gil,
        'load_average': os.getloadavg(),
        'median_msym_per_s': {
            engine: {step: statistics.median(r[f'{step}_msym_per_s'] for r in records
                                             if r['engine'] == engine)
                     for step in ('encode', 'decode')}
            for engine in args.engines},
    }
    path = args.out / f'entropy_{args.tag}.json'
    path.write_text(json.dumps(result, indent=2) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
