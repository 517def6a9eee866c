"""Is the LiDAR branch of a model learning anything? Measured on the held-out KITTI frames or synthetic ones.

For each frame, with its scan and with the zeros map (scan lost):
- P2I: the share of the image's variance its prediction explains up to an affine map of each channel
  (1 - affine_invariant_mse / variance; 0 for a flat prediction, as a P2I trained with the plain MSE gives).
- Context features c1, c2, c3, c_hyper: RMS and mean spatial standard deviation with the scan, and the
  RMS of their change when the scan is replaced by zeros. Features near zero, or unchanged without the
  scan, cannot move the reconstruction: decoding without the scan then costs nothing.

    .venv/bin/python research/lidar_branch.py [--model models/xmodal-lidar] [--max-frames 6] [--tag cpu-2core]
                                           [--synthetic N --seed S]

``--synthetic N``: the first N frames of the synthetic drive of seed S (the benchmark's, 4242 by default)
instead of the KITTI frames: scenes whose image edges the scan explains exactly.

Writes research/results/lidar_branch_<tag>.json.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
from eval_codec import REPO, add_frame_arguments, selected_frames, write_model_result  # noqa: E402
from xmodal_compress_ros.bench.sources import load_synthetic  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.codec.models import pad_to_multiple  # noqa: E402
from xmodal_compress_ros.geometry.projection import depth_condition  # noqa: E402
from xmodal_compress_ros.train.losses import affine_invariant_mse  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'

FEATURES = ('c1', 'c2', 'c3', 'c_hyper')


@torch.no_grad()
def frame_record(model, image: np.ndarray, depth: np.ndarray) -> dict:
    h, w = image.shape[:2]
    x = pad_to_multiple(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
    with_scan = model.context(torch.from_numpy(depth)[None, None].float(), x)
    without = model.context(None, x)
    target = x[..., :h, :w]
    variance = target.flatten(2).var(dim=-1, unbiased=False).mean()
    record = {'p2i_explained': float(1.0 - affine_invariant_mse(with_scan.prediction[..., :h, :w], target)
                                     / variance)}
    for name in FEATURES:
        a, b = getattr(with_scan, name), getattr(without, name)
        record[name] = {'rms': float(a.square().mean().sqrt()),
                        'spatial_std': float(a.std(dim=(2, 3)).mean()),
                        'change_without_scan_rms': float((a - b).square().mean().sqrt())}
    return record


def mean_record(records: list) -> dict:
    out = {'p2i_explained': float(np.mean([r['p2i_explained'] for r in records]))}
    for name in FEATURES:
        out[name] = {k: float(np.mean([r[name][k] for r in records])) for k in records[0][name]}
    return out


def frames_to_measure(args):
    """(name, frame) of the synthetic drive with ``--synthetic``, else of the held-out KITTI frames."""
    if args.synthetic:
        return ((f'synthetic/{f.name}', f)
                for f in load_synthetic(args.synthetic, args.seed, args.max_frames or None).frames)
    return selected_frames(args)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-lidar'))
    parser.add_argument('--synthetic', type=int, default=0, help='use N synthetic frames instead of KITTI')
    parser.add_argument('--seed', type=int, default=4242, help='seed of the --synthetic drive')
    add_frame_arguments(parser)
    return parser, parser.parse_args(argv)


def main(argv=None) -> int:
    parser, args = parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    if not model.uses_lidar:
        parser.error(f'{args.model} is an image-only model: it has no LiDAR branch')
    records = {}
    for name, frame in frames_to_measure(args):
        records[name] = frame_record(model, frame.image, depth_condition(frame.points, frame.calib))
        print(name, f"P2I explains {records[name]['p2i_explained']:.3f}", ' '.join(
            f"{f} rms {records[name][f]['rms']:.4f}" for f in FEATURES), flush=True)
    summary = mean_record(list(records.values()))
    print('mean:', json.dumps(summary))
    write_model_result('lidar_branch', args, model, folder=RESULTS,
                       fields={'frames': records, 'mean': summary})
    return 0


if __name__ == '__main__':
    sys.exit(main())
