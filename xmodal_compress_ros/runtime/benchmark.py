"""Per-stage latency of the whole codec on each backend: what ``xmodal bench-runtime`` measures.

For each backend and image size: build an :class:`Encoder` and a :class:`Decoder` (with
``profile=True``, so GPU stages are synchronised and attributed correctly), run ``warmup``
untimed frames, then time ``frames`` frames. Stages come from the pipeline's ``last_timings``;
LiDAR coding is timed around ``encode_scan``/``decode_lidar``. Percentiles are over frames.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime.cpu_features import BF16_FLAGS, cpu_flags, cpu_name

#: Stage name in the report -> (side, key in last_timings or a timing of this module).
STAGES = {
    'lidar_encode': ('encoder', 'lidar_encode'),
    'preprocess': ('encoder', 'preprocess'),
    'projection_encode': ('encoder', 'projection'),
    'encoder_network': ('encoder', 'encoder_network'),
    'mean_network': ('encoder', 'mean_network'),
    'entropy_encode': ('encoder', 'entropy_encode'),
    'encode_image': ('encoder', 'total'),
    'lidar_decode': ('decoder', 'lidar_decode'),
    'entropy_decode': ('decoder', 'entropy_decode'),
    'projection_decode': ('decoder', 'projection'),
    'decoder_network': ('decoder', 'decoder_network'),
    'decode_image': ('decoder', 'total'),
}
PERCENTILES = (50, 95, 99)
#: Environment variables that cap the instruction sets oneDNN and PyTorch's own kernels use.
ISA_CAPS = ('ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY')


@dataclass(frozen=True)
class BenchSettings:
    """One benchmark row: backend, device, precision, image size."""

    backend: str
    device: str
    precision: str
    width: int
    height: int


def device_tag(device: str) -> str:
    """A short file-name-safe name of the machine: ``cpu-<N>core`` or the GPU's name."""
    if device.startswith('cuda') and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
        return ''.join(c if c.isalnum() else '-' for c in name.lower()).strip('-')
    return f'cpu-{os.cpu_count()}core'


def device_description(device: str) -> Dict:
    info = {'tag': device_tag(device), 'cpu': cpu_name(), 'cpu_count': os.cpu_count(),
            'cpu_bf16_flags': cpu_flags(BF16_FLAGS),
            'torch_cpu_capability': torch.backends.cpu.get_cpu_capability(),
            'platform': platform.platform(), 'torch': torch.__version__}
    # Caps a run may set to time a CPU without some instructions on this one (docs/runtime.md).
    info.update({name.lower(): os.environ[name] for name in ISA_CAPS if name in os.environ})
    if device.startswith('cuda') and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_mib=props.total_memory // 2 ** 20)
    return info


def percentiles(values: Sequence[float]) -> Dict[str, float]:
    """p50/p95/p99 and mean of ``values`` (milliseconds), rounded to 0.01 ms."""
    array = np.asarray(values, dtype=np.float64)
    out = {f'p{p}': round(float(np.percentile(array, p)), 2) for p in PERCENTILES}
    out['mean'] = round(float(array.mean()), 2)
    return out


def run_row(settings: BenchSettings, stems: Tuple[str, str], frames: List, count: int, warmup: int,
            cache_dir: str = '', threads: int = 0, quality: int = 3) -> Dict:
    """Time ``count`` frames (cycling through ``frames``, all of the row's size and calibration) after
    ``warmup`` untimed ones."""
    from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig, Encoder, EncoderConfig

    calib = frames[0].calib
    size = (settings.width, settings.height)
    common = dict(backend=settings.backend, device=settings.device, precision=settings.precision,
                  cache_dir=cache_dir, profile=True, threads=threads, warmup=False)
    encoder = Encoder(EncoderConfig(model=stems[0], fallback_model=stems[1], quality=quality, **common),
                      calib)
    decoder = Decoder(DecoderConfig(models=tuple(stems), resolutions=(size,), **common))
    cuda = settings.device.startswith('cuda')
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch.device(settings.device))
    samples: Dict[str, List[float]] = {name: [] for name in STAGES}
    bytes_seen = []
    for index in range(warmup + count):
        frame = frames[index % len(frames)]
        timings = {'encoder': {}, 'decoder': {}}
        start = time.perf_counter()
        lidar_packet, scan = encoder.encode_scan(frame.points, index)
        timings['encoder']['lidar_encode'] = (time.perf_counter() - start) * 1e3
        encoded = encoder.encode_image(frame.image, index, scan)
        timings['encoder'].update(encoder.last_timings)
        start = time.perf_counter()
        decoded_scan = decoder.decode_lidar(lidar_packet)
        timings['decoder']['lidar_decode'] = (time.perf_counter() - start) * 1e3
        decoder.decode_image(encoded.packet, decoded_scan)
        timings['decoder'].update(decoder.last_timings)
        if index >= warmup:
            for name, (side, key) in STAGES.items():
                samples[name].append(timings[side][key])
            bytes_seen.append((encoded.image_bytes, len(lidar_packet)))
    row = {'backend': settings.backend, 'device': settings.device, 'precision': settings.precision,
           'width': settings.width, 'height': settings.height, 'frames': count, 'warmup': warmup,
           'backend_version': encoder._main.backend.get_version(),
           'stages_ms': {name: percentiles(values) for name, values in samples.items()},
           'mean_image_bytes': round(float(np.mean([b[0] for b in bytes_seen])), 1),
           'mean_lidar_bytes': round(float(np.mean([b[1] for b in bytes_seen])), 1)}
    if cuda:
        peak = torch.cuda.max_memory_allocated(torch.device(settings.device))
        row['peak_gpu_memory_mib'] = round(peak / 2 ** 20, 1)
    return row


def unavailable_reason(backend: str, device: str, precision: str) -> Optional[str]:
    """Why a (backend, device, precision) row cannot run here, or None if it can."""
    from xmodal_compress_ros.runtime.base import get_backend_class

    try:
        cls = get_backend_class(backend)
    except ParameterError as exc:
        return str(exc)
    if precision not in cls.precisions:
        return f'{backend} does not run {precision}'
    if not cls.is_available(device):
        return cls.unavailable_reason(device)
    return None
