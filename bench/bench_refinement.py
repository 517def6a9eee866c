"""Encoder-side latent refinement on held-out KITTI frames: bits saved and encoder time spent.

Each frame is coded at every quality level with ``refine_steps`` 0 (the plain encoder) and each
``--steps`` value, by the same model, conditioned on the same scan; every packet is decoded by the
unchanged decoder and measured from real bytes. BD-rates (PSNR) are against the unrefined encode of
the same frames. Encode times are medians over frames, each step count measured in turn on the same
image, so their ratios hold on this machine.

Frames: every ``--frame-stride``-th held-out frame of bench/eval_codec.py (none used in training).

    .venv/bin/python bench/bench_refinement.py [--model models/xmodal-lidar] [--steps 10 30]
                                               [--frame-stride 4] [--threads 2] [--tag cpu-2core]

Writes bench/results/refinement_<tag>.json. ``--compare A.json B.json`` prints the BD-rates of each
curve of result A against the same curve of result B (two models on the same frames, e.g. the LiDAR
model against its twin at equal encoder effort).
"""
import argparse
import itertools
import json
import sys
from pathlib import Path
import time

import numpy as np
import torch

from eval_codec import (REPO, add_frame_arguments, bd_table, selected_frames, summarise, to_uint8,
                        write_model_result)
from xmodal_compress_ros.bench.metrics import bpp, psnr
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.geometry.projection import depth_condition


def codec_name(steps: int) -> str:
    return 'plain' if steps == 0 else f'refined-{steps}'


def frame_records(model, name: str, frame, step_counts) -> list:
    image = frame.image
    h, w = image.shape[:2]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    depth = None
    if model.uses_lidar:
        depth = torch.from_numpy(depth_condition(frame.points, frame.calib))[None, None]
    records = []
    for q in range(model.quality_levels):
        for steps in step_counts:
            start = time.perf_counter()
            compressed = model.compress(x, depth, quality=q, refine_steps=steps)
            encode_ms = (time.perf_counter() - start) * 1e3
            decoded = to_uint8(model.decompress(compressed, depth))
            records.append({'frame': name, 'codec': codec_name(steps), 'setting': q, 'steps': steps,
                            'bytes': compressed.num_bytes, 'bpp': bpp(compressed.num_bytes, w, h),
                            'psnr_db': psnr(image, decoded), 'refine_encode_ms': encode_ms})
        latest = records[-len(step_counts):]
        print(name, f'q{q}', ' '.join(f"{r['codec']}: {r['bpp']:.4f} bpp {r['psnr_db']:.2f} dB "
                                      f"{r['refine_encode_ms'] / 1e3:.1f} s" for r in latest), flush=True)
    return records


def compare(test_path: str, anchor_path: str) -> list:
    """BD-rates of every curve of one result against the same curve of another, on the same frames."""
    test, anchor = (json.loads(open(path).read()) for path in (test_path, anchor_path))
    if test['frames'] != anchor['frames']:
        raise SystemExit(f'{test_path} and {anchor_path} were measured on different frames')
    summary = [dict(s, codec=f"{which}:{s['codec']}")
               for which, result in (('test', test), ('anchor', anchor)) for s in result['summary']]
    codecs = sorted({s['codec'] for s in test['summary']} & {s['codec'] for s in anchor['summary']})
    rows = bd_table(summary, [(f'test:{c}', f'anchor:{c}') for c in codecs])
    for row in rows:
        print(f"{Path(test['model']).name} {row['test'][5:]} vs {Path(anchor['model']).name}: "
              f"BD-rate {row['bd_rate_psnr_percent']:+.2f} %")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--compare', nargs=2, metavar=('TEST.json', 'ANCHOR.json'),
                        help='only compare two results (see above); runs nothing')
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-lidar'))
    parser.add_argument('--steps', type=int, nargs='+', default=[10, 30])
    parser.add_argument('--frame-stride', type=int, default=4, help='use every n-th held-out frame')
    add_frame_arguments(parser)
    args = parser.parse_args(argv)
    if args.compare:
        compare(*args.compare)
        return 0
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    step_counts = [0] + sorted(set(args.steps) - {0})
    records = []
    for name, frame in itertools.islice(selected_frames(args), 0, None, args.frame_stride):
        records += frame_records(model, name, frame, step_counts)
    summary = summarise(records)
    for entry in summary:
        entry['encode_ms_median'] = float(np.median([r['refine_encode_ms'] for r in records if (
            r['codec'], r['setting']) == (entry['codec'], entry['setting'])]))
    bd = bd_table(summary, [(codec_name(s), 'plain') for s in step_counts[1:]])
    for row in bd:
        print(f"{row['test']} vs {row['anchor']}: BD-rate {row['bd_rate_psnr_percent']:+.2f} %")
    write_model_result('refinement', args, model, {
        'settings': {'steps': step_counts, 'frame_stride': args.frame_stride, 'raw_stride': args.raw_stride,
                     'threads': args.threads},
        'frames': sorted({r['frame'] for r in records}), 'summary': summary, 'bd_rates': bd,
        'records': records})
    return 0


if __name__ == '__main__':
    sys.exit(main())
