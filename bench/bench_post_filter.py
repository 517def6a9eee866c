"""What the post filter costs at the decoder: each model with its filter and without it, side by side.

The "without" variant is the same model file with the post filter removed (written to a temporary
folder), so the two differ only by the filter. For each backend, model and variant an Encoder and a
Decoder code the same real KITTI frames in turn (synthetic frames when ../shared/data is absent), so
every variant meets the same machine load. Prints the p50 of each stage and writes
bench/results/post_filter_cost_<tag>.json.

    .venv/bin/python bench/bench_post_filter.py [--frames 20] [--backends torch,onnxruntime] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_memory_format import STAGES, time_frame
from xmodal_compress_ros.codec.model_io import load_model, save_model
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.runtime.benchmark import device_description, device_tag
from xmodal_compress_ros.runtime.samples import frames_for

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=20, help='timed frames (after 2 untimed)')
    parser.add_argument('--backends', default='torch,onnxruntime')
    parser.add_argument('--threads', type=int, default=2, help='CPU threads (0 = library default)')
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-lidar'))
    parser.add_argument('--twin', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--quality', type=int, default=3)
    parser.add_argument('--out', type=Path,
                        help='result JSON (default bench/results/post_filter_cost_<tag>.json)')
    return parser.parse_args(argv)


def without_post_filter(stem: str, out_dir: Path) -> str:
    """Write ``stem``'s model with its post filter removed to ``out_dir``; returns the new stem."""
    model = load_model(stem)
    if model.post_filter is None:
        raise SystemExit(f'{stem} has no post filter to compare against')
    plain = model.without_post_filter()
    out = out_dir / (Path(stem).name + '-no-filter')
    save_model(plain, out, {'derived_from': model.metadata['model_id'], 'post_filter': 'removed'})
    return str(out)


def main(argv=None) -> dict:
    args = parse_args(argv)
    frames = list(frames_for(1242, 375, 10))
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    common = dict(device='cpu', precision='fp32', profile=True, threads=args.threads, warmup=False)
    with tempfile.TemporaryDirectory() as tmp:
        plain = {stem: without_post_filter(stem, Path(tmp)) for stem in (args.model, args.twin)}
        variants = {'filter': (args.model, args.twin), 'no filter': (plain[args.model], plain[args.twin])}
        pairs = {}
        for backend in args.backends.split(','):
            for variant, (lidar, twin) in variants.items():
                for model, stems in (('lidar', (lidar, twin)), ('twin', (twin, twin))):
                    encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], backend=backend,
                                                    quality=args.quality, **common), frames[0].calib)
                    decoder = Decoder(DecoderConfig(models=tuple(dict.fromkeys(stems)), backend=backend,
                                                    resolutions=(size,), **common))
                    pairs[backend, model, variant] = (encoder, decoder)
        samples = {key: {stage: [] for stage in STAGES} for key in pairs}
        for index in range(2 + args.frames):
            for key, (encoder, decoder) in pairs.items():
                times = time_frame(encoder, decoder, frames[index % len(frames)], index)
                for stage in STAGES if index >= 2 else ():
                    samples[key][stage].append(times[stage])
    rows = [{'backend': key[0], 'model': key[1], 'variant': key[2],
             'p50_ms': {stage: round(float(np.median(v)), 1) for stage, v in samples[key].items()}}
            for key in pairs]
    for row in rows:
        p50 = row['p50_ms']
        print(f"{row['backend']:12s} {row['model']:6s} {row['variant']:10s} decoder network "
              f"{p50['decoder_network']:6.1f} ms  whole decode {p50['decode_total']:6.1f} ms")
    result = {'device': device_description('cpu'),
              'date_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'image_size': list(size), 'frames': args.frames, 'threads': args.threads,
              'quality': args.quality, 'source': frames[0].name, 'rows': rows}
    out = args.out or REPO / 'bench' / 'results' / f'post_filter_cost_{device_tag("cpu")}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return result


if __name__ == '__main__':
    main()
