"""Could the scan help the image-only twin at all? Linear probes on the held-out KITTI frames.

research/lidar_branch.py shows that the LiDAR model's branch carries nothing. Before adding architecture,
this asks the data, with the twin at one quality level, on frames no model was trained on:

- Means. Can features of the depth map around each latent position predict the twin's residual
  ``y - mu`` beyond the hyperprior's mean? The means are the one place the scan may enter on the rate
  side: the scales decide parsing and never see it. A ridge regression predicts the residual in units
  of its scale, ``(y - mu) / sigma``, fitted on one half of the frames and applied to the other, and
  back. Under a Gaussian of std sigma a residual costs ``r^2 / (2 sigma^2 ln 2)`` bits plus a term that
  does not depend on the mean, so the normalised energy it removes converts to bits saved (a
  continuous approximation; it overstates the saving where sigma is below one quantisation step).
- Reconstruction. Can the depth map around a pixel predict the twin's reconstruction error there,
  beyond what a linear filter of the decoded image itself predicts? The same two-fold ridge regression
  gives the share of the error energy removed on the held-out half.

Each probe also runs with a control of the same form built from the original image, which the decoder
does not have: block statistics of its colours for the means, a Gaussian blur of it (sigma 3 pixels,
like the densified depth) for the reconstruction. The controls show what the probe finds when the
features do carry information.

    .venv/bin/python research/lidar_probe.py [--model models/xmodal-hyperprior] [--quality 3]
                                             [--tag cpu-2core]

Writes research/results/lidar_probe_<tag>.json.
"""
import argparse
import json
import math
import sys
from typing import Dict, List
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
from eval_codec import REPO, add_frame_arguments, selected_frames, write_model_result  # noqa: E402
from xmodal_compress_ros.codec.integer_hyper import index_to_scale  # noqa: E402
from xmodal_compress_ros.codec.layers import gaussian_likelihood  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.codec.models import pad_to_multiple  # noqa: E402
from xmodal_compress_ros.geometry.projection import depth_condition  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'

LATENT_STRIDE = 16
RIDGE = 1e-2
#: Decoded-image pixels sampled per frame for the reconstruction probe.
PIXELS_PER_FRAME = 20000


def dense_depth(depth01: torch.Tensor, valid: torch.Tensor, sigma: float = 3.0) -> torch.Tensor:
    """Normalised convolution: a Gaussian-weighted mean of the valid points near each pixel (0 where none)."""
    weight = _blur(valid, sigma)
    return torch.where(weight > 1e-3, _blur(depth01 * valid, sigma) / weight.clamp_min(1e-3),
                       torch.zeros_like(weight))


def _blur(a: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel of (1, C, H, W)."""
    radius = int(3 * sigma)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    channels = a.transpose(0, 1)  # each channel as its own one-channel image
    channels = F.conv2d(channels, g.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(channels, g.view(1, 1, -1, 1), padding=(radius, 0)).transpose(0, 1)


def _abs_differences(a: torch.Tensor):
    """|horizontal| and |vertical| neighbour differences of (1, C, H, W), zero-padded to its size."""
    return (F.pad((a[..., :, 1:] - a[..., :, :-1]).abs(), (0, 1)),
            F.pad((a[..., 1:, :] - a[..., :-1, :]).abs(), (0, 0, 0, 1)))


def depth_maps(depth: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """(1, 5, H, W) per-pixel depth features on ``like``'s padded grid: valid, value, dense value, and
    the dense value's horizontal and vertical differences (depth edges)."""
    d = pad_to_multiple(torch.from_numpy(depth)[None, None].float() / 255.0, mode='constant')
    d = d[..., :like.shape[-2], :like.shape[-1]]
    valid = (d > 0).float()
    dense = dense_depth(d, valid)
    return torch.cat([valid, d, dense, *_abs_differences(dense)], dim=1)


def block_features(maps: torch.Tensor) -> torch.Tensor:
    """(P, 9 * 2C) features per latent position: mean and std of each map over its 16x16 block, for the
    block and its 8 neighbours (replicated at the border)."""
    mean = F.avg_pool2d(maps, LATENT_STRIDE)
    std = (F.avg_pool2d(maps ** 2, LATENT_STRIDE) - mean ** 2).clamp_min(0).sqrt()
    return _with_neighbours(torch.cat([mean, std], dim=1), 1)


def _with_neighbours(grid: torch.Tensor, radius: int) -> torch.Tensor:
    """(1, C, h, w) -> (h * w, C * (2r + 1)^2): each position with its neighbours' channels."""
    c = grid.shape[1]
    padded = F.pad(grid, (radius,) * 4, mode='replicate')
    patches = F.unfold(padded, 2 * radius + 1)  # (1, C * k * k, h * w)
    return patches[0].T.reshape(-1, c * (2 * radius + 1) ** 2)


def image_maps(x: torch.Tensor) -> torch.Tensor:
    """(1, 5, H, W) control features from an image: RGB, luma and luma edge magnitude."""
    luma = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    gx, gy = _abs_differences(luma)
    return torch.cat([x, luma, gx + gy], dim=1)


@torch.no_grad()
def frame_data(model, image: np.ndarray, depth: np.ndarray, quality: int,
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """The twin's latents and reconstruction of one frame, and the probes' features and targets."""
    h, w = image.shape[:2]
    x = pad_to_multiple(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0)
    q = torch.tensor([quality])
    y_g, z = model.analysis(x, q)
    z_hat = torch.round(z)
    scales = index_to_scale(model.h_s_scale(z_hat))
    mu = model.mean(z_hat)
    x_hat = model.synthesis(torch.round(y_g - mu) + mu, q).clamp(0, 1)
    d_maps = depth_maps(depth, x)
    m = y_g.shape[1]
    residual = (y_g - mu)[0].reshape(m, -1).T
    sigma = scales[0].reshape(m, -1).T
    out = {
        'normalised_residual': (residual / sigma).numpy(),
        'y_bits': float(-torch.log2(gaussian_likelihood(torch.round(residual), sigma).clamp_min(1e-9)).sum()),
        'latent_depth': block_features(d_maps).numpy(),
        'latent_image': block_features(image_maps(x)).numpy(),
    }
    pick = rng.choice(h * w, size=min(PIXELS_PER_FRAME, h * w), replace=False)
    error = (x - x_hat)[..., :h, :w]
    out['error'] = error[0].reshape(3, -1).T.numpy()[pick]
    # The control blurs the original like the densified depth (sigma 3 pixels).
    pixel_maps = {'pixel_decoded': x_hat, 'pixel_depth': d_maps, 'pixel_blurred_original': _blur(x, 3.0)}
    for name, maps in pixel_maps.items():
        out[name] = _with_neighbours(maps[..., :h, :w], 1).numpy()[pick]
    return out


def ridge_two_fold(features: List[np.ndarray], targets: List[np.ndarray]) -> List[np.ndarray]:
    """Predictions for each frame from a ridge regression (with intercept, standardised features)
    fitted on the frames of the other fold (even vs odd frame index)."""
    predictions: List[np.ndarray] = [None] * len(features)
    for fold in (0, 1):
        train = [i for i in range(len(features)) if i % 2 != fold]
        a = np.concatenate([features[i] for i in train]).astype(np.float64)
        b = np.concatenate([targets[i] for i in train]).astype(np.float64)
        centre, spread = a.mean(0), a.std(0) + 1e-8
        a = (a - centre) / spread
        offset = b.mean(0)
        gram = a.T @ a + RIDGE * len(a) * np.eye(a.shape[1])
        weights = np.linalg.solve(gram, a.T @ (b - offset))
        for i in range(fold, len(features), 2):
            predictions[i] = ((features[i] - centre) / spread) @ weights + offset
    return predictions


def mean_probe(data: List[Dict], key: str) -> Dict:
    """Normalised residual energy a probe on ``key`` removes, and the y bits that saves (estimate)."""
    targets = [d['normalised_residual'] for d in data]
    energy, removed = _energy_removed(targets, ridge_two_fold([d[key] for d in data], targets))
    bits = sum(d['y_bits'] for d in data)
    return {'normalised_energy_removed_percent': 100.0 * removed / energy,
            'y_bits_saved_percent_estimate': 100.0 * removed / (2.0 * math.log(2.0)) / bits}


def error_probe(data: List[Dict], keys: List[str]) -> float:
    """Share (%) of the held-out reconstruction error energy a linear probe on ``keys`` removes."""
    features = [np.concatenate([d[k] for k in keys], axis=1) for d in data]
    targets = [d['error'] for d in data]
    energy, removed = _energy_removed(targets, ridge_two_fold(features, targets))
    return 100.0 * removed / energy


def _energy_removed(targets: List[np.ndarray], predictions: List[np.ndarray]):
    """(energy of the targets, energy the predictions remove from them), summed over frames."""
    energy = sum(float((t ** 2).sum()) for t in targets)
    left = sum(float(((t - p) ** 2).sum()) for t, p in zip(targets, predictions))
    return energy, energy - left


def run_probes(data: List[Dict]) -> Dict:
    return {
        'means': {'depth': mean_probe(data, 'latent_depth'),
                  'original_image_control': mean_probe(data, 'latent_image')},
        'reconstruction_error_removed_percent': {
            'decoded_image': error_probe(data, ['pixel_decoded']),
            'decoded_image_and_depth': error_probe(data, ['pixel_decoded', 'pixel_depth']),
            'decoded_image_and_blurred_original_control':
                error_probe(data, ['pixel_decoded', 'pixel_blurred_original']),
        },
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--quality', type=int, default=5)
    add_frame_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    if model.uses_lidar:
        parser.error(f'{args.model} is a LiDAR model: probe its image-only twin')
    rng = np.random.default_rng(0)
    names, data = [], []
    for name, frame in selected_frames(args):
        names.append(name)
        depth = depth_condition(frame.points, frame.calib)
        data.append(frame_data(model, frame.image, depth, args.quality, rng))
        print(name, flush=True)
    probes = run_probes(data)
    print(json.dumps(probes, indent=1))
    write_model_result('lidar_probe', args, model, folder=RESULTS, fields={
        'quality': args.quality, 'frames': names, 'ridge': RIDGE, 'pixels_per_frame': PIXELS_PER_FRAME,
        **probes})
    return 0


if __name__ == '__main__':
    sys.exit(main())
