"""What the post filter costs at the decoder: each model decoded with its filter and without it, side by side.

The "without" variant is the product's own switch, ``DecoderConfig(post_filter=False)``: the same
packets, decoded by g_s alone. For each backend, model and variant an Encoder and a Decoder code the
same real KITTI frames in turn (synthetic frames when ../shared/data is absent), so every variant meets
the same machine load. Prints the p50 of each stage and writes bench/results/post_filter_cost_<tag>.json.

    .venv/bin/python bench/bench_post_filter.py [--frames 20] [--backends torch,onnxruntime] [--threads 2]
"""
from __future__ import annotations

import argparse

from bench_memory_format import add_common_arguments, p50_in_turn, write_result
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.runtime.samples import frames_for

VARIANTS = {'filter': True, 'no filter': False}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, 'post_filter_cost')
    parser.add_argument('--backends', default='torch,onnxruntime')
    return parser.parse_args(argv)


def coders(args, backend: str, frames) -> dict:
    """(Encoder, Decoder) per (backend, model, variant)."""
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    common = dict(backend=backend, device='cpu', precision='fp32', profile=True, threads=args.threads,
                  warmup=False)
    pairs = {}
    for model, stems in (('lidar', (args.model, args.twin)), ('twin', (args.twin,))):
        for variant, post_filter in VARIANTS.items():
            encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=args.twin, quality=args.quality,
                                            **common), frames[0].calib)
            decoder = Decoder(DecoderConfig(models=stems, resolutions=(size,), post_filter=post_filter,
                                            **common))
            pairs[backend, model, variant] = (encoder, decoder)
    return pairs


def main(argv=None) -> dict:
    args = parse_args(argv)
    frames = list(frames_for(1242, 375, 10))
    pairs = {}
    for backend in args.backends.split(','):
        pairs.update(coders(args, backend, frames))
    p50 = p50_in_turn(pairs, frames, args.frames)
    rows = [{'backend': backend, 'model': model, 'variant': variant, 'p50_ms': p50[backend, model, variant]}
            for backend, model, variant in pairs]
    for row in rows:
        ms = row['p50_ms']
        print(f"{row['backend']:12s} {row['model']:6s} {row['variant']:10s} decoder network "
              f"{ms['decoder_network']:6.1f} ms  whole decode {ms['decode_total']:6.1f} ms")
    return write_result('post_filter_cost', args, 'cpu', frames, rows)


if __name__ == '__main__':
    main()
