"""Can a small non-linear network at the decoder use the scan to improve the twin's reconstruction?

research/lidar_probe.py rules out a linear use of the scan. This trains a decoder-side post-filter on
top of the frozen image-only twin's backbone (its g_s output, without its own post filter) four times,
identically except for what it sees of the scan:
- ``depth+reflectance``: the sparse depth map (the equalised projection of the scan, plus its valid
  mask) and the reflectance map (each pixel's nearest point's reflectance, which the LiDAR packet
  carries);
- ``dense``: the equalised dense depth map that :func:`complete_depth` (IP-Basic) fills in from the
  sparse one, so that every pixel has a depth and object outlines are closed;
- ``depth+reflectance+dense``: all three maps;
- ``zeros``: zeros in all scan channels.
The packets do not change, so the bits are the twin's in every arm. The difference in PSNR between
the filters on frames no model was trained on is the gain the scan gives this network. The zeros
arm also shows what the filter does without the scan.

- Training frames: the twin's own KITTI training frames (kitti_object_fov/training), decoded by the
  twin's backbone at every quality level and rounded to 8 bits, as a decoder node would publish them.
  Random crops; all arms see the same crops in the same order from the same initial weights.
- The filter (:class:`ScanPostFilter`: the codec's own post filter with four side channels):
  pixel-unshuffle by 2, four residual blocks at half resolution, pixel-shuffle back, added to the
  decoded image. Its input has the decoded image, the quality level as a constant plane, and the
  scan channels.
- The maps come from the scan as read from disk, not from its Draco decode (sub-centimetre and 8-bit
  reflectance differences, which a product integration would have to remove).
- Evaluation: the held-out frames of bench/eval_codec.py, at every quality level.

    .venv/bin/python research/lidar_postfilter.py [--steps 1500] [--batch 8] [--crop 128] [--tag cpu-2core]

Writes research/results/lidar_postfilter_<tag>.json.
"""
import argparse
import copy
import sys
import time
from typing import Dict, List, Tuple
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# eval_codec (bench/) and the other research scripts are imported from the checkout.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1] / 'bench')]
from eval_codec import (DATA, REPO, add_frame_arguments, bd_table, learned_points,  # noqa: E402
                        selected_frames, summarise, to_uint8, write_model_result)
from xmodal_compress_ros.bench.metrics import bpp, psnr  # noqa: E402
from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.codec.post_filter import PostFilter  # noqa: E402
from xmodal_compress_ros.data.kitti import KittiObjectDataset  # noqa: E402
from xmodal_compress_ros.geometry.depth_completion import complete_depth  # noqa: E402
from xmodal_compress_ros.geometry.projection import (  # noqa: E402
    equalize_depth, project_to_depth, reflectance_map)

RESULTS = Path(__file__).resolve().parent / 'results'

#: Each arm and the scan channels (0: sparse depth, 1: reflectance, 2: dense depth) it sees.
ARMS = {'depth+reflectance+dense': (0, 1, 2), 'depth+reflectance': (0, 1), 'dense': (2,), 'zeros': ()}
SCAN_CHANNELS = 3
#: The options recorded with the result.
SETTINGS = ('steps', 'batch', 'crop', 'lr', 'channels', 'blocks', 'seed', 'threads', 'raw_stride')


class ScanPostFilter(nn.Module):
    """The codec's :class:`PostFilter` with four side channels: sparse depth, its valid mask,
    reflectance and dense depth."""

    def __init__(self, channels: int = 32, blocks: int = 4):
        super().__init__()
        self.filter = PostFilter(channels, blocks, side_channels=SCAN_CHANNELS + 1)

    def forward(self, decoded: torch.Tensor, quality: torch.Tensor, scan: torch.Tensor) -> torch.Tensor:
        height, width = decoded.shape[-2:]
        depth = scan[:, :1]
        side = torch.cat([depth, (depth > 0).float(), scan[:, 1:]], dim=1)
        # Pixel-unshuffle needs even sizes (KITTI frames are 375 rows): pad by replication, crop back.
        pad = (0, width % 2, 0, height % 2)
        out = self.filter(F.pad(decoded, pad, mode='replicate'), quality.reshape(-1, 1),
                          F.pad(side, pad, mode='replicate'))
        return out[..., :height, :width]


def scan_maps(frame) -> np.ndarray:
    """uint8 (H, W, 3): the depth condition, the reflectance map and the equalised dense depth."""
    depth = project_to_depth(frame.points, frame.calib)
    maps = (equalize_depth(depth), reflectance_map(frame.points, frame.calib),
            equalize_depth(complete_depth(depth)))
    return np.stack(maps, -1)


def frame_entry(twin, image: np.ndarray, scan: np.ndarray) -> Dict:
    """The frame and the twin's uint8 reconstructions of it at every quality level (real bytes)."""
    decoded = [pixels for _, _, pixels, *_ in learned_points(twin, image, scan[..., 0], drop_lidar=False)]
    return {'image': image, 'scan': scan, 'decoded': decoded}


def training_set(twin, limit: int) -> List[Dict]:
    dataset = KittiObjectDataset(DATA / 'kitti_object_fov', split='training')
    entries = []
    for i, frame in enumerate(dataset):
        if limit and i >= limit:
            break
        entries.append(frame_entry(twin, frame.image, scan_maps(frame)))
        print(f'decoded training frame {i + 1}/{len(dataset)}', end='\r', flush=True)
    print()
    return entries


def as_tensors(image: np.ndarray, scan: np.ndarray, decoded: np.ndarray) -> Tuple[torch.Tensor, ...]:
    to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).float().permute(2, 0, 1) / 255.0  # noqa: E731
    return to(image), to(scan), to(decoded)


def visible(scan: torch.Tensor, arm: str) -> torch.Tensor:
    """The scan channels the arm sees; zeros in the others."""
    mask = torch.zeros(SCAN_CHANNELS, 1, 1)
    mask[list(ARMS[arm])] = 1.0
    return scan * mask


def batches(entries: List[Dict], steps: int, batch: int, crop: int, levels: int, seed: int):
    """Random crops (original, scan maps, decoded at a random level, level / (levels - 1)); the same
    sequence for every arm."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        items = []
        for _ in range(batch):
            entry = entries[rng.integers(len(entries))]
            q = int(rng.integers(levels))
            h, w = entry['image'].shape[:2]
            top, left = rng.integers(h - crop + 1), rng.integers(w - crop + 1)
            window = np.s_[top:top + crop, left:left + crop]
            crops = as_tensors(entry['image'][window], entry['scan'][window], entry['decoded'][q][window])
            items.append(crops + (torch.tensor(q / (levels - 1)),))
        yield [torch.stack(parts) for parts in zip(*items)]


def train_arms(entries: List[Dict], args,
               levels: int) -> Tuple[Dict[str, ScanPostFilter], Dict[str, float]]:
    """All arms, stepped together on the same batches from the same initial weights; the filters and
    each arm's mean training MSE over its last 100 steps."""
    torch.manual_seed(args.seed)
    first = ScanPostFilter(args.channels, args.blocks)
    filters = {arm: copy.deepcopy(first) for arm in ARMS}
    optimizers = {arm: torch.optim.Adam(f.parameters(), lr=args.lr) for arm, f in filters.items()}
    losses = {arm: [] for arm in ARMS}
    start = time.perf_counter()
    for step, (x, scan, decoded, q) in enumerate(batches(entries, args.steps, args.batch, args.crop, levels,
                                                         args.seed)):
        for arm, f in filters.items():
            out = f(decoded, q, visible(scan, arm))
            loss = F.mse_loss(out, x)
            optimizers[arm].zero_grad()
            loss.backward()
            optimizers[arm].step()
            losses[arm].append(loss.item())
        if (step + 1) % 100 == 0:
            recent = {arm: np.mean(v[-100:]) for arm, v in losses.items()}
            print(f'step {step + 1}/{args.steps} ({time.perf_counter() - start:.0f} s) '
                  + ' '.join(f'{arm} mse {v:.6f}' for arm, v in recent.items()), flush=True)
    return filters, {arm: float(np.mean(v[-100:])) for arm, v in losses.items()}


@torch.no_grad()
def evaluate(filters: Dict[str, ScanPostFilter], twin, args) -> List[Dict]:
    records = []
    levels = twin.quality_levels
    for name, frame in selected_frames(args):
        image = frame.image
        h, w = image.shape[:2]
        scan = scan_maps(frame)
        for q, num_bytes, decoded, *_ in learned_points(twin, image, scan[..., 0], drop_lidar=False):
            _, s, dec = (t[None] for t in as_tensors(image, scan, decoded))
            outputs = {'twin': decoded}
            for arm, f in filters.items():
                out = f(dec, torch.tensor([q / (levels - 1)]), visible(s, arm))
                outputs[f'twin+filter-{arm}'] = to_uint8(out.clamp(0, 1))
            for codec, pixels in outputs.items():
                records.append({'frame': name, 'codec': codec, 'setting': q, 'bytes': num_bytes,
                                'bpp': bpp(num_bytes, w, h), 'psnr_db': psnr(image, pixels)})
        print(name, ' '.join(f"{r['codec']}:{r['psnr_db']:.2f}" for r in records[-len(outputs):]), flush=True)
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default=str(REPO / 'models' / 'xmodal-hyperprior'), help='the twin')
    parser.add_argument('--steps', type=int, default=1500)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--crop', type=int, default=128)
    parser.add_argument('--lr', type=float, default=3e-4)
    parser.add_argument('--channels', type=int, default=32)
    parser.add_argument('--blocks', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-frames', type=int, default=0,
                        help='use the first N training frames (0: all)')
    add_frame_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # The backbone, so that the arms are compared on g_s's output, not on top of the shipped filter.
    twin = load_model(args.model)
    if twin.post_filter is not None:
        twin = twin.without_post_filter()
    twin.eval()
    entries = training_set(twin, args.train_frames)
    filters, training_mse = train_arms(entries, args, twin.quality_levels)
    for f in filters.values():
        f.eval()
    records = evaluate(filters, twin, args)
    summary = summarise(records)
    pairs = [(f'twin+filter-{arm}', 'twin+filter-zeros') for arm in ARMS if arm != 'zeros']
    pairs += [('twin+filter-zeros', 'twin'), ('twin+filter-depth+reflectance+dense', 'twin')]
    bd = bd_table(summary, pairs)
    for row in bd:
        print(f"{row['test']} vs {row['anchor']}: BD-rate {row['bd_rate_psnr_percent']:+.2f} %")
    write_model_result('lidar_postfilter', args, twin, folder=RESULTS, fields={
        'settings': {k: getattr(args, k) for k in SETTINGS},
        'training_frames': len(entries), 'training_mse_last_100_steps': training_mse, 'summary': summary,
        'bd_rates': bd, 'records': records})
    return 0


if __name__ == '__main__':
    sys.exit(main())
