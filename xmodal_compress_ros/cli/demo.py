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
DRAIN_TIMEOUT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument('--model', default='models/xmodal-lidar', help='LiDAR-conditioned model stem')
    parser.add_argument('--fallback-model', default='models/xmodal-hyperprior', help='image-only twin stem')
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
    from xmodal_compress_ros.errors import DatasetError

    if args.frames < 0:
        raise DatasetError(f'--frames must be >= 0, got {args.frames}')
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    bag = args.bag or _synthesize(out, args.frames or DEFAULT_FRAMES)
    calibration = args.calibration or _find_calibration(bag)
    originals = _load_originals(bag, args.frames)
    result = _run(args, bag, calibration, originals, out)
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


def _find_calibration(bag: Path) -> Path:
    from xmodal_compress_ros.errors import DatasetError

    for candidate in (bag / 'calibration.yaml', bag.parent / 'calibration.yaml'):
        if candidate.is_file():
            return candidate
    raise DatasetError(f'no calibration.yaml in {bag} or beside it: pass --calibration (YAML, KITTI .txt '
                       'or KITTI raw folder)')


def _load_originals(bag: Path, frames: int) -> Dict[str, Any]:
    """The images to be played (by stamp) and the image and scan rates of the bag."""
    from xmodal_compress_ros.data import rosbag_io
    from xmodal_compress_ros.errors import DatasetError

    images: Dict[int, Any] = {}
    scan_stamps: List[int] = []
    scan_points: List[int] = []
    for event in rosbag_io.read_sensor_bag(bag, info_topic=None):
        if event.kind == rosbag_io.IMAGE:
            if frames and len(images) >= frames:
                break
            images[event.stamp_ns] = event.payload
        else:
            scan_stamps.append(event.stamp_ns)
            scan_points.append(len(event.payload))
    if not images:
        raise DatasetError(f'{bag} has no images on the camera topic')
    stamps = sorted(images)
    last = stamps[-1]
    scans = [s for s in scan_stamps if s <= last] or scan_stamps[:1]
    return {'images': images, 'image_hz': _rate(stamps), 'lidar_hz': _rate(scans),
            'points': scan_points[:len(scans)]}


def _rate(stamps: List[int]) -> float:
    """Messages per second of sorted stamps (0 for fewer than two)."""
    if len(stamps) < 2 or stamps[-1] == stamps[0]:
        return 0.0
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9)


# ---------------------------------------------------------------------------------------- run

def _run(args: argparse.Namespace, bag: Path, calibration: Path, originals: Dict[str, Any],
         out: Path) -> Dict[str, Any]:
    import numpy as np

    from xmodal_compress_ros.bench.metrics import psnr
    from xmodal_compress_ros.ros.stream_session import SessionError, StreamSession

    images = originals['images']
    example_stamp = sorted(images)[len(images) // 2]
    measured: Dict[str, Any] = {'psnr': {}, 'example': None}

    def on_image(record: Any, rgb: Any) -> None:
        original = images.get(record.stamp_ns)
        if original is None or original.shape != rgb.shape:
            return
        measured['psnr'][record.stamp_ns] = psnr(original, rgb)
        if measured['example'] is None or record.stamp_ns == example_stamp:
            measured['example'] = (record.stamp_ns, np.array(rgb))

    width, height = next(iter(images.values())).shape[1::-1]
    # Encoder and decoder share this machine: one half of the CPU cores each.
    threads = max(1, (os.cpu_count() or 2) // 2)
    encoder = {'calibration_file': str(calibration), 'quality': args.quality, 'target_kbps': args.target_kbps,
               'backend': args.backend, 'device': args.device, 'precision': args.precision,
               'model': args.model, 'fallback_model': args.fallback_model, 'threads': threads,
               'frustum_only': args.frustum_only, 'lidar_codec': args.lidar_codec,
               'lidar_max_error': args.lidar_max_error}
    decoder = {'models': [args.model, args.fallback_model], 'backend': args.backend, 'device': args.device,
               'precision': args.precision, 'resolutions': [int(width), int(height)], 'threads': threads}
    publish_log = out / 'published.jsonl'
    print(f'starting encoder_node and decoder_node (logs in {out / "logs"}) ...', flush=True)
    try:
        with StreamSession(out / 'logs', encoder, decoder, start_timeout=args.start_timeout,
                           on_image=on_image) as session:
            print(f'playing {bag} at {args.rate:g}x ...', flush=True)
            session.play(bag, rate=args.rate, publish_log=publish_log,
                         extra_args=['--max-images', str(len(images))])
            _drain(session, len(images))
            diagnostics = {name: session.probe.node_diagnostics(name)
                           for name in ('xmodal_encoder', 'xmodal_decoder')}
            probe = session.probe
    except SessionError as exc:
        from xmodal_compress_ros.errors import XmodalError

        raise XmodalError(str(exc)) from None
    example = measured['example']
    if example is not None:
        _write_side_by_side(out / 'demo_side_by_side.png', images[example[0]], example[1])
    return _results(originals, probe, measured['psnr'], _read_publish_log(publish_log), diagnostics, out,
                    args.rate)


def _drain(session: Any, expected: int) -> None:
    """Wait until the encoder has handled every image and the decoder output reached us (or a timeout)."""
    probe = session.probe

    def settled() -> bool:
        enc = probe.node_diagnostics('xmodal_encoder')
        dec = probe.node_diagnostics('xmodal_decoder')
        if not enc or not dec:
            return False
        encoded = int(enc['frames_out'])
        decoded = int(dec['frames_out'])
        return (encoded + int(enc['dropped']) >= expected and int(dec['frames_in']) >= encoded
                and decoded + int(dec['dropped.superseded']) + int(dec['errors']) >= int(dec['frames_in'])
                and len(probe.images) >= decoded)

    probe.wait_for(settled, DRAIN_TIMEOUT_S, alive=session.nodes_alive, poll=0.2)


def _read_publish_log(path: Path) -> Dict[int, float]:
    if not path.exists():
        return {}
    entries = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {entry['stamp_ns']: entry['time'] for entry in entries}


def _write_side_by_side(path: Path, original: Any, decoded: Any) -> None:
    import cv2
    import numpy as np

    cv2.imwrite(str(path), cv2.cvtColor(np.hstack([original, decoded]), cv2.COLOR_RGB2BGR))


# ------------------------------------------------------------------------------------ results

def _results(originals: Dict[str, Any], probe: Any, psnrs: Dict[int, float], published: Dict[int, float],
             diagnostics: Dict[str, Dict[str, str]], out: Path, rate: float) -> Dict[str, Any]:
    import numpy as np

    images = originals['images']
    width, height = next(iter(images.values())).shape[1::-1]
    image_bytes = [p.nbytes for p in probe.packets if p.kind == 'image']
    lidar_bytes = [p.nbytes for p in probe.packets if p.kind == 'lidar']
    image_kbps = 8 * _mean(image_bytes) * originals['image_hz'] / 1000
    lidar_kbps = 8 * _mean(lidar_bytes) * originals['lidar_hz'] / 1000
    raw_kbps = (8 * 3 * width * height * originals['image_hz']
                + 8 * 16 * _mean(originals['points']) * originals['lidar_hz']) / 1000
    latencies = [(r.received - published[r.stamp_ns]) * 1000 for r in probe.images if r.stamp_ns in published]
    p50, p99 = (np.percentile(latencies, (50, 99)).tolist() if latencies else (float('nan'), float('nan')))
    encoder = diagnostics['xmodal_encoder']
    values = {
        'frames_in': len(published), 'frames_out': len(probe.images),
        'kbps': image_kbps + lidar_kbps, 'image_kbps': image_kbps, 'lidar_kbps': lidar_kbps,
        'raw_kbps': raw_kbps, 'bpp': 8 * _mean(image_bytes) / (width * height),
        'psnr_db': float(np.mean(list(psnrs.values()))) if psnrs else float('nan'),
        'latency_p50_ms': p50, 'latency_p99_ms': p99,
        'image_hz': originals['image_hz'], 'lidar_hz': originals['lidar_hz'],
        'width': width, 'height': height,
        'encoder_dropped': int(encoder.get('dropped', 0)), 'image_only': int(encoder.get('image_only', 0)),
        'unpaired': int(encoder.get('unpaired', 0)),
        'scans_sent': int(encoder.get('scans_out', 0)),
        'scans_dropped': sum(int(n) for k, n in encoder.items() if k.startswith('scans_dropped.')),
        'decoder_dropped': int(diagnostics['xmodal_decoder'].get('dropped.superseded', 0)),
        'encode_p50_ms': float(encoder.get('encode_latency_p50_ms', 'nan')),
        'decode_p50_ms': float(diagnostics['xmodal_decoder'].get('decode_latency_p50_ms', 'nan')),
        'lidar_encode_p50_ms': float(encoder.get('lidar_encode_latency_p50_ms', 'nan')),
    }
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
    return {'json': rounded, 'encoder': encoder, 'out': out, 'rate': rate}


def _mean(values: List[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _summary_lines(result: Dict[str, Any]) -> List[str]:
    v = result['json']
    drops = ', '.join(f'{k.split(".", 1)[1]} {n}' for k, n in result['encoder'].items()
                      if k.startswith('dropped.')) or 'none'
    ratio = v['raw_kbps'] / v['kbps'] if v['kbps'] else float('nan')
    hint = []
    if v['encoder_dropped']:
        hint = [f'note: the encoder kept up with {v["frames_in"] - v["encoder_dropped"]} of {v["frames_in"]} '
                f'frames at {result["rate"]:g}x the recorded rate (it codes the newest image and drops older '
                'ones): use a GPU (--device cuda), bf16 on a CPU with AMX (--precision bf16), '
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
        f'wrote {result["out"] / "demo_side_by_side.png"} (original | decoded) and logs in '
        f'{result["out"] / "logs"}',
    ]
