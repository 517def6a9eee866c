"""Turns benchmark records into report.json, report.md and the PNG figures."""
from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from xmodal_compress_ros.bench import metrics, plots
from xmodal_compress_ros.bench.runner import BenchResult, FrameRecord
from xmodal_compress_ros.bench.sources import BenchData

ANCHOR = 'jpeg'
OURS = 'xmodal'
#: Our variants compared with every other codec (the others only with JPEG).
HEADLINED = (OURS, 'xmodal-refined', 'xmodal-ensemble', 'xmodal-p', 'xmodal-fast', 'xmodal-p-fast')
# (report key, curve key, label): BD-rates are computed on PSNR and on MS-SSIM in dB.
BD_METRICS = (('psnr', 'psnr_db', 'PSNR'), ('ms_ssim', 'ms_ssim_db', 'MS-SSIM'))
# A BD-rate over less than 1 dB of common quality rests on fits extrapolated past their data.
NARROW_OVERLAP_DB = 1.0


def ms_ssim_db(value: float) -> float:
    """MS-SSIM on the usual dB scale, -10 log10(1 - MS-SSIM): spreads the values near 1."""
    return -10.0 * math.log10(max(1.0 - value, 1e-12))


def curves(records: Sequence[FrameRecord], fps: float) -> List[dict]:
    """One point per codec and setting: the per-frame values averaged over frames."""
    groups: Dict[Tuple[str, float], List[FrameRecord]] = defaultdict(list)
    for r in records:
        groups[(r.codec, r.setting)].append(r)
    points = []
    for (codec, setting), rs in groups.items():
        mean = {key: float(np.mean([getattr(r, key) for r in rs]))
                for key in ('bytes', 'bpp', 'psnr_db', 'ms_ssim', 'encode_ms', 'decode_ms')}
        points.append({
            'codec': codec, 'setting': setting, 'bpp': mean['bpp'], 'psnr_db': mean['psnr_db'],
            'ms_ssim': mean['ms_ssim'], 'ms_ssim_db': ms_ssim_db(mean['ms_ssim']),
            'bytes': mean['bytes'], 'kbit_s': mean['bytes'] * 8.0 * fps / 1000.0,
            'encode_ms': mean['encode_ms'], 'decode_ms': mean['decode_ms'], 'frames': len(rs)})
        for kind, label in (('key', 'key'), ('P', 'p')):
            # Our stream modes: key and P frames apart (their mean bpp, PSNR and decode time).
            kept = [r for r in rs if r.frame_kind == kind]
            if kept and any(r.frame_kind == 'P' for r in rs):
                points[-1].update({f'{label}_frames': len(kept),
                                   f'{label}_bpp': float(np.mean([r.bpp for r in kept])),
                                   f'{label}_psnr_db': float(np.mean([r.psnr_db for r in kept])),
                                   f'{label}_decode_ms': float(np.mean([r.decode_ms for r in kept]))})
    return points


def _curve(points: Sequence[dict], codec: str, key: str) -> Tuple[np.ndarray, np.ndarray]:
    mine = sorted((p['bpp'], p[key]) for p in points if p['codec'] == codec)
    return np.array([m[0] for m in mine]), np.array([m[1] for m in mine])


def bd_entry(points: Sequence[dict], anchor: str, test: str, key: str) -> dict:
    """BD-rate of ``test`` against ``anchor`` on quality ``key``, with its overlap range."""
    rate_a, qual_a = _curve(points, anchor, key)
    rate_t, qual_t = _curve(points, test, key)
    result = metrics.bd_rate(rate_a, qual_a, rate_t, qual_t)
    delta = metrics.bd_quality(rate_a, qual_a, rate_t, qual_t)
    notes = [result.note] if result.note else []
    if result.overlap and result.overlap[1] - result.overlap[0] < NARROW_OVERLAP_DB:
        notes.append(f'narrow overlap ({result.overlap[1] - result.overlap[0]:.2f} dB): indicative only')
    return {'codec': test, 'anchor': anchor, 'metric': key, 'percent': result.percent,
            'overlap': list(result.overlap) if result.overlap else None, 'note': '; '.join(notes),
            'delta_quality': delta.delta, 'rate_overlap': list(delta.overlap) if delta.overlap else None}


def bd_tables(points: Sequence[dict]) -> Dict[str, object]:
    """Every codec against JPEG, and ours against every baseline, on PSNR and MS-SSIM."""
    codecs = list(dict.fromkeys(p['codec'] for p in points))
    out: Dict[str, object] = {'entries': []}
    for name, key, _ in BD_METRICS:
        if ANCHOR in codecs:
            entries = [bd_entry(points, ANCHOR, c, key) for c in codecs if c != ANCHOR]
            out['entries'] += entries
            table = {ANCHOR: 0.0}
            table.update({e['codec']: e['percent'] for e in entries})
            out['vs_jpeg_' + name] = table
            deltas = {ANCHOR: 0.0}
            deltas.update({e['codec']: e['delta_quality'] for e in entries})
            out['delta_vs_jpeg_' + name] = deltas
        for ours in (c for c in HEADLINED if c in codecs):
            out['entries'] += [dict(bd_entry(points, c, ours, key), codec=ours, anchor=c)
                               for c in codecs if c not in (ours, ANCHOR)]
    return out


WITH_LIDAR = OURS + '+frustum-lidar'


def bd_with_lidar(points: Sequence[dict], frustum_bpp: float) -> List[dict]:
    """Ours with the frustum-only LiDAR packet added to its rate, against every other codec.

    The honest comparison when the scan would not be sent at all without our codec.
    """
    shifted = [dict(p, codec=WITH_LIDAR, bpp=p['bpp'] + frustum_bpp) for p in points if p['codec'] == OURS]
    if not shifted:
        return []
    everything = list(points) + shifted
    anchors = [c for c in dict.fromkeys(p['codec'] for p in points) if c != OURS]
    return [bd_entry(everything, anchor, WITH_LIDAR, key) for anchor in anchors for _, key, _ in BD_METRICS]


def machine_info() -> Dict[str, object]:
    """What ran the benchmark (timings depend on it)."""
    from xmodal_compress_ros.bench import ffmpeg
    import cv2
    import torch
    from xmodal_compress_ros.runtime.cpu_features import cpu_name
    return {'cpu': cpu_name(), 'cores': os.cpu_count(), 'platform': platform.platform(),
            'python': sys.version.split()[0], 'numpy': np.__version__, 'torch': torch.__version__,
            'torch_threads': torch.get_num_threads(), 'opencv': cv2.__version__,
            'ffmpeg': ffmpeg.ffmpeg_version() or 'not installed'}


def _records_at(result: BenchResult, frame: str) -> Dict[Tuple[str, float], FrameRecord]:
    return {(r.codec, r.setting): r for r in result.records if r.frame == frame}


CROP_TARGET_BPP = 0.3  # low enough that the codecs' artefacts differ visibly


def crop_panels(result: BenchResult, data: BenchData, bd_vs_jpeg: Dict[str, Optional[float]],
                setting_names: Dict[str, str], count: int = 6) -> Tuple[List[Tuple[str, np.ndarray]], dict]:
    """Original, then the reference codec, then the best baselines, each at the bpp nearest the reference's.

    The reference is ours (else JPEG) at its setting nearest :data:`CROP_TARGET_BPP` on the crop's
    frame. Labels carry the bpp and PSNR of that whole frame.
    """
    frame = data.frames[result.crop.frame].name
    at = _records_at(result, frame)
    codecs = list(result.settings)
    reference = OURS if OURS in codecs else (ANCHOR if ANCHOR in codecs else codecs[0])

    def nearest(codec: str, bpp: float) -> float:
        return float(min(result.settings[codec], key=lambda s: abs(at[(codec, float(s))].bpp - bpp)))

    target = at[(reference, nearest(reference, CROP_TARGET_BPP))].bpp
    # Our variants first, then JPEG, then the baselines with the best BD-rate against JPEG.
    others = [c for c in codecs if c.startswith(OURS) and c != reference]
    ranked = sorted((c for c in codecs if not c.startswith(OURS) and c not in (ANCHOR, reference)),
                    key=lambda c: (bd_vs_jpeg.get(c) is None, bd_vs_jpeg.get(c) or 0.0))
    order = [reference] + others[:1] + ([ANCHOR] if ANCHOR != reference and ANCHOR in codecs else []) + ranked
    panels = [(f'original ({frame})', result.original_crop)]
    chosen = []
    for codec in order[:count - 1]:
        setting = nearest(codec, target)
        rec = at[(codec, setting)]
        panels.append((f'{codec}, {setting_names.get(codec, "setting")} {setting:g}: '
                       f'{rec.bpp:.3f} bpp, {rec.psnr_db:.2f} dB', result.crops[(codec, setting)]))
        chosen.append({'codec': codec, 'setting': setting, 'bpp': rec.bpp, 'psnr_db': rec.psnr_db,
                       'ms_ssim': rec.ms_ssim})
    info = {'frame': frame, 'x': result.crop.x, 'y': result.crop.y, 'width': result.crop.width,
            'height': result.crop.height, 'target_bpp': target, 'panels': chosen}
    return panels, info


def _fmt(value: Optional[float], spec: str = '+.1f', suffix: str = ' %') -> str:
    return 'n/a' if value is None or not np.isfinite(value) else format(value, spec) + suffix


def markdown(report: dict) -> str:
    """report.md: headline table, ours against each baseline, LiDAR stream, per-setting tables."""
    ds = report['dataset']
    lines = [f'# xmodal bench: {ds["name"]}', '',
             f'{len(ds["frames"])} frames of {ds["source"]} ({ds["size"][0]}x{ds["size"][1]} after the '
             f'common crop), {ds["fps"]:.1f} fps for kbit/s. Machine: {report["machine"]["cpu"]}, '
             f'{report["machine"]["cores"]} cores. Rates are real coded bytes of the image alone; quality is '
             'RGB PSNR and MS-SSIM of the decoded image, averaged over frames. BD-rate: negative = '
             'fewer bits '
             'for the same quality, over the overlapping quality range only; BD-PSNR/BD-quality: dB gained '
             'at equal rate, over the overlapping rate range (see docs/benchmark.md).', '']
    bd = report['bd_rate']
    curves_by = defaultdict(list)
    for p in report['curves']:
        curves_by[p['codec']].append(p)
    lines += ['## Headline: BD-rate against JPEG (4:2:0, compressed_image_transport)', '',
              '| codec | BD-rate PSNR | BD-rate MS-SSIM | BD-PSNR (dB) | bpp range | PSNR range (dB) '
              '| encode ms | decode ms |',
              '|---|---:|---:|---:|---|---|---:|---:|']
    vs_jpeg = {(e['codec'], e['metric']): e for e in bd['entries'] if e['anchor'] == ANCHOR}

    def headline_bd(codec: str, name: str, key: str) -> str:
        text = _fmt(bd.get('vs_jpeg_' + name, {}).get(codec))
        narrow = 'narrow overlap' in vs_jpeg.get((codec, key), {}).get('note', '')
        return text + ' *' if narrow else text

    for codec, points in curves_by.items():
        bpps = [p['bpp'] for p in points]
        psnrs = [p['psnr_db'] for p in points]
        lines.append(
            f'| {codec} | {headline_bd(codec, "psnr", "psnr_db")} | '
            f'{headline_bd(codec, "ms_ssim", "ms_ssim_db")} | '
            f'{_fmt(bd.get("delta_vs_jpeg_psnr", {}).get(codec), "+.2f", "")} | '
            f'{min(bpps):.3f}-{max(bpps):.3f} | '
            f'{min(psnrs):.2f}-{max(psnrs):.2f} | {np.median([p["encode_ms"] for p in points]):.1f} | '
            f'{np.median([p["decode_ms"] for p in points]):.1f} |')
    lines += ['', f'\\* less than {NARROW_OVERLAP_DB:g} dB of common quality: the fits are extrapolated, '
              'treat as indicative. n/a: no common quality range (BD-PSNR still compares at equal rate). '
              'Encode/decode ms: median over settings of the per-frame wall time on this machine.']
    for name in HEADLINED:
        ours = [e for e in bd['entries'] if e['codec'] == name]
        if ours:
            lines += ['', f'## Ours ({name}) against each codec', '',
                      f'| anchor | metric | BD-rate of {name} | overlap (quality) | BD-quality (dB) | note |',
                      '|---|---|---:|---|---:|---|']
            lines += [_bd_row(e) for e in ours]
    lidar = report.get('lidar')
    if lidar:
        lines += ['', '## LiDAR stream beside the images', '', lidar['summary'], '']
    if report.get('bd_rate_with_lidar'):
        lines += ['', f'## Ours with the frustum LiDAR packet counted (+{lidar["frustum_bpp"]:.3f} bpp)', '',
                  'When the scan would not be sent without our codec, its bytes belong to the image '
                  'rate.', '',
                  '| anchor | metric | BD-rate | overlap (quality) | BD-quality (dB) | note |',
                  '|---|---|---:|---|---:|---|']
        lines += [_bd_row(e) for e in report['bd_rate_with_lidar']]
    if report.get('live'):
        from xmodal_compress_ros.bench.live import live_markdown
        lines += live_markdown(report['live'])
    if report['skipped']:
        lines += ['', '## Skipped codecs', ''] + [f'- {k}: {v}' for k, v in report['skipped'].items()]
    lines += ['', '## Settings and per-setting averages', '']
    for codec, points in curves_by.items():
        info = report['codecs'][codec]
        lines += [f'### {codec}', '', _describe(info), '',
                  f'| {info.get("setting", "setting")} | bpp | kbit/s | PSNR dB | MS-SSIM | encode ms '
                  '| decode ms |',
                  '|---:|---:|---:|---:|---:|---:|---:|']
        for p in sorted(points, key=lambda p: p['bpp']):
            lines.append(f'| {p["setting"]:g} | {p["bpp"]:.4f} | {p["kbit_s"]:.0f} | {p["psnr_db"]:.2f} | '
                         f'{p["ms_ssim"]:.4f} | {p["encode_ms"]:.1f} | {p["decode_ms"]:.1f} |')
        lines.append('')
    lines += ['## Figures', '', '![PSNR](rd_psnr.png)', '', '![MS-SSIM](rd_ms_ssim.png)', '',
              '![crops](crops.png)', '']
    return '\n'.join(lines)


def _bd_row(e: dict) -> str:
    """A report.md row: anchor, metric, BD-rate with its quality overlap, BD-quality, notes."""
    overlap = '-' if not e['overlap'] else f'{e["overlap"][0]:.2f}-{e["overlap"][1]:.2f}'
    label = 'PSNR (dB)' if e['metric'] == 'psnr_db' else 'MS-SSIM (dB)'
    return (f'| {e["anchor"]} | {label} | {_fmt(e["percent"])} | {overlap} | '
            f'{_fmt(e["delta_quality"], "+.2f", "")} | {e["note"]} |')


def _describe(info: dict) -> str:
    """One line of a codec's settings for report.md."""
    keys = ('encoder', 'decoder', 'chroma', 'mode', 'args', 'bitstream_filter', 'variant', 'torch_threads')
    parts = [f'{key}: {info[key]}' for key in keys if info.get(key)]
    for stem, model in info.get('models', {}).items():
        line = f'model {stem} (id {model["model_id"]}, last run {_run_summary(model)}'
        for run in model.get('history', []):
            line += f'; before that, model {run["model_id"]}: {_run_summary(run)}'
        parts.append(line + ')')
    return '; '.join(parts)


def _run_summary(run: dict) -> str:
    text = f'{run.get("training_steps")} steps on {run.get("training_frames")} frames'
    if run.get('training_sources'):
        text += ' of ' + ', '.join(run['training_sources'])
    return text + (f', only {run["trained_only"]}* trained' if run.get('trained_only') else '')


def write_report(out_dir: Path, result: BenchResult, data: BenchData, extra: Optional[dict] = None) -> dict:
    """Writes report.json, report.md, rd_psnr.png, rd_ms_ssim.png and crops.png; returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    points = curves(result.records, data.fps)
    bd = bd_tables(points)
    setting_names = {name: str(info.get('setting', 'setting')) for name, info in result.codec_info.items()}
    panels, crop_info = crop_panels(result, data, bd.get('vs_jpeg_psnr', {}), setting_names)
    report = {
        'tool': 'xmodal bench',
        'dataset': {'name': data.dataset, 'source': data.source, 'frames': data.names,
                    'size': list(data.size), 'original_sizes': [list(s) for s in data.original_sizes],
                    'fps': data.fps, 'sequential': data.sequential},
        'machine': machine_info(),
        'codecs': {name: dict(info, settings=list(result.settings[name]))
                   for name, info in result.codec_info.items()},
        'skipped': dict(result.skipped),
        'curves': points,
        'bd_rate_vs_jpeg': bd.get('vs_jpeg_psnr', {}),
        'bd_rate_vs_jpeg_ms_ssim': bd.get('vs_jpeg_ms_ssim', {}),
        'bd_rate': bd,
        'crop': crop_info,
        'records': [r.__dict__ for r in result.records],
        'figures': ['rd_psnr.png', 'rd_ms_ssim.png', 'crops.png'],
    }
    report.update(extra or {})
    lidar = report.get('lidar') or {}
    if 'frustum_bpp' in lidar:
        report['bd_rate_with_lidar'] = bd_with_lidar(points, lidar['frustum_bpp'])
    max_bpp = _plot_bpp_limit(points)
    title = f'{data.dataset}: {len(data.frames)} frames, {data.size[0]}x{data.size[1]}'
    plots.rd_plot(points, 'psnr_db', 'RGB PSNR (dB)', title, out_dir / 'rd_psnr.png', max_bpp)
    plots.rd_plot(points, 'ms_ssim_db', 'MS-SSIM (dB) = -10 log10(1 - MS-SSIM)', title,
                  out_dir / 'rd_ms_ssim.png', max_bpp)
    plots.crops_figure(panels, out_dir / 'crops.png',
                       f'{crop_info["frame"]}, crop {crop_info["width"]}x{crop_info["height"]} at '
                       f'({crop_info["x"]}, {crop_info["y"]}); codecs at the bpp nearest '
                       f'{crop_info["target_bpp"]:.3f} (whole-frame bpp and PSNR)')
    (out_dir / 'report.json').write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + '\n')
    (out_dir / 'report.md').write_text(markdown(report))
    return report


def _plot_bpp_limit(points: Sequence[dict]) -> float:
    """Right edge of the RD plots: past our largest rate (plus 50 %) the curves only show baselines."""
    ours = [p['bpp'] for p in points if p['codec'].startswith(OURS)]
    top = max(p['bpp'] for p in points)
    return min(top, 1.5 * max(ours)) if ours else min(top, 3.0)


def _finite(value):
    """JSON-ready copy: NumPy scalars to Python floats of 6 significant digits, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float):
        # Six significant digits: far below measurement noise, and half the file size.
        return float(f'{value:.6g}') if math.isfinite(value) else None
    return value
