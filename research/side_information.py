"""Can the LiDAR branch learn to use side information at all? Train it with maps that certainly inform
the image in place of the scan, then measure on held-out frames what the map is worth.

The branch has never earned a gain from the scan, on KITTI or on synthetic scenes (docs/method.md). That
leaves two readings: the scan tells the codec nothing it does not already code cheaply, or the branch
cannot learn to use any side information in the training we can afford. Oracle maps, computed from the
image itself and given to both ends in place of the scan's depth-condition map, separate them:

- ``scan``: the product's map (the projected scan), for comparison;
- ``edges``: Canny edges of the image (0 or 255): every outline, and texture edges too; more than a
  perfect scan could point to;
- ``blur``: the image's luminance blurred by a Gaussian of sigma 2 pixels: a low-pass grey image;
- ``scan-edges``: Canny edges of the scan's dense depth (IP-Basic completion of the projected scan,
  equalised): the outlines the scan knows, drawn for the branch instead of left for P2I to find;
- ``scan-dense``: that dense depth itself: every pixel gets the depth rank of its surface;
- ``scan-reflectance``: the scan's reflectance (the intensity channel the LiDAR packet already carries)
  at the pixels where the depth map has a point: what the surface is made of, not where it is;
- ``scan-luminance``: the image's own luminance at those same pixels (an oracle): what a sensor with the
  scan's footprint would tell the codec if its every return matched the camera: what a map on those
  pixels can be worth at most, to a given training.

The oracles hold information the codec otherwise pays for, so a branch that can learn must turn them
into fewer bits or a better image. ``scan-edges`` and ``scan-dense`` are no oracles: both ends can
compute them (and ``scan-reflectance``) from the scan.

    .venv/bin/python research/side_information.py train --map edges --data synthetic:DIR [--data ...]
        --init-from models/xmodal-lidar [--fresh context_mining.] --out runs/oracle_edges
    .venv/bin/python research/side_information.py eval --map edges --model runs/oracle_edges --tag edges

``train`` re-initialises the parameters under ``--fresh`` (the context-mining layers by default, which
trained models have shrunk to near-zero features) and then continues the model like ``xmodal train``;
with ``--from-scratch`` every weight starts fresh, so the branch and the transforms learn together
(compare with a twin trained from scratch on the same crops: ``xmodal train --arch xmodal-hyperprior``).
``eval`` codes the first ``--synthetic`` frames of the drive of ``--seed`` (the benchmark's held-out
scene, 4242), or with ``--kitti`` the held-out KITTI frames of bench/eval_codec.py, at every quality,
once with the map on both ends and once with the zeros map on both ends, and writes
``research/results/side_information_<tag>.json`` with the BD-rate of the map against the zeros;
``--anchor MODEL`` (repeatable: that twin, or the same network trained with ``xmodal train
--conditioning zeros``) adds each anchor's curve on the same frames and the map's BD-rate against it.
"""
import argparse
import json
import sys
from typing import Optional
from pathlib import Path

import cv2
import numpy as np
import torch

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
from eval_codec import REPO, held_out_frames, learned_points, write_model_result  # noqa: E402
from xmodal_compress_ros.bench import metrics  # noqa: E402
from xmodal_compress_ros.bench.sources import load_synthetic  # noqa: E402
from xmodal_compress_ros.cli.train import post_filter_sizes  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model, read_metadata, save_model  # noqa: E402
from xmodal_compress_ros.codec.models import get_model_class  # noqa: E402
from xmodal_compress_ros.geometry.depth_completion import complete_depth  # noqa: E402
from xmodal_compress_ros.geometry.projection import (  # noqa: E402
    depth_condition, equalize_depth, project_to_depth, reflectance_map)
from xmodal_compress_ros.train.crops import FrameBank  # noqa: E402
from xmodal_compress_ros.train.losses import PREDICTION_LOSSES  # noqa: E402
from xmodal_compress_ros.train.sources import frames_from_spec  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'

MAPS = ('scan', 'edges', 'blur', 'scan-edges', 'scan-dense', 'scan-reflectance', 'scan-luminance')
# Canny hysteresis thresholds on 8-bit luminance (OpenCV's usual pair).
CANNY_LOW, CANNY_HIGH = 50, 150
BLUR_SIGMA = 2.0


def condition_map(kind: str, frame) -> np.ndarray:
    """The (H, W) uint8 map that replaces the scan's depth-condition map (0 = nothing there)."""
    if kind == 'scan':
        return depth_condition(frame.points, frame.calib)
    if kind == 'scan-reflectance':
        return reflectance_map(frame.points, frame.calib)
    if kind in ('scan-edges', 'scan-dense'):
        dense = equalize_depth(complete_depth(project_to_depth(frame.points, frame.calib)))
        return dense if kind == 'scan-dense' else cv2.Canny(dense, CANNY_LOW, CANNY_HIGH)
    grey = cv2.cvtColor(frame.image, cv2.COLOR_RGB2GRAY)
    if kind == 'scan-luminance':
        footprint = depth_condition(frame.points, frame.calib) > 0
        return np.where(footprint, np.maximum(grey, 1), 0).astype(np.uint8)
    if kind == 'edges':
        return cv2.Canny(grey, CANNY_LOW, CANNY_HIGH)
    if kind == 'blur':
        # Never 0, so that no pixel reads as "no point".
        return np.maximum(cv2.GaussianBlur(grey, (0, 0), BLUR_SIGMA), 1)
    raise ValueError(f'unknown map {kind!r}; valid: {list(MAPS)}')


def frame_bank(kind: str, sources) -> FrameBank:
    bank = FrameBank()
    for spec in sources:
        for frame in frames_from_spec(spec):
            bank.add(frame.image, condition_map(kind, frame), frame.name)
    return bank


def with_fresh_parameters(model, prefixes, seed: int):
    """``model`` with every parameter under ``prefixes`` replaced by a freshly initialised one."""
    torch.manual_seed(seed)
    fresh = get_model_class(model.registry_name)(**model.config).state_dict()
    state = model.state_dict()
    chosen = [k for k in state if any(k.startswith(p) for p in prefixes)]
    if prefixes and not chosen:
        raise ValueError(f'no parameter starts with {list(prefixes)}')
    model.load_state_dict(dict(state, **{k: fresh[k] for k in chosen}))
    return model


def train(args) -> int:
    from xmodal_compress_ros.train.loop import TrainConfig, train as run

    init = None if args.from_scratch else args.init_from
    prefixes = [] if args.from_scratch else [p for p in args.fresh.split(',') if p]
    if prefixes:
        model = with_fresh_parameters(load_model(init), prefixes, args.fresh_seed)
        model.update()
        init = f'{args.out}.init'
        save_model(model, init, {k: v for k, v in read_metadata(args.init_from).items()
                                 if k in ('training_sources', 'training_frames', 'training_steps',
                                          'history')})
    config = TrainConfig(arch=args.arch, out=args.out, steps=args.steps, batch_size=args.batch_size,
                         crop=args.crop, lr=args.lr, seed=args.seed, threads=args.threads, init_from=init,
                         post_filter=args.post_filter, lidar_dropout=args.lidar_dropout, checkpoint_every=500,
                         prediction_loss=args.prediction_loss,
                         data=tuple(f'{s} ({args.map} map)' for s in args.data))
    bank = frame_bank(args.map, args.data)
    print(f'side information {args.map}: {len(bank)} frames -> {args.out}', flush=True)
    run(config, bank, progress=False)
    return 0


def coded_points(model, image: np.ndarray, depth: np.ndarray):
    """(quality, bits, decoded image) per quality: real packets, the image's z and y streams."""
    for q, num_bytes, decoded, *_ in learned_points(model, image, depth, drop_lidar=False):
        yield q, num_bytes * 8.0, decoded


@torch.no_grad()
def curve(model, frames, maps, points=coded_points) -> list:
    """One (bpp, PSNR) point per quality of ``model``, averaged over ``frames``, each frame coded with
    ``maps(frame)`` on both ends and measured by ``points`` (:func:`coded_points` by default)."""
    levels = [[] for _ in range(model.quality_levels)]
    for frame in frames:
        depth = maps(frame)
        for q, bits, decoded in points(model, frame.image, depth):
            levels[q].append((bits / depth.size, metrics.psnr(frame.image, decoded)))
    return [{'quality': q, 'bpp': float(np.mean([m[0] for m in points])),
             'psnr_db': float(np.mean([m[1] for m in points]))} for q, points in enumerate(levels)]


def zeros_map(frame) -> np.ndarray:
    """The all-zero map (no point anywhere): what a decoder without the scan sees."""
    return np.zeros(frame.image.shape[:2], np.uint8)


def curves(model, frames, kind: str) -> dict:
    """Per arm: 'map' (the ``kind`` map on both ends) and 'zeros' (the zeros map on both ends)."""
    out = {'map': curve(model, frames, lambda frame: condition_map(kind, frame)),
           'zeros': curve(model, frames, zeros_map)}
    for arm, points in out.items():
        for point in points:
            print(arm, json.dumps(point), flush=True)
    return out


def anchor_curve(model, frames) -> list:
    """``model``'s curve on ``frames``, with the zeros map if it has a branch."""
    return curve(model, frames, zeros_map)


def bd_map_vs(arms: dict, anchor: str, test: str = 'map') -> metrics.BDResult:
    """BD-rate of the ``test`` arm (the map's) against the ``anchor`` arm (``percent`` None where the
    curves do not allow one; ``overlap`` the PSNR range it averages over)."""
    rate = {a: [p['bpp'] for p in arms[a]] for a in arms}
    quality = {a: [p['psnr_db'] for p in arms[a]] for a in arms}
    return metrics.bd_rate(rate[anchor], quality[anchor], rate[test], quality[test])


def evaluation_frames(args) -> tuple:
    """(names, frames): the held-out KITTI frames with ``--kitti``, else the synthetic drive's."""
    if args.kitti:
        named = list(held_out_frames(args.raw_stride))
        return [name for name, _ in named], [frame for _, frame in named]
    frames = load_synthetic(args.synthetic, args.seed).frames
    return [f'synthetic seed {args.seed}/{f.name}' for f in frames], frames


def evaluate(args) -> int:
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    if not model.uses_lidar:
        raise SystemExit(f'{args.model} is an image-only model: it has no branch to feed')
    names, frames = evaluation_frames(args)
    arms = curves(model, frames, args.map)
    bd = bd_map_vs(arms, 'zeros')
    print(f'{args.map} map vs zeros map on both ends: BD-rate {_percent(bd.percent)}')
    result = {'map': args.map, 'frames': names, 'curves': arms, 'bd_rate_map_vs_zeros_percent': bd.percent}
    result['anchors'] = []
    for stem in args.anchor:
        anchor = load_model(stem).eval()
        arms[f'anchor:{stem}'] = anchor_curve(anchor, frames)
        bd = bd_map_vs(arms, f'anchor:{stem}')
        result['anchors'].append({'model': stem, 'model_id': anchor.metadata['model_id'],
                                  'bd_rate_map_vs_anchor_percent': bd.percent, 'overlap_psnr_db': bd.overlap})
        print(f'{args.map} map vs {stem}: BD-rate {_percent(bd.percent)} over {bd.overlap} dB')
    write_model_result('side_information', args, model, folder=RESULTS, fields=result)
    return 0


def _percent(value: Optional[float]) -> str:
    return 'n/a (curves do not overlap)' if value is None else f'{value:+.2f} %'


def add_evaluation_arguments(parser) -> None:
    """The frames (read by :func:`evaluation_frames`), threads and result tag of an evaluation."""
    parser.add_argument('--synthetic', type=int, default=10)
    parser.add_argument('--seed', type=int, default=4242)
    parser.add_argument('--kitti', action='store_true',
                        help='the held-out KITTI frames of bench/eval_codec.py, not the synthetic drive')
    parser.add_argument('--raw-stride', type=int, default=5, help='with --kitti: every n-th kitti_raw frame')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--tag', required=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    t = sub.add_parser('train', help='continue a LiDAR model with a map in place of the scan')
    t.add_argument('--map', choices=MAPS, required=True)
    t.add_argument('--data', action='append', required=True, metavar='KIND:LOCATION')
    t.add_argument('--init-from', default=str(REPO / 'models' / 'xmodal-lidar'))
    t.add_argument('--fresh', default='context_mining.', help='re-initialise these parameter prefixes first')
    t.add_argument('--fresh-seed', type=int, default=0)
    t.add_argument('--from-scratch', action='store_true',
                   help='start every weight fresh (ignores --init-from and --fresh)')
    t.add_argument('--post-filter', type=post_filter_sizes, default=(32, 8), metavar='CHANNELS,BLOCKS',
                   help='decoder-side post filter of a --from-scratch model (0,0 for none)')
    t.add_argument('--out', required=True)
    t.add_argument('--steps', type=int, default=4000)
    t.add_argument('--batch-size', type=int, default=8)
    t.add_argument('--crop', type=int, default=128)
    t.add_argument('--lr', type=float, default=1e-4)
    t.add_argument('--lidar-dropout', type=float, default=0.1)
    t.add_argument('--prediction-loss', default='affine', choices=tuple(PREDICTION_LOSSES))
    t.add_argument('--seed', type=int, default=11)
    t.add_argument('--threads', type=int, default=1)
    t.add_argument('--arch', default='xmodal-lidar',
                   help='a registered LiDAR codec (research/lidar_scales.py registers its research variant)')
    e = sub.add_parser('eval', help='the map against the zeros map on held-out frames')
    e.add_argument('--map', choices=MAPS, required=True)
    e.add_argument('--model', required=True)
    add_evaluation_arguments(e)
    e.add_argument('--anchor', action='append', default=[],
                   help='another model (e.g. a twin) coded on the same frames with the zeros map; repeatable')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return train(args) if args.command == 'train' else evaluate(args)


if __name__ == '__main__':
    sys.exit(main())
