"""``xmodal bench --live``: the bag through the real encoder and decoder nodes, once per quality.

The orchestration is :mod:`bench.stream_run`, as for ``xmodal demo`` (four processes over DDS on a
private ROS domain: bag player at the recorded rate, encoder_node, decoder_node, and a probe in this
process); this module
only runs it per quality and keeps the receiver-side numbers: end-to-end latency (publish ->
decoded image), frames dropped by the encoder and decoder, and the achieved kbit/s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

LIVE_KEYS = ('quality', 'frames_in', 'frames_out', 'encoder_dropped', 'decoder_dropped', 'image_only', 'kbps',
             'image_kbps', 'lidar_kbps', 'bpp', 'psnr_db', 'latency_p50_ms', 'latency_p99_ms',
             'encode_p50_ms', 'decode_p50_ms', 'lidar_encode_p50_ms', 'image_hz')


def live_runs(bag: Path, out_dir: Path, qualities: Sequence[int], model: str, fallback_model: str,
              calibration: Optional[Path] = None, frames: int = 0, rate: float = 1.0,
              start_timeout: float = 300.0) -> List[Dict[str, object]]:
    """One streaming run per quality; returns the receiver-side numbers of each."""
    from xmodal_compress_ros.bench import stream_run

    calibration = calibration or stream_run.find_calibration(bag)
    originals = stream_run.load_originals(bag, frames)
    runs = []
    for quality in qualities:
        # tier quality: the runs measure the models given, whatever the device.
        settings = stream_run.StreamSettings(quality=int(quality), tier='quality', model=model,
                                             fallback_model=fallback_model, start_timeout=start_timeout,
                                             rate=rate)
        run_dir = out_dir / f'live_q{quality}'
        run_dir.mkdir(parents=True, exist_ok=True)
        result = stream_run.stream_bag(settings, bag, calibration, originals, run_dir)
        values = dict(result['json'], quality=int(quality))
        runs.append({key: values.get(key) for key in LIVE_KEYS})
    return runs


def live_markdown(runs: Sequence[Dict[str, object]]) -> List[str]:
    """The report.md section of the live runs."""
    lines = ['', '## Live: the bag through encoder_node and decoder_node over DDS', '',
             'At the recorded rate; the encoder codes the newest image and drops older ones when it falls '
             'behind. Latency is bag-player publish to decoded image at the receiver.', '',
             '| quality | frames in/out | encoder drops | decoder drops | kbit/s (image + LiDAR) | bpp | '
             'PSNR dB | '
             'latency p50 / p99 ms | encode / decode p50 ms |',
             '|---:|---|---:|---:|---|---:|---:|---|---|']
    for r in runs:
        lines.append(
            f'| {r["quality"]} | {r["frames_in"]}/{r["frames_out"]} | {r["encoder_dropped"]} | '
            f'{r["decoder_dropped"]} | {r["kbps"]:.0f} ({r["image_kbps"]:.0f} + {r["lidar_kbps"]:.0f}) | '
            f'{r["bpp"]:.3f} | {r["psnr_db"]:.2f} | {r["latency_p50_ms"]:.0f} / {r["latency_p99_ms"]:.0f} | '
            f'{r["encode_p50_ms"]:.0f} / {r["decode_p50_ms"]:.0f} |')
    return lines
