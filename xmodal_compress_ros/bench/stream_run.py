"""A bag through the real encoder and decoder nodes over DDS, measured at the receiver.

Four processes on a private localhost ROS domain (:class:`ros.stream_session.StreamSession`): the bag
player at the recorded rate, encoder_node, decoder_node, and a probe in this process subscribing to
the packets, the decoded images and the nodes' diagnostics. ``xmodal demo`` runs it once and
``xmodal bench --live`` once per quality.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from xmodal_compress_ros.codec.tiers import (FAST_MODEL, FAST_PFRAME_MODEL, PFRAME_MODEL,
                                             QUALITY_FALLBACK_MODEL, QUALITY_MODEL)

DRAIN_TIMEOUT_S = 60.0


@dataclass
class StreamSettings:
    """How the nodes code: the encoder and decoder parameters a run passes on."""

    quality: int = 5
    target_kbps: float = 0.0
    backend: str = 'torch'
    device: str = 'cpu'
    precision: str = 'fp32'
    tier: str = 'auto'
    model: str = QUALITY_MODEL
    fallback_model: str = QUALITY_FALLBACK_MODEL
    fast_model: str = FAST_MODEL
    frustum_only: bool = False
    keyframe_interval: int = 1
    pframe_model: str = PFRAME_MODEL
    fast_pframe_model: str = FAST_PFRAME_MODEL
    lidar_codec: str = 'predictive'
    lidar_max_error: float = 0.01
    start_timeout: float = 180.0
    rate: float = 1.0


def find_calibration(bag: Path) -> Path:
    """calibration.yaml in the bag folder or beside it."""
    from xmodal_compress_ros.errors import DatasetError

    for candidate in (bag / 'calibration.yaml', bag.parent / 'calibration.yaml'):
        if candidate.is_file():
            return candidate
    raise DatasetError(f'no calibration.yaml in {bag} or beside it: pass --calibration (YAML, KITTI .txt '
                       'or KITTI raw folder)')


def load_originals(bag: Path, frames: int) -> Dict[str, Any]:
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


def stream_bag(settings: StreamSettings, bag: Path, calibration: Path, originals: Dict[str, Any],
               out: Path) -> Dict[str, Any]:
    """Play ``bag`` through the nodes; the receiver-side numbers (``json``) and the encoder's diagnostics."""
    import numpy as np

    from xmodal_compress_ros.bench.metrics import psnr
    from xmodal_compress_ros.ros.stream_session import SessionError, StreamSession
    from xmodal_compress_ros.runtime.cpu_features import usable_cores

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
    # Encoder and decoder share this machine: half of its cores each for the networks (on 2 cores one
    # each; the encoder's scans, coded beside its images in the fast tier, take what is left).
    threads = max(1, usable_cores() // 2)
    encoder = {'calibration_file': str(calibration), 'quality': settings.quality,
               'target_kbps': settings.target_kbps, 'backend': settings.backend, 'device': settings.device,
               'precision': settings.precision, 'tier': settings.tier, 'model': settings.model,
               'fallback_model': settings.fallback_model, 'fast_model': settings.fast_model,
               'threads': threads,
               'frustum_only': settings.frustum_only, 'keyframe_interval': settings.keyframe_interval,
               'pframe_model': settings.pframe_model, 'fast_pframe_model': settings.fast_pframe_model,
               'lidar_codec': settings.lidar_codec,
               'lidar_max_error': settings.lidar_max_error}
    decoder = {'models': [settings.model, settings.fallback_model, settings.fast_model],
               'pframe_model': settings.pframe_model, 'fast_pframe_model': settings.fast_pframe_model,
               'backend': settings.backend,
               'device': settings.device, 'precision': settings.precision,
               'resolutions': [int(width), int(height)], 'threads': threads}
    publish_log = out / 'published.jsonl'
    print(f'starting encoder_node and decoder_node (logs in {out / "logs"}) ...', flush=True)
    try:
        with StreamSession(out / 'logs', encoder, decoder, start_timeout=settings.start_timeout,
                           on_image=on_image) as session:
            print(f'playing {bag} at {settings.rate:g}x ...', flush=True)
            session.play(bag, rate=settings.rate, publish_log=publish_log,
                         extra_args=['--max-images', str(len(images))])
            drain(session, len(images))
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
                    settings.rate)


def drain(session: Any, expected: int) -> None:
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
        'keyframe_interval': int(encoder.get('keyframe_interval', 1)),
        'key_frames': int(encoder.get('key_frames', 0)), 'p_frames': int(encoder.get('p_frames', 0)),
        'degraded': int(diagnostics['xmodal_decoder'].get('degraded', 0)),
        'tier': encoder.get('tier', ''), 'threads': int(encoder.get('threads', 0)),
    }
    rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in values.items()}
    return {'json': rounded, 'encoder': encoder, 'out': out, 'rate': rate}


def _mean(values: List[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
