"""``xmodal bench-runtime``: per-stage encode/decode latency for each available backend, as JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = 'Time projection, networks and entropy coding per backend at 1242x375 and 1920x1080 (p50/p95/p99).'

DECODE_TARGET_MS = 150.0
# (backend, device, precision) rows measured by default, where available.
DEFAULT_PLAN = (('torch', 'cpu', 'fp32'), ('torch', 'cpu', 'bf16'), ('onnxruntime', 'cpu', 'fp32'),
                ('torch', 'cuda', 'fp32'), ('torch', 'cuda', 'fp16'), ('onnxruntime', 'cuda', 'fp32'),
                ('tensorrt', 'cuda', 'fp32'), ('tensorrt', 'cuda', 'fp16'))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--backends', default='torch,onnxruntime,tensorrt', help='comma-separated backends')
    parser.add_argument('--devices', default='cpu,cuda', help='comma-separated devices')
    parser.add_argument('--precisions', default=None,
                        help='comma-separated precisions (default fp32,fp16, and bf16 where the CPU has AMX: '
                             'without it bf16 is slower than fp32, docs/runtime.md)')
    parser.add_argument('--sizes', default='1242x375,1920x1080', help='image sizes WIDTHxHEIGHT')
    parser.add_argument('--frames', default='100',
                        help='timed frames per row (default 100), or one per --sizes entry: 100,20')
    parser.add_argument('--warmup', type=int, default=5, help='untimed frames first (default 5)')
    parser.add_argument('--model', default='', help='LiDAR model stem (default: the committed model, else an '
                                                    'untrained one of the default architecture)')
    parser.add_argument('--fallback-model', default='', help='twin model stem (default as --model)')
    parser.add_argument('--quality', type=int, default=5)
    parser.add_argument('--threads', type=int, default=0, help='CPU threads (0 = library default)')
    parser.add_argument('--out', type=Path, default=None,
                        help='result JSON (default bench/results/runtime_<device>.json)')


def main(args: argparse.Namespace) -> int:
    import os
    import tempfile
    import time

    from xmodal_compress_ros.cli.export import parse_resolutions
    from xmodal_compress_ros.errors import ParameterError
    from xmodal_compress_ros.runtime.benchmark import (BenchSettings, device_description, run_row,
                                                       unavailable_reason)
    from xmodal_compress_ros.runtime.samples import committed_models, frames_for, untrained_models

    sizes = parse_resolutions(args.sizes)
    frame_counts = _frame_counts(args.frames, len(sizes))
    if args.warmup < 0:
        raise ParameterError(f'--warmup {args.warmup} must be >= 0')
    precisions = (args.precisions or default_precisions()).split(',')
    wanted = [(b, d, p) for b, d, p in DEFAULT_PLAN if b in args.backends.split(',')
              and d in args.devices.split(',') and p in precisions]
    temp = tempfile.TemporaryDirectory(prefix='xmodal-bench-')
    trained = True
    if args.model:
        stems = (args.model, args.fallback_model or '')
    else:
        stems = committed_models()
        if stems is None:
            stems, trained = untrained_models(temp.name), False
    has_cuda = any(d == 'cuda' and unavailable_reason('torch', 'cuda', 'fp32') is None for _, d, _ in wanted)
    rows, unmeasured = [], []
    for (width, height), count in zip(sizes, frame_counts):
        frames = list(frames_for(width, height, count=min(count, 20)))
        source = 'synthetic' if frames[0].name.startswith('synthetic') else 'kitti'
        for backend, device, precision in wanted:
            reason = unavailable_reason(backend, device, precision)
            if reason is not None:
                unmeasured.append({'backend': backend, 'device': device, 'precision': precision,
                                   'width': width, 'height': height, 'reason': reason})
                continue
            settings = BenchSettings(backend, device, precision, width, height)
            row = run_row(settings, stems, frames, count, args.warmup, threads=args.threads,
                          cache_dir=os.path.join(temp.name, 'cache'), quality=args.quality)
            row['source'] = source
            decode_p50 = row['stages_ms']['decode_image']['p50']
            row['decode_p50_meets_150ms'] = decode_p50 <= DECODE_TARGET_MS
            rows.append(row)
            encode_p50 = row['stages_ms']['encode_image']['p50']
            print(f'{backend}/{device}/{precision} {width}x{height}: encode p50 {encode_p50:.1f} ms, '
                  f'decode p50 {decode_p50:.1f} ms', flush=True)
    device = device_description('cuda' if has_cuda else 'cpu')
    result = {
        'device': device,
        'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'load_average_1_5_15': [round(v, 2) for v in os.getloadavg()],
        'models': {'stems': [str(s) for s in stems], 'trained': trained},
        'quality': args.quality, 'threads': args.threads, 'decode_target_ms': DECODE_TARGET_MS,
        'rows': rows, 'unmeasured': unmeasured,
    }
    out = args.out or Path('bench/results') / f'runtime_{device["tag"]}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + '\n')
    temp.cleanup()
    print(json.dumps({'out': str(out), 'rows': len(rows), 'unmeasured': len(unmeasured)}))
    return 0


def default_precisions() -> str:
    """fp32 and fp16, plus bf16 where it pays on this CPU (AMX)."""
    from xmodal_compress_ros.runtime.cpu_features import fast_bf16

    return 'fp32,fp16,bf16' if fast_bf16() else 'fp32,fp16'


def _frame_counts(text: str, sizes: int):
    """``'100'`` or ``'100,20'`` -> one positive count per size."""
    from xmodal_compress_ros.errors import ParameterError

    try:
        counts = [int(v) for v in str(text).split(',')]
    except ValueError:
        raise ParameterError(f'--frames {text!r} must be an integer or one integer per size') from None
    if len(counts) == 1:
        counts *= sizes
    if len(counts) != sizes or min(counts) < 1:
        raise ParameterError(f'--frames {text!r}: give one count >= 1, or one per --sizes entry ({sizes})')
    return counts
