"""The LiDAR stream's cost beside the images: our packets against point_cloud_transport's Draco defaults."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Dict, List

import numpy as np

from xmodal_compress_ros.bench.sources import BenchData


def lidar_summary(data: BenchData) -> Dict[str, object]:
    """Bytes per scan of our LiDAR packet (default LidarCodecConfig: the predictive codec at 1 cm)
    and of the Draco reference.

    The reference is :func:`draco_reference_size` (point_cloud_transport's draco plugin defaults:
    lossless float32 positions and intensity); ``draco_quantized`` is the same plugin with
    ``force_quantization`` (14-bit).
    """
    from xmodal_compress_ros.codec import bitstream
    from xmodal_compress_ros.codec.lidar_codec import LidarCodecConfig, draco_reference_size, encode_scan

    config = LidarCodecConfig()
    frustum = replace(config, frustum_only=True)
    rows: List[Dict[str, object]] = []
    for index, frame in enumerate(data.frames):
        start = time.perf_counter()
        encoded = encode_scan(frame.points, config, frame.calib)
        seconds = time.perf_counter() - start
        packet = bitstream.pack_lidar_packet(encoded.to_packet(index, frame.lidar_stamp_ns, 'lidar'))
        cut = encode_scan(frame.points, frustum, frame.calib)
        cut_packet = bitstream.pack_lidar_packet(cut.to_packet(index, frame.lidar_stamp_ns, 'lidar'))
        rows.append({'frame': frame.name, 'points': int(len(frame.points)), 'xmodal_bytes': len(packet),
                     'frustum_points': cut.num_points, 'frustum_bytes': len(cut_packet),
                     'draco_bytes': draco_reference_size(frame.points),
                     'draco_quantized_bytes': draco_reference_size(frame.points, force_quantization=True),
                     'encode_ms': 1000.0 * seconds})
    streams = ('xmodal_bytes', 'frustum_bytes', 'draco_bytes', 'draco_quantized_bytes')
    mean = {key: float(np.mean([r[key] for r in rows]))
            for key in ('points', 'frustum_points', 'encode_ms') + streams}
    kbit = {key: mean[key] * 8.0 * data.fps / 1000.0 for key in streams}
    width, height = data.size
    frustum_bpp = 8.0 * mean['frustum_bytes'] / (width * height)
    summary = (
        f'Per scan (mean of {len(rows)}, {mean["points"]:.0f} points): our LiDAR packet '
        f'({_describe(config)}, {config.intensity_bits}-bit intensity, full scan) '
        f'{8 * mean["xmodal_bytes"] / 1000:.0f} kbit = {kbit["xmodal_bytes"]:.0f} kbit/s '
        f'at {data.fps:.1f} Hz; '
        f'point_cloud_transport Draco defaults (lossless float32) {8 * mean["draco_bytes"] / 1000:.0f} kbit '
        f'= {kbit["draco_bytes"]:.0f} kbit/s; with force_quantization (14-bit) '
        f'{8 * mean["draco_quantized_bytes"] / 1000:.0f} kbit = {kbit["draco_quantized_bytes"]:.0f} kbit/s. '
        'Image rates in the tables exclude the LiDAR stream, which is sent for its own sake. If the scan '
        'travelled only to condition the images, the frustum-only packet (what conditioning uses, '
        f'{mean["frustum_points"]:.0f} points) would add {8 * mean["frustum_bytes"] / 1000:.0f} kbit '
        'per frame = '
        f'{frustum_bpp:.3f} bpp to our image rate.')
    return {'config': {'codec': config.codec, 'max_error_m': config.max_error,
                       'quantization_bits': config.quantization_bits, 'intensity_bits': config.intensity_bits,
                       'compression_level': config.compression_level, 'frustum_only': config.frustum_only},
            'frames': rows, 'mean': mean, 'kbit_s': kbit, 'frustum_bpp': frustum_bpp,
            'bits_per_scan': {key: 8.0 * mean[key] for key in streams},
            'summary': summary}


def _describe(config) -> str:
    if config.codec == 'predictive':
        return f'predictive, every coordinate within {1000 * config.max_error:g} mm'
    return f'Draco, {config.quantization_bits}-bit positions'
