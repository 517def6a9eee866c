"""Our P-frame stream mode against x264/x265/AV1 low-delay P at frame strides 1 and 3 (issue #28).

Runs ``xmodal bench`` once per source and stride with our stream modes (``xmodal-p`` as built and its
ablations ``xmodal-p-unaligned``, ``xmodal-p-nomotion``, ``xmodal-p-noref``), our intra codec, the fast
tier's stream and intra (``xmodal-p-fast``, ``xmodal-fast``), and the ffmpeg low-delay P baselines at
the same key-frame interval (plus x265 4:4:4 intra), every quality level of ours; then collects from
each report the BD-rates (RGB PSNR and MS-SSIM) of ``xmodal-p`` and of ``xmodal-p-fast`` against every
other codec, what the alignment buys (``xmodal-p`` against ``xmodal-p-unaligned``), P- against
key-frame decode time, and the top quality, into one summary JSON. Image bits only in the curves;
each report's ``lidar`` section gives the LiDAR packets' bits apart.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/bench_stream.py \\
        --kitti ../shared/data/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync --synthetic 50 \\
        --out bench/results/stream
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

OURS = 'xmodal-p'
FAST = 'xmodal-p-fast'
STREAM_CODECS = ('xmodal-p', 'xmodal-p-unaligned', 'xmodal-p-nomotion', 'xmodal-p-noref', 'xmodal',
                 'xmodal-p-fast', 'xmodal-fast')
BASELINES = ('h264-p', 'h265-p', 'h265-444-p', 'av1-444-p', 'h265-444')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--kitti', type=Path, help='a KITTI raw drive folder')
    parser.add_argument('--synthetic', type=int, metavar='N', help='also N frames of a synthetic drive')
    parser.add_argument('--seed', type=int, default=4242, help='seed of the synthetic drive')
    parser.add_argument('--strides', default='1,3', help='frame strides (default 1,3)')
    parser.add_argument('--frames', type=int, default=None, help='at most N (strided) frames per run')
    parser.add_argument('--gop', type=int, default=10, help='key-frame interval, ours and the baselines')
    parser.add_argument('--pframe-model', default=None,
                        help='P-frame model stem (default models/xmodal-pframe)')
    parser.add_argument('--qualities', nargs='+', default=[], help='passed to xmodal bench --qualities')
    parser.add_argument('--codecs', default=','.join(STREAM_CODECS + BASELINES),
                        help='codecs to run (default: our stream modes, xmodal, the low-delay P baselines '
                             'and x265 4:4:4 intra)')
    parser.add_argument('--cache', type=Path, default=None, help='xmodal bench --cache')
    parser.add_argument('--out', type=Path, required=True, help='one report folder per run, and summary.json')
    args = parser.parse_args(argv)
    if args.kitti is None and args.synthetic is None:
        parser.error('give --kitti DRIVE and/or --synthetic N')
    return args


def bench_command(args, source, stride: int, out: Path):
    command = [sys.executable, '-m', 'xmodal_compress_ros.cli', 'bench', *source, '--codecs', args.codecs,
               '--gop', str(args.gop), '--frame-stride', str(stride), '--out', str(out), '--quiet']
    if args.frames:
        command += ['--frames', str(args.frames)]
    if args.pframe_model:
        command += ['--pframe-model', args.pframe_model]
    if args.qualities:
        command += ['--qualities', *args.qualities]
    if args.cache:
        command += ['--cache', str(args.cache)]
    return command


def bd_of(report: dict, codec: str) -> dict:
    """BD-rates of ``codec`` against every other codec of the run, per metric."""
    entries = [e for e in report['bd_rate']['entries'] if e['codec'] == codec and e['anchor'] != codec]
    return {metric: {e['anchor']: e['percent'] for e in entries if e['metric'] == metric}
            for metric in ('psnr_db', 'ms_ssim_db')}


def frame_kinds(report: dict, codec: str) -> dict:
    """Top quality, and P- against key-frame decode time and bits, of one stream mode's curve."""
    curve = [p for p in report['curves'] if p['codec'] == codec]
    if not curve:
        return {}
    top = max(curve, key=lambda p: p['psnr_db'])
    return dict(top_psnr_db=top['psnr_db'], top_bpp=top['bpp'],
                p_decode_ms=[round(p.get('p_decode_ms', float('nan')), 1) for p in curve],
                key_decode_ms=[round(p.get('key_decode_ms', float('nan')), 1) for p in curve],
                p_bpp=[round(p.get('p_bpp', float('nan')), 4) for p in curve],
                key_bpp=[round(p.get('key_bpp', float('nan')), 4) for p in curve])


def summarise(report: dict) -> dict:
    """What issue #28 asks of one run, from its report.json; the fast tier's stream apart."""
    bd = bd_of(report, OURS)
    lidar = {k: v for k, v in report.get('lidar', {}).items() if not isinstance(v, list)}
    summary = {'frames': len(report['dataset']['frames']), 'bd_rate_of_xmodal_p_psnr': bd['psnr_db'],
               'bd_rate_of_xmodal_p_ms_ssim': bd['ms_ssim_db'],
               # xmodal-p against its ablations: negative = the alignment / the reference saves bits.
               'alignment_worth_psnr': bd['psnr_db'].get('xmodal-p-unaligned'),
               'reference_worth_psnr': bd['psnr_db'].get('xmodal-p-noref'),
               'block_motion_worth_psnr': bd['psnr_db'].get('xmodal-p-nomotion'),
               'skipped': report.get('skipped', {}), 'lidar': lidar, **frame_kinds(report, OURS)}
    if any(p['codec'] == FAST for p in report['curves']):
        fast = bd_of(report, FAST)
        summary['fast_tier'] = {'bd_rate_of_xmodal_p_fast_psnr': fast['psnr_db'],
                                'bd_rate_of_xmodal_p_fast_ms_ssim': fast['ms_ssim_db'],
                                **frame_kinds(report, FAST)}
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    sources = []
    if args.kitti is not None:
        sources.append(('kitti_raw', ['--kitti', str(args.kitti)]))
    if args.synthetic is not None:
        sources.append(('synthetic', ['--synthetic', str(args.synthetic), '--seed', str(args.seed)]))
    args.out.mkdir(parents=True, exist_ok=True)
    results = {'gop': args.gop, 'codecs': args.codecs.split(','), 'runs': {}}
    for name, source in sources:
        for stride in (int(s) for s in args.strides.split(',')):
            out = args.out / f'{name}_stride{stride}'
            command = bench_command(args, source, stride, out)
            print(' '.join(command), flush=True)
            subprocess.run(command, check=True)
            report = json.loads((out / 'report.json').read_text())
            run = dict(summarise(report), report=str(out / 'report.json'))
            results['runs'][f'{name}_stride{stride}'] = run
    text = json.dumps(results, indent=1)
    print(text)
    (args.out / 'summary.json').write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
