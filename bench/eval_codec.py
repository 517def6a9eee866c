"""Rate-distortion of the learned codecs on the held-out KITTI frames, from real bytes.

Codecs: the LiDAR-conditioned model, its image-only twin, the LiDAR model decoded with the zeros map
(``lidar-dropped``: the scan lost at the decoder) and JPEG 4:2:0 through OpenCV (libjpeg-turbo,
quality 5..95). With ``--post-filter-views N`` the same packets are also decoded with the post filter
averaged over N views (``lidar-xN``, ``twin-xN``). bpp = 8 * bytes / (W * H) of the original frame,
PSNR over RGB. BD-rates (Bjontegaard, PSNR) of the LiDAR model vs the twin and of both vs JPEG. Writes
bench/results/codec_eval_<tag>.json.

Held-out frames only (never used for training): kitti_object (training 000000-000010, 000021, testing
000007) and every ``--raw-stride``-th frame of the kitti_raw drive.

    .venv/bin/python bench/eval_codec.py [--lidar models/xmodal-lidar] [--twin models/xmodal-hyperprior]
                                         [--raw-stride 5] [--max-frames N] [--tag cpu-2core]
                                         [--post-filter-views N]
"""
import argparse
import itertools
import json
import socket
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from xmodal_compress_ros.bench.metrics import bd_rate, bpp, psnr
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.post_filter import ENSEMBLE_SIZES
from xmodal_compress_ros.data.kitti import KittiObjectDataset, KittiRawDrive
from xmodal_compress_ros.geometry.projection import depth_condition

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / 'shared' / 'data'
JPEG_QUALITIES = (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def held_out_frames(raw_stride: int):
    """(name, image uint8 RGB, depth-condition map) of the evaluation frames."""
    for split in ('training', 'testing'):
        for frame in KittiObjectDataset(DATA / 'kitti_object', split=split):
            yield f'kitti_object/{split}/{frame.name}', frame
    day = DATA / 'kitti_raw' / '2011_09_26'
    drive = KittiRawDrive(day / '2011_09_26_drive_sfnd_sync', day)
    for i in range(0, len(drive), raw_stride):
        frame = drive[i]
        yield f'kitti_raw/{frame.name}', frame


def add_frame_arguments(parser) -> None:
    """The options every held-out-frame script shares: which frames, how many threads, the result tag."""
    parser.add_argument('--raw-stride', type=int, default=5, help='use every n-th kitti_raw frame')
    parser.add_argument('--max-frames', type=int, default=0, help='stop after this many frames (0: all)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--tag', default=socket.gethostname())


def selected_frames(args):
    """The held-out frames that ``add_frame_arguments``' options select."""
    frames = held_out_frames(args.raw_stride)
    return itertools.islice(frames, args.max_frames) if args.max_frames else frames


def write_model_result(kind: str, args, model, fields: dict,
                       folder: Path = REPO / 'bench' / 'results') -> Path:
    """Write ``<folder>/<kind>_<tag>.json``: host, tag, model stem and id, then ``fields``."""
    result = {'host': socket.gethostname(), 'tag': args.tag, 'model': args.model,
              'model_id': model.metadata['model_id'], **fields}
    out = Path(folder) / f'{kind}_{args.tag}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return out


def jpeg_points(image: np.ndarray):
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for q in JPEG_QUALITIES:
        params = [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
        t0 = time.perf_counter()
        ok, data = cv2.imencode('.jpg', bgr, params)
        t1 = time.perf_counter()
        decoded = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        t2 = time.perf_counter()
        yield q, len(data), decoded, t1 - t0, t2 - t1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def learned_points(model, image: np.ndarray, depth: np.ndarray, drop_lidar: bool, views=None):
    """Per quality: (quality, bytes, decoded, enc s, dec s, decoded without LiDAR or None, and
    (decoded, dec s) by ``views`` (the model with more post-filter views) or None)."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    d = torch.from_numpy(depth)[None, None] if model.uses_lidar else None
    for q in range(model.quality_levels):
        t0 = time.perf_counter()
        compressed = model.compress(x, d, quality=q)
        t1 = time.perf_counter()
        decoded = to_uint8(model.decompress(compressed, d))
        t2 = time.perf_counter()
        extra = ensemble = None
        if drop_lidar:
            extra = to_uint8(model.decompress(compressed, None))
        if views is not None:
            t3 = time.perf_counter()
            ensemble = (to_uint8(views.decompress(compressed, d)), time.perf_counter() - t3)
        yield q, compressed.num_bytes, decoded, t1 - t0, t2 - t1, extra, ensemble


def summarise(records):
    """Mean bpp/PSNR per (codec, setting) and median times."""
    groups = {}
    for r in records:
        groups.setdefault((r['codec'], r['setting']), []).append(r)
    out = []
    for (codec, setting), rs in groups.items():
        entry = {'codec': codec, 'setting': setting, 'frames': len(rs),
                 'bpp': float(np.mean([r['bpp'] for r in rs])),
                 'psnr_db': float(np.mean([r['psnr_db'] for r in rs]))}
        if rs[0].get('encode_ms') is not None:
            entry['encode_ms_median'] = float(np.median([r['encode_ms'] for r in rs]))
            entry['decode_ms_median'] = float(np.median([r['decode_ms'] for r in rs]))
        out.append(entry)
    return out


def bd_table(summary, pairs):
    curves = {}
    for s in summary:
        curves.setdefault(s['codec'], []).append((s['bpp'], s['psnr_db']))
    out = []
    for test, anchor in pairs:
        if test not in curves or anchor not in curves:
            continue
        a, t = sorted(curves[anchor]), sorted(curves[test])
        result = bd_rate([p[0] for p in a], [p[1] for p in a], [p[0] for p in t], [p[1] for p in t])
        out.append({'test': test, 'anchor': anchor, 'bd_rate_psnr_percent': result.percent,
                    'overlap_db': result.overlap, 'note': result.note})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--lidar', default=str(REPO / 'models' / 'xmodal-lidar'))
    parser.add_argument('--twin', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--post-filter-views', type=int, default=1, choices=ENSEMBLE_SIZES,
                        help='also decode with the post filter averaged over N views')
    add_frame_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {'lidar': load_model(args.lidar), 'twin': load_model(args.twin)}
    n_views = args.post_filter_views
    ensembles = {k: m.with_post_filter_views(n_views) if n_views > 1 else None for k, m in models.items()}
    records = []
    for name, frame in selected_frames(args):
        image = frame.image
        h, w = image.shape[:2]
        depth = depth_condition(frame.points, frame.calib)

        def add(codec, setting, num_bytes, decoded, enc=None, dec=None):
            records.append({'frame': name, 'codec': codec, 'setting': setting, 'bytes': int(num_bytes),
                            'bpp': bpp(num_bytes, w, h), 'psnr_db': psnr(image, decoded),
                            'encode_ms': None if enc is None else enc * 1e3,
                            'decode_ms': None if dec is None else dec * 1e3})

        for q, n, decoded, enc, dec in jpeg_points(image):
            add('jpeg-420', q, n, decoded, enc, dec)
        for key, model in models.items():
            points = learned_points(model, image, depth, key == 'lidar', ensembles[key])
            for q, n, decoded, enc, dec, dropped, ensemble in points:
                add(key, q, n, decoded, enc, dec)
                if dropped is not None:
                    add('lidar-dropped', q, n, dropped)
                if ensemble is not None:
                    add(f'{key}-x{n_views}', q, n, ensemble[0], enc, ensemble[1])
        last = [r for r in records if r['frame'] == name and r['setting'] == 3]
        print(name, ' '.join(f"{r['codec']}:{r['bpp']:.3f}bpp/{r['psnr_db']:.2f}dB" for r in last),
              flush=True)
    summary = summarise(records)
    pairs = [('lidar', 'twin'), ('lidar', 'jpeg-420'), ('twin', 'jpeg-420'), ('lidar-dropped', 'twin'),
             ('lidar-dropped', 'lidar')]
    if n_views > 1:
        lidar_views, twin_views = f'lidar-x{n_views}', f'twin-x{n_views}'
        pairs += [(lidar_views, 'lidar'), (twin_views, 'twin'), (lidar_views, twin_views),
                  (lidar_views, 'jpeg-420'), (twin_views, 'jpeg-420')]
    result = {
        'host': socket.gethostname(), 'tag': args.tag, 'threads': args.threads,
        'post_filter_views': n_views,
        'models': {k: {'path': p, 'model_id': m.metadata['model_id'],
                       'training_steps': m.metadata.get('training', {}).get('steps')}
                   for (k, m), p in zip(models.items(), (args.lidar, args.twin))},
        'frames': sorted({r['frame'] for r in records}),
        'summary': sorted(summary, key=lambda s: (s['codec'], s['setting'])),
        'bd_rate': bd_table(summary, pairs),
        'records': records,
    }
    for s in result['summary']:
        print(f"{s['codec']:>14} {s['setting']:>3} {s['bpp']:.4f} bpp {s['psnr_db']:.2f} dB")
    for b in result['bd_rate']:
        pct = 'n/a' if b['bd_rate_psnr_percent'] is None else f"{b['bd_rate_psnr_percent']:+.1f}%"
        print(f"BD-rate {b['test']} vs {b['anchor']}: {pct} over {b['overlap_db']}")
    out = REPO / 'bench' / 'results' / f'codec_eval_{args.tag}.json'
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
