"""``xmodal demo``: a bag through real encoder and decoder nodes over DDS, measured at the receiver.

Without ``--bag`` a synthetic drive is made first (``xmodal synth``). Four processes talk over DDS
with the shipped transport configuration on a private localhost ROS domain: the bag player (at the
recorded rate), encoder_node, decoder_node, and this process subscribing to the decoded images.
It prints a summary and, last, one JSON line; it writes a side-by-side PNG (original | decoded)
and the node logs to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Dict, List

HELP = 'Stream a bag through the encoder and decoder nodes over DDS; report kbit/s, PSNR and latency.'

DEFAULT_FRAMES = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from xmodal_compress_ros.codec import tiers

    parser.add_argument('--bag', type=Path, help='sensor bag to play (default: synthesize one into --out)')
    parser.add_argument('--frames', type=int, default=DEFAULT_FRAMES, metavar='N',
                        help=f'frames to synthesize, or images to play from --bag (0: all); '
                             f'default {DEFAULT_FRAMES}')
    parser.add_argument('--out', type=Path, default=Path('out/demo'), help='output folder (default out/demo)')
    parser.add_argument('--calibration', type=Path,
                        help='calibration of the bag (default: calibration.yaml in the bag or beside it)')
    parser.add_argument('--quality', type=int, default=5, help='quality level (default 5)')
    parser.add_argument('--target-kbps', type=float, default=0.0,
                        help='link budget in kbit/s for images + LiDAR; the encoder picks the quality '
                             'per frame (0: off)')
    parser.add_argument('--backend', default='torch', help='torch, onnxruntime or tensorrt (default torch)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda (default cpu)')
    parser.add_argument('--precision', default='fp32', help='fp32, fp16 or bf16 (default fp32; bf16 on a CPU '
                                                            'with AMX codes about twice as fast)')
    parser.add_argument('--tier', default='auto', choices=tiers.TIERS,
                        help='models of the key frames: fast (image-only, a small post filter: for a '
                             'CPU), quality (--model and --fallback-model) or auto (fast on the CPU, quality '
                             'on CUDA; default); docs/tiers.md')
    parser.add_argument('--model', default=tiers.QUALITY_MODEL,
                        help='LiDAR-conditioned model stem (tier quality)')
    parser.add_argument('--fallback-model', default=tiers.QUALITY_FALLBACK_MODEL,
                        help='image-only twin stem (tier quality)')
    parser.add_argument('--fast-model', default=tiers.FAST_MODEL, help='image-only model stem of tier fast')
    parser.add_argument('--pframe-model', default=tiers.PFRAME_MODEL,
                        help='P-frame model stem of tier quality (with --keyframe-interval N > 1)')
    parser.add_argument('--fast-pframe-model', default=tiers.FAST_PFRAME_MODEL,
                        help='P-frame model stem of tier fast (--pframe-model where it is missing)')
    parser.add_argument('--keyframe-interval', type=int, default=None, metavar='N',
                        help='key frame every N images, P frames between (default 1: every image alone; '
                             'docs/temporal_coding.md)')
    parser.add_argument('--frustum-only', action='store_true',
                        help='send only the LiDAR points inside the camera view (smaller, faster packets)')
    parser.add_argument('--lidar-codec', default='predictive', choices=('predictive', 'draco'),
                        help='LiDAR codec of the encoder node (default predictive; docs/lidar_stream.md)')
    parser.add_argument('--lidar-max-error', type=float, default=0.01,
                        help='predictive LiDAR codec: largest coordinate error, metres (default 0.01)')
    parser.add_argument('--rate', type=float, default=1.0, help='playback speed (default 1: recorded rate)')
    parser.add_argument('--start-timeout', type=float, default=180.0,
                        help='seconds for the nodes to load their models (default 180)')


def main(args: argparse.Namespace) -> int:
    from xmodal_compress_ros.bench import stream_run
    from xmodal_compress_ros.errors import DatasetError

    if args.frames < 0:
        raise DatasetError(f'--frames must be >= 0, got {args.frames}')
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    bag = args.bag or _synthesize(out, args.frames or DEFAULT_FRAMES)
    calibration = args.calibration or stream_run.find_calibration(bag)
    originals = stream_run.load_originals(bag, args.frames)
    choice = tier_choice(args)
    args.keyframe_interval = _keyframe_interval(args, choice.pframe_model)
    print(tier_line(args, choice), flush=True)
    settings = stream_run.StreamSettings(**{name: getattr(args, name)
                                            for name in stream_run.StreamSettings.__dataclass_fields__})
    result = stream_run.stream_bag(settings, bag, calibration, originals, out)
    for line in _summary_lines(result):
        print(line)
    print(json.dumps(result['json']))
    return 0 if result['json']['frames_out'] > 0 else 1


# ------------------------------------------------------------------------------------- inputs

def _synthesize(out: Path, frames: int) -> Path:
    from xmodal_compress_ros.cli.__main__ import main as xmodal
    from xmodal_compress_ros.errors import DatasetError

    bag = out / 'bag'
    if bag.exists():
        print(f'using the synthetic bag already in {bag}')
        return bag
    print(f'synthesizing {frames} frames into {out} ...', flush=True)
    workers = str(min(4, os.cpu_count() or 1))
    if xmodal(['synth', '--out', str(out), '--frames', str(frames), '--workers', workers]) != 0:
        raise DatasetError(f'xmodal synth failed to write {bag}')
    return bag


def _keyframe_interval(args: argparse.Namespace, pframe_model: str) -> int:
    """--keyframe-interval, else 1: a P frame costs more CPU than a key frame (docs/tiers.md), so the
    stream mode is opt-in. ``pframe_model``: the stem the chosen tier codes P frames with."""
    from xmodal_compress_ros.codec.pipeline import model_available
    from xmodal_compress_ros.errors import ModelFileError, ParameterError

    if args.keyframe_interval is not None and args.keyframe_interval < 1:
        raise ParameterError(f'--keyframe-interval must be >= 1, got {args.keyframe_interval}')
    streams = args.keyframe_interval is not None and args.keyframe_interval > 1
    if streams and not model_available(pframe_model):
        raise ModelFileError(f'--keyframe-interval {args.keyframe_interval} needs the P-frame model '
                             f'{pframe_model}, which is not there')
    return 1 if args.keyframe_interval is None else args.keyframe_interval


def tier_choice(args: argparse.Namespace):
    """The tier the encoder node will choose: the same :func:`codec.tiers.choose_tier`."""
    from xmodal_compress_ros.codec.tiers import choose_tier

    return choose_tier(args.tier, args.device, args.model, args.fallback_model, args.fast_model,
                       pframe_model=args.pframe_model, fast_pframe_model=args.fast_pframe_model)


def tier_line(args: argparse.Namespace, choice) -> str:
    """The tier line the demo prints: which tier and why."""
    if choice.tier == 'fast':
        return f'tier: fast ({choice.reason}; --tier quality for the full models)'
    if args.tier == 'auto' and not args.device.startswith('cuda'):
        return (f'tier: quality ({choice.reason}; the demo will not keep up at 10 Hz: train the fast model, '
                'docs/tiers.md)')
    return choice.describe()


def _summary_lines(result: Dict[str, Any]) -> List[str]:
    v = result['json']
    drops = ', '.join(f'{k.split(".", 1)[1]} {n}' for k, n in result['encoder'].items()
                      if k.startswith('dropped.')) or 'none'
    ratio = v['raw_kbps'] / v['kbps'] if v['kbps'] else float('nan')
    hint = []
    if v['encoder_dropped']:
        hint = [f'note: the encoder kept up with {v["frames_in"] - v["encoder_dropped"]} of {v["frames_in"]} '
                f'frames at {result["rate"]:g}x the recorded rate (it codes the newest image and drops older '
                'ones): use ' + ('the fast tier (--tier fast), ' if v['tier'] == 'quality' else '')
                + 'a GPU (--device cuda), bf16 on a CPU with AMX (--precision bf16), '
                '--frustum-only, or replay slower with --rate']
    return hint + [
        f'frames: {v["frames_in"]} played, {v["frames_out"]} decoded ({v["width"]}x{v["height"]}, '
        f'{v["image_hz"]:.1f} Hz camera, {v["lidar_hz"]:.1f} Hz LiDAR); encoder drops: {drops}; '
        f'image-only: {v["image_only"]}; scans sent {v["scans_sent"]}, dropped {v["scans_dropped"]}',
        f'rate at the recorded rate: {v["kbps"]:.0f} kbit/s = images {v["image_kbps"]:.0f} '
        f'({v["bpp"]:.3f} bpp) + LiDAR {v["lidar_kbps"]:.0f}; raw {v["raw_kbps"] / 1000:.0f} Mbit/s '
        f'({ratio:.0f}x smaller)',
        f'quality: mean PSNR {v["psnr_db"]:.2f} dB against the originals',
        f'latency publish -> decoded image: p50 {v["latency_p50_ms"]:.0f} ms, '
        f'p99 {v["latency_p99_ms"]:.0f} ms '
        f'(image encode p50 {v["encode_p50_ms"]:.0f} ms, decode p50 {v["decode_p50_ms"]:.0f} ms, '
        f'LiDAR encode p50 {v["lidar_encode_p50_ms"]:.0f} ms)',
        f'stream: {v["key_frames"]} key frames, {v["p_frames"]} P frames (key frame every '
        f'{v["keyframe_interval"]}); decoded degraded: {v["degraded"]}',
        f'wrote {result["out"] / "demo_side_by_side.png"} (original | decoded) and logs in '
        f'{result["out"] / "logs"}',
    ]
