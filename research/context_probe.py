"""How many bits would a spatial context model save on the shipped twin's latents, transforms frozen?

The codec codes y with the hyperprior alone. Context models (Minnen et al. 2018; the parallel
checkerboard of He et al. 2021) code half the latent positions (anchors, i + j even) first and predict
the other half from them. The usual gains, 5-10 % BD-rate, come from training the transforms with the
context. This asks the cheaper question first: with g_a, h_a, h_s and g_s frozen, what does a
checkerboard context give?

- ``scale``: the context changes only the non-anchors' scales. This is the variant our parsing rule
  allows directly (an integer version of the network would decide the scale indexes).
- ``mean``: it also shifts their means (float, allowed too: means never decide parsing). Shifted means
  move the rounding, so the distortion changes slightly; the probe ignores that (rates only), which
  makes this variant optimistic.

The context network (5x5 conv over the decoded anchors, 1x1 with the hyperprior's scale indexes, 1x1
out; last layer zero, so it starts as the hyperprior) trains on the rate of the non-anchors, with
uniform noise, on latents of the 84 kitti_object_fov training frames at levels 1, 3, 5 and 7, and is
evaluated with rounding on the held-out frames of bench/eval_codec.py. Bits counted: z, anchors and
non-anchors, from the Gaussian and factorized likelihoods (no entropy coder).

    .venv/bin/python research/context_probe.py [--model models/xmodal-hyperprior] [--steps 3000]
                                            [--variants scale,mean] [--threads 1] [--tag cpu-2core]

Writes research/results/context_probe_<tag>.json.
"""
import argparse
import sys
import time
from typing import Dict, List, NamedTuple
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
from eval_codec import DATA, REPO, add_frame_arguments, selected_frames, write_model_result  # noqa: E402
from xmodal_compress_ros.codec.integer_hyper import index_to_scale  # noqa: E402
from xmodal_compress_ros.codec.latent_coding import quantise_hyper_latent  # noqa: E402
from xmodal_compress_ros.codec.layers import gaussian_likelihood  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.codec.models import pad_to_multiple  # noqa: E402
from xmodal_compress_ros.data.kitti import KittiObjectDataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / 'results'

LEVELS = (1, 3, 5, 7)
BATCH = 4


class Sample(NamedTuple):
    level: int
    y_g: torch.Tensor      # (M, h, w) gained latent
    mu: torch.Tensor       # (M, h, w) hyperprior mean
    indexes: torch.Tensor  # (M, h, w) integer scale indexes, as float
    z_bits: float
    pixels: int


@torch.no_grad()
def latent_samples(model, image: np.ndarray) -> List[Sample]:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    xp, tables = pad_to_multiple(x), model.entropy_tables
    samples = []
    for level in LEVELS:
        y_g, z = model.analysis(xp, torch.tensor([level]))
        z_hat = quantise_hyper_latent(z.numpy(), tables)
        indexes = torch.from_numpy(tables[2](z_hat)[0]).float()
        z_hat = torch.from_numpy(z_hat).float()
        z_bits = float(-torch.log2(model.z_density.likelihood(z_hat)).sum())
        pixels = image.shape[0] * image.shape[1]
        samples.append(Sample(level, y_g[0], model.mean(z_hat)[0], indexes, z_bits, pixels))
    return samples


def anchor_mask(height: int, width: int) -> torch.Tensor:
    i, j = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    return ((i + j) % 2 == 0).float()[None, None]


class CheckerboardContext(nn.Module):
    """Decoded anchors + hyperprior scale indexes -> (scale-index offset, mean offset) per position."""

    def __init__(self, channels: int, hidden: int = 96, with_mean: bool = False):
        super().__init__()
        self.channels, self.with_mean = channels, with_mean
        self.anchors = nn.Conv2d(channels, hidden, 5, padding=2)
        self.mix = nn.Conv2d(hidden + channels, hidden, 1)
        self.out = nn.Conv2d(hidden, channels * (2 if with_mean else 1), 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, anchors: torch.Tensor, indexes: torch.Tensor):
        hidden = F.leaky_relu(self.anchors(anchors), 0.1)
        hidden = F.leaky_relu(self.mix(torch.cat([hidden, indexes / 64.0], 1)), 0.1)
        out = self.out(hidden)
        if self.with_mean:
            return out[:, :self.channels], out[:, self.channels:]
        return out, torch.zeros_like(out)


def section_bits(sample: Sample, net, noisy: bool):
    """(anchor bits, non-anchor bits) of one sample; ``net`` None = the hyperprior alone."""
    y_g, mu, indexes = sample.y_g[None], sample.mu[None], sample.indexes[None]
    anchor = anchor_mask(*y_g.shape[-2:])
    residual = y_g - mu
    anchors_decoded = (torch.round(residual) + mu) * anchor
    anchor_bits = -torch.log2(gaussian_likelihood(torch.round(residual), index_to_scale(indexes))) * anchor
    if net is None:
        offset = shift = torch.zeros_like(mu)
    else:
        offset, shift = net(anchors_decoded, indexes)
    shifted = residual - shift
    coded = shifted + torch.empty_like(shifted).uniform_(-0.5, 0.5) if noisy else torch.round(shifted)
    other_bits = -torch.log2(gaussian_likelihood(coded, index_to_scale(indexes + offset))) * (1 - anchor)
    return anchor_bits.sum(), other_bits.sum()


def train_context(train: List[Sample], with_mean: bool, steps: int, channels: int) -> nn.Module:
    torch.manual_seed(0)
    net = CheckerboardContext(channels, with_mean=with_mean)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    rng, running, start = np.random.default_rng(0), 0.0, time.time()
    for step in range(steps):
        for group in optimizer.param_groups:
            group['lr'] = 1e-3 if step < 0.8 * steps else 1e-4
        batch = [train[i] for i in rng.integers(len(train), size=BATCH)]
        loss = sum(section_bits(s, net, True)[1] / s.pixels for s in batch) / BATCH
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += float(loss.detach())
        if (step + 1) % 250 == 0:
            elapsed = time.time() - start
            print(f'step {step + 1}: non-anchor bpp {running / 250:.4f} ({elapsed:.0f} s)', flush=True)
            running = 0.0
    return net.eval()


@torch.no_grad()
def bits_per_level(samples: List[Sample], net) -> Dict[int, Dict[str, float]]:
    totals: Dict[int, Dict[str, float]] = {}
    for sample in samples:
        anchor_bits, other_bits = section_bits(sample, net, False)
        entry = totals.setdefault(sample.level, {'z': 0.0, 'anchors': 0.0, 'non_anchors': 0.0, 'pixels': 0})
        entry['z'] += sample.z_bits
        entry['anchors'] += float(anchor_bits)
        entry['non_anchors'] += float(other_bits)
        entry['pixels'] += sample.pixels
    return totals


def compare(base: Dict, probe: Dict) -> List[Dict[str, float]]:
    rows = []
    for level in LEVELS:
        before, after = base[level], probe[level]
        total = (before['z'] + before['anchors'] + before['non_anchors'], after['z'] + after['anchors']
                 + after['non_anchors'])
        rows.append({'level': level, 'bpp_hyperprior': total[0] / before['pixels'],
                     'bpp_context': total[1] / after['pixels'],
                     'total_bits_change_percent': 100.0 * (total[1] / total[0] - 1.0),
                     'non_anchor_bits_change_percent':
                         100.0 * (after['non_anchors'] / before['non_anchors'] - 1.0)})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--variants', default='scale,mean')
    add_frame_arguments(parser)
    parser.set_defaults(threads=1)
    args = parser.parse_args(argv)
    variants = args.variants.split(',')
    if not set(variants) <= {'scale', 'mean'}:
        parser.error(f'--variants {args.variants}: choose from scale, mean')
    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    train_frames = KittiObjectDataset(DATA / 'kitti_object_fov', split='training')
    train = [s for frame in train_frames for s in latent_samples(model, frame.image)]
    names, test = [], []
    for name, frame in selected_frames(args):
        names.append(name)
        test.extend(latent_samples(model, frame.image))
    print(f'{len(train)} training and {len(test)} test samples', flush=True)
    base, results = bits_per_level(test, None), {}
    for variant in variants:
        net = train_context(train, variant == 'mean', args.steps, model.config['M'])
        results[variant] = compare(base, bits_per_level(test, net))
        for row in results[variant]:
            print(f"{variant} level {row['level']}: {row['bpp_hyperprior']:.4f} -> "
                  f"{row['bpp_context']:.4f} bpp ({row['total_bits_change_percent']:+.2f} %)", flush=True)
    write_model_result('context_probe', args, model, folder=RESULTS, fields={
        'levels': list(LEVELS), 'steps': args.steps, 'batch': BATCH, 'frames': names,
        'training_frames': len(train_frames), 'results': results})
    return 0


if __name__ == '__main__':
    sys.exit(main())
