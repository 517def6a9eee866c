"""Drift of a P-frame stream when the decoder runs another backend than the encoder.

The encoder predicts each P frame from the reference it decoded itself; a decoder on another backend
or precision reconstructs slightly different references, and the difference can grow over a key-frame
interval. This script codes the first frames of a drive with the torch fp32 encoder and decodes the
same packets on each decoder backend, reporting per frame the PSNR of each decoder's image against the
original and against the encoder's own reference (infinite where identical), and the PSNR lost at the
end of the key-frame interval. Writes JSON.

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_drift.py \\
        --drive ../shared/data/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync \\
        --calib ../shared/data/kitti_raw/2011_09_26 --frames 10 --out bench/results/drift_kitti_raw.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def main(argv=None) -> int:
    from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig
    from xmodal_compress_ros.data.kitti import KittiRawDrive

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--drive', required=True)
    parser.add_argument('--calib', required=True)
    parser.add_argument('--frames', type=int, default=10, help='frames coded (one key-frame interval)')
    parser.add_argument('--qualities', default='0,3,7')
    parser.add_argument('--model', default='models/xmodal-hyperprior')
    parser.add_argument('--pframe-model', default='models/xmodal-pframe')
    parser.add_argument('--backends', default='torch,onnxruntime')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--out', default='bench/results/drift_kitti_raw.json')
    args = parser.parse_args(argv)

    drive = KittiRawDrive(args.drive, args.calib)
    frames = [drive[k] for k in range(min(args.frames, len(drive)))]
    models = (args.model, args.pframe_model)
    names = args.backends.split(',')
    results = []
    for quality in (int(q) for q in args.qualities.split(',')):
        encoder = Encoder(EncoderConfig(model=args.model, fallback_model='', quality=quality, warmup=False,
                                        keyframe_interval=args.frames, pframe_model=args.pframe_model,
                                        threads=args.threads), frames[0].calib)
        decoders = {name: Decoder(DecoderConfig(models=models, backend=name, threads=args.threads,
                                                warmup=False))
                    for name in names}
        rows = []
        for k, frame in enumerate(frames):
            packet, scan = encoder.encode_scan(frame.points, frame.lidar_stamp_ns)
            coded = encoder.encode_image(frame.image, frame.image_stamp_ns, scan)
            reference = encoder.reference
            row = {'frame': k, 'kind': coded.frame_kind, 'bytes': coded.image_bytes,
                   'encoder_psnr': psnr(reference, frame.image)}
            for name, decoder in decoders.items():
                image = decoder.decode_image(coded.packet, decoder.decode_lidar(packet)).rgb
                row[f'{name}_psnr'] = psnr(image, frame.image)
                row[f'{name}_vs_encoder_psnr'] = psnr(image, reference)
            rows.append(row)
            print(json.dumps(row), flush=True)
        last = rows[-1]
        loss = {name: last['encoder_psnr'] - last[f'{name}_psnr'] for name in decoders}
        results.append({'quality': quality, 'frames': rows, 'psnr_loss_at_interval_end_db': loss})
        print(f'quality {quality}: PSNR lost at frame {last["frame"]} vs the encoder: {loss}', flush=True)
    out = {'drive': str(args.drive), 'frames': len(frames), 'encoder_backend': 'torch fp32',
           'decoder_backends': names, 'results': results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
