"""The LiDAR stream's cost beside the images: our packets against point_cloud_transport's Draco defaults."""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

from xmodal_compress_ros.bench.sources import BenchData


def lidar_summary(data: BenchData) -> Dict[str, object]:
    """Bytes per scan of our LiDAR packet (default LidarCodecConfig) and of the Draco reference.

    The reference is :func:`draco_reference_size` (point_cloud_transport's draco plugin defaults:
    lossless float32 positions and intensity); ``draco_quantized`` is the same plugin with
    ``force_quantization`` (14-bit).
    """
    from xmodal_compress_ros.codec import bitstream
    from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig, draco_reference_size, encode_scan

    config = LidarCodecConfig()
    rows: List[Dict[str, object]] = []
    for index, frame in enumerate(data.frames):
        start = time.perf_counter()
        encoded = encode_scan(frame.points, config, frame.calib)
        seconds = time.perf_counter() - start
        packet = bitstream.pack_lidar_packet(encoded.to_packet(index, frame.lidar_stamp_ns, 'lidar'))
        rows.append({'frame': frame.name, 'points': int(len(frame.points)), 'xmodal_bytes': len(packet),
                     'draco_bytes': draco_reference_size(frame.points),
                     'draco_quantized_bytes': draco_reference_size(frame.points, force_quantization=True),
                     'encode_ms': 1000.0 * seconds})
    mean = {key: float(np.mean([r[key] for r in rows]))
            for key in ('points', 'xmodal_bytes', 'draco_bytes', 'draco_quantized_bytes', 'encode_ms')}
    kbit = {key: mean[key] * 8.0 * data.fps / 1000.0 for key in ('xmodal_bytes', 'draco_bytes',
                                                                  'draco_quantized_bytes')}
    summary = (
        f'Per scan (mean of {len(rows)}, {mean["points"]:.0f} points): our LiDAR packet '
        f'({config.quantization_bits}-bit positions, {config.intensity_bits}-bit intensity, full scan) '
        f'{8 * mean["xmodal_bytes"] / 1000:.0f} kbit = {kbit["xmodal_bytes"]:.0f} kbit/s at {data.fps:g} Hz; '
        f'point_cloud_transport Draco defaults (lossless float32) {8 * mean["draco_bytes"] / 1000:.0f} kbit '
        f'= {kbit["draco_bytes"]:.0f} kbit/s; with force_quantization (14-bit) '
        f'{8 * mean["draco_quantized_bytes"] / 1000:.0f} kbit = {kbit["draco_quantized_bytes"]:.0f} kbit/s. '
        'Image rates in the tables exclude the LiDAR stream, which is sent for its own sake.')
    return {'config': {'quantization_bits': config.quantization_bits, 'intensity_bits': config.intensity_bits,
                       'compression_level': config.compression_level, 'frustum_only': config.frustum_only},
            'frames': rows, 'mean': mean, 'kbit_s': kbit,
            'bits_per_scan': {key: 8.0 * mean[key] for key in ('xmodal_bytes', 'draco_bytes',
                                                               'draco_quantized_bytes')},
            'summary': summary}
