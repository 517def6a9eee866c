"""What running the networks in bf16 on the CPU costs in quality, on the held-out KITTI frames.

The product's own Encoder and Decoder (torch backend, CPU) code every held-out frame at every quality
level. Arms, named encoder precision -> decoder precision:

- ``fp32->fp32``: the reference;
- ``fp32->bf16``: the same packets decoded in bf16 (a CPU station decoding a vehicle's stream);
- ``bf16->bf16``: both ends in bf16 (the encoder's bf16 changes y and z, so the bytes differ too).

Precision never decides how a symbol is parsed (the scale path is integer), so every packet must give
the same symbols to both decoders: the script counts the packets where they differ, which must be none.
Reported per level: mean image bpp (the image packet, LiDAR bytes apart) and mean RGB PSNR; BD-rate of
each arm against the reference; the largest PSNR change of one frame. Writes
bench/results/precision_eval_<tag>.json.

    .venv/bin/python bench/eval_precision.py [--model models/xmodal-lidar] [--max-frames N] [--tag cpu-2core]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from eval_codec import REPO, add_frame_arguments, selected_frames, write_model_result
from xmodal_compress_ros.bench.metrics import bd_rate, bpp, psnr
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig

ARMS = (('fp32', 'fp32'), ('fp32', 'bf16'), ('bf16', 'bf16'))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_frame_arguments(parser)
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-lidar'))
    return parser.parse_args(argv)


def arm_name(arm) -> str:
    return f'{arm[0]}->{arm[1]}'


def code_frame(args, frame, decoders: dict, levels: int) -> dict:
    """(bytes, PSNR) per arm and level for one frame, and the packets whose symbols differ by decoder."""
    common = dict(backend='torch', device='cpu', threads=args.threads, warmup=False)
    encoders = {p: Encoder(EncoderConfig(model=args.model, precision=p, **common), frame.calib)
                for p in {a[0] for a in ARMS}}
    points = {arm_name(a): [] for a in ARMS}
    mismatches = 0
    for precision, encoder in encoders.items():
        lidar_packet, scan = encoder.encode_scan(frame.points, 0)
        decoded_scans = {p: d.decode_lidar(lidar_packet) for p, d in decoders.items()}
        for quality in range(levels):
            packet = encoder.encode_image(frame.image, 0, scan, quality).packet
            decoded = {p: decoders[p].decode_image(packet, decoded_scans[p]) for p in decoders}
            symbols = [d.latents.symbols for d in decoded.values()]
            mismatches += not all(np.array_equal(symbols[0], s) for s in symbols[1:])
            for enc, dec in ARMS:
                if enc == precision:
                    points[arm_name((enc, dec))].append((len(packet), psnr(frame.image, decoded[dec].rgb)))
    return {'points': points, 'symbol_mismatches': mismatches}


def summarise(per_frame: list, width_height: list, levels: int) -> dict:
    """Mean bpp and PSNR per arm and level; BD-rate and largest per-frame PSNR change vs fp32->fp32."""
    arms = {}
    for arm in map(arm_name, ARMS):
        rates = [[bpp(f['points'][arm][q][0], *wh) for f, wh in zip(per_frame, width_height)]
                 for q in range(levels)]
        quality = [[f['points'][arm][q][1] for f in per_frame] for q in range(levels)]
        arms[arm] = {'bpp': [round(float(np.mean(r)), 5) for r in rates],
                     'psnr': [round(float(np.mean(p)), 4) for p in quality]}
    reference = arms['fp32->fp32']
    for arm, curve in arms.items():
        if arm == 'fp32->fp32':
            continue
        result = bd_rate(reference['bpp'], reference['psnr'], curve['bpp'], curve['psnr'])
        curve['bd_rate_vs_fp32_percent'] = None if result.percent is None else round(result.percent, 3)
        curve['max_abs_psnr_change_db'] = round(max(
            abs(f['points'][arm][q][1] - f['points']['fp32->fp32'][q][1])
            for f in per_frame for q in range(levels)), 4)
    return arms


def main(argv=None) -> Path:
    args = parse_args(argv)
    model = load_model(args.model)
    levels = model.quality_levels
    common = dict(backend='torch', device='cpu', threads=args.threads, warmup=False)
    decoders = {p: Decoder(DecoderConfig(models=(args.model,), precision=p, **common))
                for p in {a[1] for a in ARMS}}
    names, per_frame, sizes = [], [], []
    for name, frame in selected_frames(args):
        per_frame.append(code_frame(args, frame, decoders, levels))
        names.append(name)
        sizes.append([frame.image.shape[1], frame.image.shape[0]])
        print(f'{name}: {per_frame[-1]["symbol_mismatches"]} packets with differing symbols', flush=True)
    arms = summarise(per_frame, sizes, levels)
    for arm, curve in arms.items():
        print(f"{arm:11s} bpp {curve['bpp'][0]:.3f}-{curve['bpp'][-1]:.3f}  PSNR {curve['psnr'][0]:.2f}-"
              f"{curve['psnr'][-1]:.2f} dB  BD-rate vs fp32 {curve.get('bd_rate_vs_fp32_percent', 0.0)} %  "
              f"largest change of one frame {curve.get('max_abs_psnr_change_db', 0.0)} dB")
    return write_model_result('precision_eval', args, model, {
        'frames': names, 'levels': levels, 'backend': 'torch', 'device': 'cpu',
        'symbol_mismatches': sum(f['symbol_mismatches'] for f in per_frame), 'arms': arms})


if __name__ == '__main__':
    main()
