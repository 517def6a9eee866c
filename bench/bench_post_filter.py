"""What the post filter costs at the decoder: each model decoded with its filter and without it, side by side.

The "without" variant is the product's own switch, ``DecoderConfig(post_filter=False)``: the same
packets, decoded by g_s alone; ``--views 8`` adds ``DecoderConfig(post_filter_views=8)``, the filter
averaged over 8 views. For each backend, model and variant an Encoder and a Decoder code the
same real KITTI frames in turn (synthetic frames when ../shared/data is absent), so every variant meets
the same machine load. Prints the p50 of each stage and writes bench/results/post_filter_cost_<tag>.json.

    .venv/bin/python bench/bench_post_filter.py [--frames 20] [--backends torch,torch:bf16,onnxruntime]
                                                [--threads 2] [--views 2,4,8]

A backend entry may name a precision (``torch:bf16``); without one it runs fp32.
"""
from __future__ import annotations

import argparse

from bench_memory_format import add_common_arguments, backend_and_precision, p50_in_turn, write_result
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.runtime.samples import frames_for

#: variant -> (post_filter, post_filter_views)
VARIANTS = {'filter': (True, 1), 'no filter': (False, 1)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, 'post_filter_cost')
    parser.add_argument('--backends', default='torch,onnxruntime',
                        help='comma-separated backend[:precision] entries, e.g. torch,torch:bf16,onnxruntime')
    parser.add_argument('--views', default='', help='also decode with the filter averaged over these view '
                        'counts (comma-separated: 2, 4, 8)')
    return parser.parse_args(argv)


def variants(args) -> dict:
    """:data:`VARIANTS` and one ``filter xN`` per ``--views`` entry."""
    counts = [int(v) for v in args.views.split(',') if v.strip()]
    return {**VARIANTS, **{f'filter x{n}': (True, n) for n in counts}}


def coders(args, entry: str, frames) -> dict:
    """(Encoder, Decoder) per (backend entry, model, variant)."""
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    backend, precision = backend_and_precision(entry)
    common = dict(backend=backend, device='cpu', precision=precision, profile=True, threads=args.threads,
                  warmup=False)
    pairs = {}
    for model, stems in (('lidar', (args.model, args.twin)), ('twin', (args.twin,))):
        for variant, (post_filter, views) in variants(args).items():
            encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=args.twin, quality=args.quality,
                                            **common), frames[0].calib)
            decoder = Decoder(DecoderConfig(models=stems, resolutions=(size,), post_filter=post_filter,
                                            post_filter_views=views, **common))
            pairs[entry, model, variant] = (encoder, decoder)
    return pairs


def main(argv=None) -> dict:
    args = parse_args(argv)
    frames = list(frames_for(1242, 375, 10))
    pairs = {}
    for entry in args.backends.split(','):
        pairs.update(coders(args, entry, frames))
    p50 = p50_in_turn(pairs, frames, args.frames)
    rows = [dict(zip(('backend', 'precision'), backend_and_precision(entry)), model=model, variant=variant,
                 p50_ms=p50[entry, model, variant]) for entry, model, variant in pairs]
    for row in rows:
        ms = row['p50_ms']
        print(f"{row['backend']:12s} {row['precision']:5s} {row['model']:6s} {row['variant']:10s} "
              f"decoder network {ms['decoder_network']:6.1f} ms  whole decode {ms['decode_total']:6.1f} ms")
    return write_result('post_filter_cost', args, 'cpu', frames, rows)


if __name__ == '__main__':
    main()
