"""``xmodal bench``: rate-distortion benchmark of our codec against JPEG, WebP, H.264, H.265 and AV1."""
from __future__ import annotations

import argparse

from xmodal_compress_ros.cli.arguments import positive_int
from xmodal_compress_ros.errors import DatasetError

HELP = 'benchmark our codec against JPEG/WebP/H.264/H.265/AV1 on KITTI, a rosbag or synthetic frames'


def _settings(item: str):
    """``'0,2,4'`` (our quality levels) or ``'CODEC=v1,v2'`` (any codec's qualities or crfs)."""
    name, _, values = item.rpartition('=')
    try:
        numbers = [float(v) for v in values.split(',') if v.strip()]
    except ValueError:
        numbers = []
    if not numbers:
        raise argparse.ArgumentTypeError(f'expected "0,2,4" or "CODEC=10,50,90", got {item!r}')
    return name, numbers


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--bag', help='rosbag2 (folder, .mcap or .db3) with camera and LiDAR topics')
    source.add_argument('--kitti', metavar='DIR', help='KITTI object root/split or a KITTI raw drive folder')
    source.add_argument('--synthetic', type=int, metavar='N', help='N synthetic street frames')
    parser.add_argument('--codecs', default='all',
                        help='comma-separated codec names, or "all" (default: every codec but the slow '
                             'xmodal-refined and xmodal-ensemble); see docs/benchmark.md')
    parser.add_argument('--refine-steps', type=int, default=None,
                        help='latent refinement steps of xmodal-refined (default 30)')
    parser.add_argument('--qualities', type=_settings, nargs='+', default=[], metavar='[CODEC=]LIST',
                        help='settings to run: "0,2,4" = quality levels of our codecs '
                             '(default: every level); '
                             '"jpeg=10,50,90", "h265-444=22,32" = qualities or crfs of that codec')
    parser.add_argument('--frames', type=int, default=None, help='use only the first N frames')
    parser.add_argument('--frame-stride', type=positive_int, default=1,
                        help='benchmark every K-th frame (after --frames, which counts the strided '
                             'frames; default 1)')
    parser.add_argument('--gop', type=int, default=10,
                        help='key-frame interval of the -p video modes (default 10)')
    parser.add_argument('--out', required=True, help='output folder for report.json, report.md and the PNGs')
    parser.add_argument('--model', default=None,
                        help='LiDAR-conditioned model stem (default: the pipeline default)')
    parser.add_argument('--fallback-model', default=None,
                        help='image-only model stem (default: the pipeline default)')
    parser.add_argument('--pframe-model', default=None,
                        help='P-frame model stem of the xmodal-p modes (default: the pipeline default)')
    parser.add_argument('--fast-model', default=None,
                        help='model stem of xmodal-fast and xmodal-p-fast (default: the fast tier\'s)')
    parser.add_argument('--fast-pframe-model', default=None,
                        help='P-frame model stem of xmodal-p-fast (default: the fast tier\'s)')
    parser.add_argument('--calib', default=None, help='calibration for --bag (YAML or KITTI calib file)')
    parser.add_argument('--image-topic', default=None, help='image topic for --bag')
    parser.add_argument('--lidar-topic', default=None, help='PointCloud2 topic for --bag')
    parser.add_argument('--seed', type=int, default=0, help='seed of --synthetic scenes')
    parser.add_argument('--live', action='store_true',
                        help='also play --bag through the real encoder and decoder nodes at each of '
                             'our qualities '
                             '(default: the pipeline default) and report latency, drops and kbit/s')
    parser.add_argument('--live-rate', type=float, default=1.0, help='playback speed of --live (default 1)')
    parser.add_argument('--threads', type=int, default=1,
                        help='PyTorch threads for our codec and MS-SSIM '
                             '(default 1: every encoder single-threaded)')
    parser.add_argument('--cache', default=None, metavar='DIR',
                        help='keep each codec and setting\'s measurements in DIR and reuse them on reruns '
                             '(same frames, codec options, model ids and setting)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')


def _load(args):
    from xmodal_compress_ros.bench import sources
    limit = None if args.frames is None else args.frames * args.frame_stride
    if args.kitti:
        data = sources.load_kitti(args.kitti, limit)
    elif args.bag:
        data = sources.load_bag(args.bag, limit, args.calib, args.image_topic, args.lidar_topic)
    else:
        data = sources.load_synthetic(args.synthetic, args.seed, limit)
    return sources.every_nth(data, args.frame_stride)


def _live(args: argparse.Namespace, qualities):
    from pathlib import Path

    from xmodal_compress_ros.bench.live import live_runs
    from xmodal_compress_ros.codec.pipeline import EncoderConfig

    defaults = EncoderConfig()
    return live_runs(Path(args.bag), Path(args.out), qualities or [defaults.quality],
                     args.model or defaults.model, args.fallback_model or defaults.fallback_model,
                     calibration=Path(args.calib) if args.calib else None, frames=args.frames or 0,
                     rate=args.live_rate)


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xmodal_compress_ros.bench import codecs as codec_registry
    from xmodal_compress_ros.bench.lidar import lidar_summary
    from xmodal_compress_ros.bench.report import write_report
    from xmodal_compress_ros.bench.runner import run_benchmark

    import torch

    if args.gop < 1:
        raise DatasetError(f'--gop must be at least 1, got {args.gop}')
    if args.threads < 1:
        raise DatasetError(f'--threads must be at least 1, got {args.threads}')
    if args.live and not args.bag:
        raise DatasetError('--live plays a rosbag through the nodes: pass --bag (xmodal kitti2bag or '
                           'xmodal synth write one)')
    torch.set_num_threads(args.threads)
    names = codec_registry.parse_codec_names(args.codecs)
    ours = [n for name, values in args.qualities if not name for n in values]
    settings = {name: values for name, values in args.qualities if name}
    unknown = [name for name in settings if name not in names]
    if unknown:
        raise DatasetError(f'--qualities names {", ".join(unknown)}, which --codecs does not run '
                           f'({", ".join(names)})')
    data = _load(args)
    refine_steps = codec_registry.DEFAULT_REFINE_STEPS if args.refine_steps is None else args.refine_steps
    codecs = codec_registry.build_codecs(names, gop=args.gop, model=args.model,
                                         fallback_model=args.fallback_model,
                                         qualities=[int(q) for q in ours] or None, refine_steps=refine_steps,
                                         pframe_model=args.pframe_model, fast_model=args.fast_model,
                                         fast_pframe_model=args.fast_pframe_model)
    result = run_benchmark(codecs, data, settings, show_progress=not args.quiet,
                           cache_dir=Path(args.cache) if args.cache else None)
    if not result.records:
        raise DatasetError('no codec could run: ' + '; '.join(f'{k}: {v}' for k, v in result.skipped.items()))
    extra = {'lidar': lidar_summary(data), 'models': codec_registry.model_ids(codecs)}
    if args.live:
        extra['live'] = _live(args, [int(q) for q in ours])
    report = write_report(Path(args.out), result, data, extra)
    print(f'xmodal bench: {len(report["curves"])} rate points of {len(result.settings)} codecs on '
          f'{len(data.frames)} frames -> {args.out}/report.md')
    return 0
