"""The integer hyper-synthesis's matrix products through NumPy's BLAS and through PyTorch's, side by side.

The products are exact either way (integers below 2^53 in float64), so the scale indexes and the bytes
are the same; what differs is the threads. NumPy's OpenBLAS keeps its own workers spinning for a while
after each call, and the networks that run right after it (the decoder network follows the integer
hyper-synthesis in every decode) then share the cores with them. For each backend and precision an
Encoder and a Decoder code the same real KITTI frames (synthetic frames when ../shared/data is
absent), once with each product, in turn, so both meet the same machine load. Prints the p50 of each
stage and writes bench/results/hyper_product_<tag>.json.

    .venv/bin/python bench/bench_hyper_product.py [--frames 20] [--threads 2]
                                                  [--settings torch:fp32,torch:bf16,onnxruntime:fp32]
"""
from __future__ import annotations

import argparse

import numpy as np

from bench_memory_format import add_common_arguments, backend_and_precision, p50_in_turn, write_result
from xmodal_compress_ros.codec import integer_hyper
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
from xmodal_compress_ros.runtime.samples import frames_for


def numpy_product(a: np.ndarray, b: np.ndarray, exact: str) -> np.ndarray:
    """The same product through NumPy's BLAS (float64), the alternative measured against PyTorch's."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


PRODUCTS = {'numpy': numpy_product, 'torch': integer_hyper._int_matmul}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, 'hyper_product')
    parser.add_argument('--settings', default='torch:fp32,torch:bf16,onnxruntime:fp32',
                        help='comma-separated backend[:precision] entries (fp32 without one)')
    return parser.parse_args(argv)


def coders(args, setting: str, calib, size):
    backend, precision = backend_and_precision(setting)
    common = dict(backend=backend, device='cpu', precision=precision, profile=True, threads=args.threads,
                  warmup=False)
    return (Encoder(EncoderConfig(model=args.model, fallback_model=args.twin, quality=args.quality, **common),
                    calib),
            Decoder(DecoderConfig(models=(args.model, args.twin), resolutions=(size,), **common)))


def use_product(key) -> None:
    """Before a (setting, product) pair codes a frame: the integer hyper-synthesis multiplies with it."""
    integer_hyper._int_matmul = PRODUCTS[key[1]]


def main(argv=None) -> dict:
    args = parse_args(argv)
    frames = list(frames_for(1242, 375, 10))
    size = (frames[0].image.shape[1], frames[0].image.shape[0])
    settings = [s.strip() for s in args.settings.split(',') if s.strip()]
    pairs = {(setting, product): coders(args, setting, frames[0].calib, size)
             for setting in settings for product in PRODUCTS}
    try:
        p50 = p50_in_turn(pairs, frames, args.frames, before=use_product)
    finally:
        integer_hyper._int_matmul = PRODUCTS['torch']
    rows = [{'setting': setting, 'product': product, 'p50_ms': p50[setting, product]}
            for setting, product in pairs]
    for row in rows:
        ms = row['p50_ms']
        print(f"{row['setting']:17s} {row['product']:6s} encoder network {ms['encoder_network']:6.1f}  whole "
              f"encode {ms['encode_total']:6.1f}  entropy decode {ms['entropy_decode']:5.1f}  decoder "
              f"network {ms['decoder_network']:6.1f}  whole decode {ms['decode_total']:6.1f} ms")
    return write_result('hyper_product', args, 'cpu', frames, rows)


if __name__ == '__main__':
    main()
