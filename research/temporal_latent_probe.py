"""How many of an intra frame's bits can the aligned previous frame remove, with no training?

For frame t of the kitti_raw drive and the previous frame as the intra model decoded it, aligned by the
current scan and the registered ego-motion (what the P packet's reference is), this estimates:

* prediction PSNR of the reference: aligned (holes from the unaligned frame), and aligned then refined
  by an encoder-side block motion search (BLOCK x BLOCK blocks, +-SEARCH pixels, motion entropy counted);
* latent bits (estimated, -log2 of the discretised Gaussian) of the intra model's y with the means
  ``mu_h + w * (g_a(reference) - mu_h)`` and the scales shifted down by ``k`` table rows, (w, k) chosen
  per channel by the encoder (a signalled, integer choice, so parsing stays integer), against the intra
  model's own means and scales (w = 0, k = 0); z bits are the same in both.

    OMP_NUM_THREADS=1 .venv/bin/python research/temporal_latent_probe.py --qualities 2 5 --step 2 \
        --out research/results/temporal_latent_probe_kitti_raw.json
"""
import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from xmodal_compress_ros.codec.integer_hyper import index_to_scale
from xmodal_compress_ros.codec.layers import gaussian_likelihood
from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.models import pad_to_multiple
from xmodal_compress_ros.codec.reference import reference_planes
from xmodal_compress_ros.data.kitti import KittiRawDrive
from xmodal_compress_ros.geometry.ego_motion import (ScanRegistration, lidar_to_camera_motion,
                                                     quantize_pose)
from xmodal_compress_ros.geometry.warp import camera_intrinsics, dense_depth

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('XMODAL_SHARED_DATA', REPO.parent / 'shared' / 'data'))
DATA = SHARED / 'kitti_raw' / '2011_09_26'
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHIFTS = (0, 1, 2, 3, 4, 6, 8, 12)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.clip(np.rint(a), 0, 255) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def block_search(target: np.ndarray, reference: np.ndarray, block: int, search: int):
    """Per-block integer displacement of ``reference`` minimising the SSE on ``target`` (float HxWx3)."""
    h, w = target.shape[:2]
    hb, wb = h // block, w // block
    pad = np.pad(reference, ((search, search), (search, search), (0, 0)), mode='edge')
    best = np.full((hb, wb), np.inf)
    motion = np.zeros((hb, wb, 2), np.int64)
    t = target[:hb * block, :wb * block]
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            shifted = pad[search + dy:search + dy + hb * block, search + dx:search + dx + wb * block]
            sse = ((shifted - t) ** 2).sum(axis=2).reshape(hb, block, wb, block).sum(axis=(1, 3))
            # Prefer zero motion on ties (cheaper to code).
            sse = sse + (dy != 0 or dx != 0) * 1e-3
            better = sse < best
            best[better] = sse[better]
            motion[better] = (dy, dx)
    prediction = reference.copy()
    for by in range(hb):
        for bx in range(wb):
            dy, dx = motion[by, bx]
            ys, xs = by * block + search + dy, bx * block + search + dx
            prediction[by * block:(by + 1) * block, bx * block:(bx + 1) * block] = \
                pad[ys:ys + block, xs:xs + block]
    return prediction, motion


def entropy_bits(values: np.ndarray) -> float:
    """Empirical order-0 entropy of the rows of ``values``, in bits (a lower bound of their cost)."""
    _, counts = np.unique(values.reshape(len(values), -1), axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


@torch.no_grad()
def latent_bits(model, x: np.ndarray, reference: np.ndarray, quality: int):
    """Estimated y bits: the intra model's, and with per-channel (w, k) chosen by the encoder."""
    def tensor(img):
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
        return pad_to_multiple(chw[None] / 255)
    q = torch.tensor([quality])
    y_g, z = model.analysis(tensor(x), q)
    z_hat = torch.round(z)
    mu = model.mean(z_hat)
    index = model.scale_index(z_hat)
    y_r, _ = model.analysis(tensor(reference), q)
    table = torch.zeros(len(WEIGHTS), len(SHIFTS), y_g.shape[1], dtype=torch.float64)
    for i, w in enumerate(WEIGHTS):
        residual = torch.round(y_g - (mu + w * (y_r - mu)))
        for j, k in enumerate(SHIFTS):
            scales = index_to_scale((index - k).clamp_min(0))
            bits = -torch.log2(gaussian_likelihood(residual, scales))
            table[i, j] = bits.sum(dim=(0, 2, 3)).double()
    intra = float(table[0, 0].sum())
    per_frame = float(table.sum(dim=2).min())
    per_channel = float(table.reshape(-1, table.shape[2]).min(dim=0).values.sum())
    side = y_g.shape[1] * np.log2(len(WEIGHTS) * len(SHIFTS))
    flat = table.reshape(-1, table.shape[2]).argmin(dim=0)
    return {'intra_bits': intra, 'per_frame_bits': per_frame, 'per_channel_bits': per_channel + side,
            'weights_chosen': np.bincount(flat.numpy() // len(SHIFTS), minlength=len(WEIGHTS)).tolist(),
            'pixels': x.shape[0] * x.shape[1]}


@torch.no_grad()
def decoded(model, x: np.ndarray, quality: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float()[None] / 255
    out = model(t, quality=torch.tensor([quality])).x_hat
    return (out[0].clamp(0, 1) * 255).round().numpy().transpose(1, 2, 0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--drive', default=str(DATA / '2011_09_26_drive_sfnd_sync'))
    parser.add_argument('--calib', default=str(DATA))
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-hyperprior'))
    parser.add_argument('--qualities', type=int, nargs='+', default=[2, 5])
    parser.add_argument('--step', type=int, default=2, help='every STEP-th frame pair')
    parser.add_argument('--stride', type=int, default=1)
    parser.add_argument('--block', type=int, default=32)
    parser.add_argument('--search', type=int, default=8)
    parser.add_argument('--out', default=str(REPO / 'research' / 'results' / 'temporal_latent_probe.json'))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model(args.model)
    drive = KittiRawDrive(args.drive, args.calib)
    K, T_cam_lidar = camera_intrinsics(drive.calib)
    registration = ScanRegistration()
    frames = list(range(0, len(drive), args.stride))
    rows, previous = [], None
    for n, index in enumerate(frames):
        frame = drive[index]
        T = quantize_pose(lidar_to_camera_motion(registration.register(frame.points), T_cam_lidar))
        if previous is None or n % args.step:
            previous = frame
            continue
        depth = dense_depth(frame.points, drive.calib)
        image = frame.image.astype(np.float64)
        for quality in args.qualities:
            prev_hat = decoded(model, previous.image, quality)
            planes = reference_planes(prev_hat.astype(np.uint8), depth, K, T)
            valid = planes[..., 3:4] > 0
            aligned = np.where(valid, planes[..., :3], prev_hat).astype(np.float64)
            refined, motion = block_search(image, aligned, args.block, args.search)
            raw_mc, raw_motion = block_search(image, prev_hat, args.block, args.search)
            row = {'frame': index, 'quality': quality,
                   'psnr_previous': psnr(prev_hat, frame.image), 'psnr_aligned': psnr(aligned, frame.image),
                   'psnr_aligned_mc': psnr(refined, frame.image),
                   'psnr_previous_mc': psnr(raw_mc, frame.image),
                   'motion_bits_aligned': entropy_bits(motion.reshape(-1, 2)),
                   'motion_bits_previous': entropy_bits(raw_motion.reshape(-1, 2))}
            for name, ref in (('previous', prev_hat), ('aligned', aligned), ('aligned_mc', refined)):
                bits = latent_bits(model, frame.image, ref.astype(np.float32), quality)
                row[name] = bits
            rows.append(row)
            print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
                              if not isinstance(v, dict)}),
                  {name: round(1 - row[name]['per_channel_bits'] / row[name]['intra_bits'], 4)
                   for name in ('previous', 'aligned', 'aligned_mc')}, flush=True)
        previous = frame
    summary = {}
    for quality in args.qualities:
        sel = [r for r in rows if r['quality'] == quality]
        entry = {k: float(np.mean([r[k] for r in sel])) for k in sel[0] if k.startswith(('psnr', 'motion'))}
        for name in ('previous', 'aligned', 'aligned_mc'):
            intra = sum(r[name]['intra_bits'] for r in sel)
            entry[f'{name}_saving_per_channel'] = 1 - sum(r[name]['per_channel_bits'] for r in sel) / intra
            entry[f'{name}_saving_per_frame'] = 1 - sum(r[name]['per_frame_bits'] for r in sel) / intra
        entry['intra_bpp_y'] = sum(r['aligned']['intra_bits'] for r in sel) / sum(r['aligned']['pixels']
                                                                                  for r in sel)
        summary[str(quality)] = entry
    print(json.dumps(summary, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({'args': vars(args), 'summary': summary, 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
