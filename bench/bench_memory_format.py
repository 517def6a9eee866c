"""The torch backend's network stages in NCHW and in channels_last (NHWC), side by side in one process.

For each model (the LiDAR model and its twin) and each memory format, an Encoder and a Decoder on
the torch backend code the same real KITTI frames in turn (synthetic frames when ../shared/data is
absent), so both formats meet the same machine load. Prints the p50 of each stage and writes
bench/results/memory_format_<tag>.json.

    .venv/bin/python bench/bench_memory_format.py [--frames 20] [--device cpu] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.runtime import torch_backend
from xmodal_compress_ros.runtime.benchmark import device_description, device_tag
from xmodal_compress_ros.runtime.samples import frames_for

REPO = Path(__file__).resolve().parents[1]
FORMATS = {'nchw': torch.contiguous_format, 'channels_last': torch.channels_last}
STAGES = ('encoder_network', 'mean_network', 'entropy_encode', 'encode_total', 'decoder_network',
          'entropy_decode', 'decode_total')


def add_common_arguments(parser, kind: str) -> None:
    """The options every side-by-side coding benchmark shares; ``kind`` names its result file."""
    parser.add_argument('--frames', type=int, default=20, help='timed frames (after 2 untimed)')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (0 = library default)')
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-lidar'))
    parser.add_argument('--twin', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--quality', type=int, default=5)
    parser.add_argument('--out', type=Path, help=f'result JSON (default bench/results/{kind}_<tag>.json)')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, 'memory_format')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='fp32')
    return parser.parse_args(argv)


def coders(args, stems, calib, size):
    """An (Encoder, Decoder) pair per memory format: the backend reads MEMORY_FORMAT when built."""
    common = dict(backend='torch', device=args.device, precision=args.precision, profile=True,
                  threads=args.threads, warmup=False)
    pairs = {}
    for name, memory_format in FORMATS.items():
        torch_backend.MEMORY_FORMAT = memory_format
        pairs[name] = (Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], quality=args.quality,
                                             **common), calib),
                       Decoder(DecoderConfig(models=tuple(stems), resolutions=(size,), **common)))
    torch_backend.MEMORY_FORMAT = torch.channels_last
    return pairs


def time_frame(encoder, decoder, frame, index):
    lidar_packet, scan = encoder.encode_scan(frame.points, index)
    encoded = encoder.encode_image(frame.image, index, scan)
    decoded_scan = decoder.decode_lidar(lidar_packet)
    start = time.perf_counter()
    decoder.decode_image(encoded.packet, decoded_scan)
    decode_ms = (time.perf_counter() - start) * 1e3
    times = dict(encoder.last_timings, encode_total=encoder.last_timings['total'], decode_total=decode_ms)
    times.update({k: v for k, v in decoder.last_timings.items() if k in STAGES})
    return times


def backend_and_precision(entry: str) -> tuple:
    """``'torch:bf16'`` -> ('torch', 'bf16'); a backend without a precision runs fp32."""
    backend, _, precision = entry.partition(':')
    return backend, precision or 'fp32'


def p50_in_turn(pairs: dict, frames: list, count: int, before=None) -> dict:
    """Code ``count`` frames (after 2 untimed) with every (encoder, decoder) pair in turn, so that all
    meet the same machine load; the p50 of each stage per pair, in ms. ``before(key)``, if given, runs
    before each pair codes a frame (to switch what the pair measures)."""
    samples = {key: {stage: [] for stage in STAGES} for key in pairs}
    for index in range(2 + count):
        for key, (encoder, decoder) in pairs.items():
            if before is not None:
                before(key)
            times = time_frame(encoder, decoder, frames[index % len(frames)], index)
            for stage in STAGES if index >= 2 else ():
                samples[key][stage].append(times[stage])
    return {key: {stage: round(float(np.median(v)), 1) for stage, v in stages.items()}
            for key, stages in samples.items()}


def write_result(kind: str, args, device: str, frames: list, rows: list, **fields) -> dict:
    """bench/results/<kind>_<device tag>.json (or ``args.out``): the run's settings and its rows."""
    result = {'device': device_description(device),
              'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'image_size': [frames[0].image.shape[1], frames[0].image.shape[0]], 'frames': args.frames,
              'threads': args.threads, 'quality': args.quality, 'source': frames[0].name, **fields,
              'rows': rows}
    out = args.out or REPO / 'bench' / 'results' / f'{kind}_{device_tag(device)}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    frames = list(frames_for(1242, 375, 10))
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    models = {'lidar': (args.model, args.twin), 'twin': (args.twin, args.twin)}
    pairs = {(model, name): pair for model, stems in models.items()
             for name, pair in coders(args, stems, frames[0].calib, size).items()}
    p50 = p50_in_turn(pairs, frames, args.frames)
    rows = [{'model': model, 'memory_format': name, 'p50_ms': p50[model, name]} for model, name in pairs]
    for row in rows:
        print(f"{row['model']:6s} {row['memory_format']:14s} "
              + '  '.join(f'{stage} {ms:6.1f}' for stage, ms in row['p50_ms'].items()))
    return write_result('memory_format', args, args.device, frames, rows, precision=args.precision)


if __name__ == '__main__':
    main()
