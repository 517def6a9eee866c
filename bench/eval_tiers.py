"""The fast tier against the quality tier: rate-distortion on the held-out KITTI frames, from real bytes.

Both tiers' models code every frame at every level (intra); bpp = 8 * bytes / (W * H), PSNR over RGB.
The fast tier's encoder and entropy model are copies of the quality tier's image-only model, so its
packets hold the same symbols and only the decoder differs (docs/tiers.md). BD-rate (Bjontegaard,
PSNR) of the fast tier against the quality tier's image-only model (with its post filter, one view),
and against that model without its post filter. Decode times are the median of ``model.decompress``
in PyTorch eager at ``--threads`` (whole-pipeline timings: ``xmodal bench-runtime``). Writes
bench/results/tiers_<tag>.json.

    .venv/bin/python bench/eval_tiers.py [--quality models/xmodal-hyperprior]
                                         [--fast models/xmodal-hyperprior-fast] [--raw-stride 1]
"""
import argparse
import json
import socket
import sys

import numpy as np
import torch

from eval_codec import REPO, add_frame_arguments, bd_table, learned_points, selected_frames, summarise
from xmodal_compress_ros.bench.metrics import bpp, psnr
from xmodal_compress_ros.codec.model_io import load_model


def tier_records(name: str, image: np.ndarray, models: dict):
    """One record per (model, level) of ``image``: bytes, bpp, PSNR, encode and decode ms."""
    h, w = image.shape[:2]
    for key, model in models.items():
        for q, num_bytes, decoded, enc, dec, _, _ in learned_points(model, image, None, False):
            yield {'frame': name, 'codec': key, 'setting': q, 'bytes': num_bytes, 'bpp': bpp(num_bytes, w, h),
                   'psnr_db': psnr(image, decoded), 'encode_ms': enc * 1e3, 'decode_ms': dec * 1e3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quality', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--fast', default=str(REPO / 'models' / 'xmodal-hyperprior-fast'))
    add_frame_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    quality = load_model(args.quality)
    models = {'quality': quality, 'quality-no-filter': quality.without_post_filter(),
              'fast': load_model(args.fast)}
    records = []
    for name, frame in selected_frames(args):
        rows = list(tier_records(name, frame.image, models))
        records.extend(rows)
        print(name, ' '.join(f"{r['codec']}:{r['bpp']:.3f}bpp/{r['psnr_db']:.2f}dB/{r['decode_ms']:.0f}ms"
                             for r in rows if r['setting'] == 3), flush=True)
    summary = summarise(records)
    result = {
        'host': socket.gethostname(), 'tag': args.tag, 'threads': args.threads, 'raw_stride': args.raw_stride,
        'models': {k: {'path': p, 'model_id': load_model(p).metadata['model_id']}
                   for k, p in (('quality', args.quality), ('fast', args.fast))},
        'frames': sorted({r['frame'] for r in records}),
        'summary': sorted(summary, key=lambda s: (s['codec'], s['setting'])),
        'bd_rate': bd_table(summary, [('fast', 'quality'), ('fast', 'quality-no-filter'),
                                      ('quality-no-filter', 'quality')]),
        'records': records,
    }
    out = REPO / 'bench' / 'results' / f'tiers_{args.tag}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    for row in result['bd_rate']:
        print(f"{row['test']} vs {row['anchor']}: BD-rate {row['bd_rate_psnr_percent']:+.1f} %")
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
