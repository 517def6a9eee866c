"""Runs every codec at every setting over the benchmark frames and measures each decoded frame.

Only numbers are kept, plus one crop of one frame per codec and setting for the side-by-side
figure: holding every decoded image would take gigabytes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from xmodal_compress_ros.bench import metrics
from xmodal_compress_ros.bench.sources import BenchData


@dataclass(frozen=True)
class FrameRecord:
    """One decoded frame of one codec at one setting."""

    codec: str
    setting: float
    frame: str
    bytes: int
    bpp: float
    psnr_db: float
    ms_ssim: float
    encode_ms: float
    decode_ms: float
    frame_kind: str = ''   # 'key' or 'P' for our stream modes, '' where the codec does not say


@dataclass(frozen=True)
class CropWindow:
    """Where the side-by-side figure looks: frame index and pixel box."""

    frame: int
    x: int
    y: int
    width: int
    height: int

    def take(self, image: np.ndarray) -> np.ndarray:
        return image[self.y:self.y + self.height, self.x:self.x + self.width].copy()


@dataclass
class BenchResult:
    """Everything a report is made of."""

    records: List[FrameRecord] = field(default_factory=list)
    crops: Dict[Tuple[str, float], np.ndarray] = field(default_factory=dict)
    original_crop: Optional[np.ndarray] = None
    crop: Optional[CropWindow] = None
    skipped: Dict[str, str] = field(default_factory=dict)   # codec -> why it did not run
    codec_info: Dict[str, Dict[str, object]] = field(default_factory=dict)
    settings: Dict[str, Tuple[float, ...]] = field(default_factory=dict)


def choose_crop(data: BenchData, width: int = 256, height: int = 128) -> CropWindow:
    """The most detailed window (highest luma gradient energy) of the middle frame.

    Flat sky and road show no codec differences; detail does.
    """
    index = len(data.frames) // 2
    image = data.frames[index].image.astype(np.float32)
    luma = image @ np.array([0.299, 0.587, 0.114], np.float32)
    energy = np.abs(np.diff(luma, axis=0))[:, :-1] + np.abs(np.diff(luma, axis=1))[:-1, :]
    h, w = energy.shape
    width, height = min(width, w), min(height, h)
    # Box sums through an integral image, on a coarse grid of candidate corners.
    integral = np.pad(energy, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ys = np.arange(0, h - height + 1, 8)
    xs = np.arange(0, w - width + 1, 8)
    sums = (integral[ys[:, None] + height, xs[None, :] + width] - integral[ys[:, None], xs[None, :] + width]
            - integral[ys[:, None] + height, xs[None, :]] + integral[ys[:, None], xs[None, :]])
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return CropWindow(index, int(xs[ix]), int(ys[iy]), width, height)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, disable=not enabled, unit='run', file=sys.stderr, dynamic_ncols=True)


def data_digest(data: BenchData) -> str:
    """Hash of the frames' names and pixels: a cache entry is only valid for the same frames."""
    digest = hashlib.sha256(json.dumps([data.names, list(data.size), data.fps]).encode())
    for frame in data.frames:
        digest.update(np.ascontiguousarray(frame.image).tobytes())
    return digest.hexdigest()


def _cache_path(cache_dir: Path, digest: str, name: str, info: dict, setting: float,
                crop: CropWindow) -> Path:
    key = json.dumps([digest, name, info, float(setting), dataclasses.astuple(crop)],
                     sort_keys=True, default=str)
    return cache_dir / f'{name}_{setting:g}_{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz'


def _load_cached(path: Path) -> Optional[Tuple[List[FrameRecord], np.ndarray]]:
    if not path.is_file():
        return None
    with np.load(path) as cached:
        records = [FrameRecord(**r) for r in json.loads(str(cached['records']))]
        return records, cached['crop']


def _store_cached(path: Path, records: List[FrameRecord], crop: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix('.partial.npz')
    np.savez_compressed(partial, records=np.array(json.dumps([r.__dict__ for r in records])), crop=crop)
    partial.replace(path)


def _measure(name: str, setting: float, codec, data: BenchData, crop: CropWindow
             ) -> Tuple[List[FrameRecord], np.ndarray]:
    """Runs one codec at one setting and measures every decoded frame."""
    width, height = data.size
    run = codec.run(data.frames, setting, data.fps)
    records = []
    for i, frame in enumerate(data.frames):
        decoded = run.decoded[i]
        records.append(FrameRecord(
            codec=name, setting=float(setting), frame=frame.name, bytes=run.sizes[i],
            bpp=metrics.bpp(run.sizes[i], width, height), psnr_db=metrics.psnr(frame.image, decoded),
            ms_ssim=metrics.ms_ssim(frame.image, decoded),
            encode_ms=1000.0 * run.encode_s[i], decode_ms=1000.0 * run.decode_s[i],
            frame_kind=run.kinds[i] if run.kinds else ''))
    return records, crop.take(run.decoded[crop.frame])


def run_benchmark(codecs: Dict[str, object], data: BenchData, settings: Dict[str, Sequence[float]],
                  show_progress: bool = True, cache_dir: Optional[Path] = None) -> BenchResult:
    """Runs each available codec at each of its settings; unavailable codecs are listed in ``skipped``.

    Args:
        codecs: name -> codec (``run(frames, setting, fps)``, ``unavailable_reason()``, ``describe()``).
        data: the frames.
        settings: name -> the settings to run (defaults to the codec's own ``settings``).
        cache_dir: keep each codec and setting's records there and reuse them when the frames, the
            codec's description (encoder, options, model ids) and the setting are the same.
    """
    result = BenchResult()
    result.crop = choose_crop(data)
    result.original_crop = result.crop.take(data.frames[result.crop.frame].image)
    runnable = {}
    for name, codec in codecs.items():
        reason = codec.unavailable_reason()
        if reason:
            result.skipped[name] = reason
            print(f'xmodal bench: skipping {name}: {reason}', file=sys.stderr)
        else:
            runnable[name] = codec
    digest = data_digest(data) if cache_dir else ''
    total = sum(len(settings.get(name, codec.settings)) for name, codec in runnable.items())
    with _progress(total, show_progress) as bar:
        for name, codec in runnable.items():
            result.codec_info[name] = codec.describe()
            result.settings[name] = tuple(float(s) for s in settings.get(name, codec.settings))
            for setting in result.settings[name]:
                bar.set_description(f'{name} {setting:g}')
                path = cache_dir and _cache_path(cache_dir, digest, name, result.codec_info[name], setting,
                                                 result.crop)
                cached = _load_cached(path) if path else None
                records, crop = cached or _measure(name, setting, codec, data, result.crop)
                if path and cached is None:
                    _store_cached(path, records, crop)
                result.records += records
                result.crops[(name, setting)] = crop
                bar.update(1)
    return result
