"""What does the parsing rule cost? The LiDAR branch let into the scale path, in float, for research.

Our codec never lets the LiDAR decide how a symbol is parsed: the scale indexes come from the integer
hyper-synthesis of z alone (docs/method.md, "The integer scale path"), so a lost scan or a float
difference between two machines cannot corrupt a packet. The papers' Hyper Refiner feeds the LiDAR into
the scales as well. This script measures what that would buy, with a research-only variant,
``xmodal-lidar-scales``: the scale index becomes ``h_s_scale(z_hat) + R([h_s_scale(z_hat), c_hyper])``
(R a zero-initialised 3x3 convolution), rounded and clamped to the same 64-entry table. Its packets could
not be decoded safely (the decoder would need the same float R on the same scan), so it is never
deployed and its bits are the model's own estimate: the sum of -log2 of the likelihoods of z and y, as
in training, in eval mode (rounding, not noise). ``eval`` measures every model the same way, with the
map and with the zeros map on both ends; for models of the product's architecture it also codes real
packets, to show how close the estimate is.

    .venv/bin/python research/lidar_scales.py train --map scan --data kitti-object:DIR --from-scratch
        --post-filter 0,0 --out runs/scales_scan  (the options of side_information.py train)
    .venv/bin/python research/lidar_scales.py eval --map scan --kitti --model runs/scales_scan
        [--model runs/means_only_scan ...] --tag scales-scan

``eval`` writes ``research/results/lidar_scales_<tag>.json``: per model, the (bpp, PSNR) curve of each arm
and the BD-rate of the map against the zeros map.
"""
import argparse
import json
import socket
import sys
from pathlib import Path

import numpy as np
import torch

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
import side_information  # noqa: E402
from eval_codec import to_uint8  # noqa: E402
from xmodal_compress_ros.codec.integer_hyper import SCALE_LEVELS  # noqa: E402
from xmodal_compress_ros.codec.layers import conv, ste_round  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.codec.models import LidarConditionedCodec, LidarContext, register_model  # noqa: E402

ARCH = 'xmodal-lidar-scales'


@register_model(ARCH)
class ScaleConditionedCodec(LidarConditionedCodec):
    """The LiDAR model whose scale indexes also see the LiDAR context (float; research only)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        m = self.config['M']
        self.scale_refiner = conv(m + m // 4, m, 3, 1)
        torch.nn.init.zeros_(self.scale_refiner.weight)
        torch.nn.init.zeros_(self.scale_refiner.bias)

    def scale_index(self, z_hat: torch.Tensor, ctx: LidarContext = None) -> torch.Tensor:
        index = self.h_s_scale.continuous_index(z_hat)
        if ctx is not None:
            index = index + self.scale_refiner(torch.cat([index, ctx.c_hyper], dim=1))
        return ste_round(torch.clamp(index, 0, SCALE_LEVELS - 1))


def estimated_points(model, image: np.ndarray, depth: np.ndarray):
    """(quality, bits, image) per quality from the eval-mode forward: bits estimated from the
    likelihoods of z and y, the image ``model`` reconstructs."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    d = torch.from_numpy(depth)[None, None]
    for q in range(model.quality_levels):
        out = model(x, d, quality=q)
        bits = sum(float(-torch.log2(lik).sum()) for lik in out.likelihoods.values())
        yield q, bits, to_uint8(out.x_hat.clamp(0, 1))


def estimated_curve(model, frames, maps) -> list:
    """Per quality: mean estimated bpp and mean RGB PSNR, each frame with ``maps(frame)`` on both ends."""
    return side_information.curve(model, frames, maps, points=estimated_points)


def model_arms(model, frames, kind: str) -> dict:
    """Arms 'map' and 'zeros' (estimated bits); for the product's architecture also 'map-coded' and
    'zeros-coded' (real packets) to check the estimate."""
    def the_map(frame):
        return side_information.condition_map(kind, frame)

    arms = {'map': estimated_curve(model, frames, the_map),
            'zeros': estimated_curve(model, frames, side_information.zeros_map)}
    if type(model) is LidarConditionedCodec:
        arms['map-coded'] = side_information.curve(model, frames, the_map)
        arms['zeros-coded'] = side_information.curve(model, frames, side_information.zeros_map)
    return arms


def bd_percent(arms: dict, test: str, anchor: str):
    return side_information.bd_map_vs(arms, anchor, test).percent


def evaluate(args) -> int:
    torch.set_num_threads(args.threads)
    names, frames = side_information.evaluation_frames(args)
    result = {'host': socket.gethostname(), 'tag': args.tag, 'map': args.map, 'frames': names, 'models': []}
    for stem in args.model:
        model = load_model(stem).eval()
        arms = model_arms(model, frames, args.map)
        entry = {'model': stem, 'model_id': model.metadata['model_id'], 'arch': model.registry_name,
                 'curves': arms, 'bd_rate_map_vs_zeros_percent': bd_percent(arms, 'map', 'zeros')}
        if 'map-coded' in arms:
            entry['bd_rate_map_vs_zeros_coded_percent'] = bd_percent(arms, 'map-coded', 'zeros-coded')
            entry['bd_rate_estimate_vs_coded_percent'] = bd_percent(arms, 'map', 'map-coded')
        print(json.dumps({k: v for k, v in entry.items() if k != 'curves'}), flush=True)
        result['models'].append(entry)
    out = side_information.RESULTS / f'lidar_scales_{args.tag}.json'
    out.write_text(json.dumps(result, indent=1) + '\n')
    print(f'wrote {out}')
    return 0


def parse_eval_args(argv):
    parser = argparse.ArgumentParser(description='eval: map against zeros map, estimated bits')
    parser.add_argument('--map', choices=side_information.MAPS, required=True)
    parser.add_argument('--model', action='append', required=True, help='repeatable')
    side_information.add_evaluation_arguments(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['train']:
        return side_information.main(argv + ['--arch', ARCH])
    if argv[:1] == ['eval']:
        return evaluate(parse_eval_args(argv[1:]))
    raise SystemExit(__doc__)


if __name__ == '__main__':
    sys.exit(main())
