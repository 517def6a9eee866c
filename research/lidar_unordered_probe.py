"""Clouds whose order hides their lasers: the grid path, elevation bands, or Draco?

The predictive codec (``codec/lidar_predictive.py``) reads a spinning sensor's lasers from the ``ring``
field or from the scan order. Without either (shuffled or voxel-filtered clouds, a driver's column-by-
column order without ``ring``, solid-state patterns) it infers them from the elevation angle
(``_elevation_rings``: bands of ``BAND_DEGREES`` seen from the height where a sample's elevations bunch
most, tried where they bunch at least ``BUNCH_RATIO`` times more than evenly spread ones) and keeps
the smaller of that and the grid path. This probe measures, at one bound, the geometry bits per point
(payload without intensity) of each choice on:

* KITTI scans shuffled (every 9th full scan of ../shared/data), and the first one moved 1.73 m up (a
  vehicle frame: the ground near the frame's height, which bunches too);
* synthetic spinning scans (``data/synthetic``, 16, 64 and 128 beams) in the driver's column-by-column
  order without their ``ring`` field;
* synthetic solid-state-like clouds: rays in a 70 x 77 degree field of view, uniformly random or along
  a rotating rosette, cast into the same synthetic street.

Per cloud: the bunching score and height found, the grid path, the elevation bands forced (whatever
the score), bands cut at the valleys of the elevation histogram instead (0.025-degree bins, a valley's
deepest bin between peaks that are the highest within 0.12 degrees: one band per laser however dense),
the codec's own choice, the scan in its own order (where it has one), and Draco kd-tree at the fewest
quantization bits meeting the bound.

    .venv/bin/python research/lidar_unordered_probe.py [--data ../shared/data] [--max-error 0.01]
        [--band-degrees 0.2] [--out research/results/lidar_unordered_probe.json]
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'bench'))

from bench_lidar_codec import full_scans, run_draco  # noqa: E402
from xmodal_compress_ros.codec import lidar_predictive as lp  # noqa: E402
from xmodal_compress_ros.data.synthetic import lidar as synthetic_lidar, raycast  # noqa: E402
from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive  # noqa: E402


class _Rays(raycast.RayGrid):
    """Rays in no grid: every primitive is tested against all of them."""

    def blocks(self, lo, hi):
        return [[(slice(None), slice(None))] for _ in range(len(lo))]


def solid_state_cloud(drive: SyntheticDrive, pattern: str, rays: int, rng) -> np.ndarray:
    """(N, 3) float32 returns of a forward-looking 70 x 77 degree sensor at frame 1's pose."""
    pose = drive.trajectory.poses(np.array([0.1]))[0]
    if pattern == 'random':
        u, v = rng.uniform(-0.61, 0.61, rays), rng.uniform(-0.67, 0.67, rays)
    else:  # petals through the centre, turning: a rosette scanner's pattern
        t = np.linspace(0, 0.1, rays)
        radius = 0.65 * np.abs(np.sin(2 * math.pi * 1400 * t))
        angle = 7.3 * (2 * math.pi * 17 * t + 0.5 * np.sign(np.sin(2 * math.pi * 1400 * t)))
        u, v = radius * np.cos(angle), radius * np.sin(angle)
    directions = np.stack([np.ones(rays), np.tan(u), np.tan(v)], axis=1)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    grid = _Rays(np.broadcast_to(pose[:3, 3], (1, rays, 3)).copy(), (directions @ pose[:3, :3].T)[None])
    hit, _ = raycast.cast(drive.scene.prims, grid, 200.0)
    keep = np.isfinite(hit[0]) & (hit[0] > 1.0)
    distance = hit[0][keep] + rng.normal(0, 0.02, keep.sum())
    return (directions[keep] * distance[:, None]).astype(np.float32)


def synthetic_scan(beams: int, top: float, bottom: float) -> np.ndarray:
    columns = 2083 if beams < 128 else 1024
    config = SynthConfig(frames=1, lidar=synthetic_lidar.LidarConfig(
        beams=beams, elevation_top_deg=top, elevation_bottom_deg=bottom, columns=columns))
    return SyntheticDrive(config).render(0).frame.points[:, :3]


def valley_rings(xyz: np.ndarray, height: float, bin_degrees=0.025, peak_degrees=0.12) -> np.ndarray:
    """A band per peak of the elevation histogram (seen from ``height``), cut at the deepest bin
    between neighbouring peaks."""
    full = xyz.astype(np.float64)
    elevation = np.degrees(np.arctan2(full[:, 2] - height, np.hypot(full[:, 0], full[:, 1])))
    bins = ((elevation - elevation.min()) / bin_degrees).astype(np.int64)
    smooth = np.convolve(np.bincount(bins).astype(float), np.ones(3) / 3, mode='same')
    reach = int(round(peak_degrees / bin_degrees))
    highest = np.lib.stride_tricks.sliding_window_view(
        np.pad(smooth, reach, constant_values=-1.0), 2 * reach + 1).max(axis=1)
    peaks = np.flatnonzero((smooth == highest) & (smooth > 0))
    peaks = peaks[np.concatenate(([True], np.diff(peaks) > 1))]  # one per plateau
    edges = [low + int(np.argmin(smooth[low:high + 1])) for low, high in zip(peaks[:-1], peaks[1:])]
    return np.searchsorted(np.array(edges, np.int64), bins, side='right')


def geometry_bpp(xyz: np.ndarray, max_error: float) -> float:
    return 8.0 * len(lp.encode(np.ascontiguousarray(xyz), None, max_error).payload) / len(xyz)


def measure(xyz: np.ndarray, in_order, max_error: float) -> dict:
    xyz = np.ascontiguousarray(xyz, dtype=np.float32)
    sample = xyz[::max(1, len(xyz) // lp._BUNCH_SAMPLE)].astype(np.float64)
    distance, z = np.hypot(sample[:, 0], sample[:, 1]), sample[:, 2]
    score, height = max((lp._bunching(z - h, distance), h) for h in lp._HEIGHTS)
    chosen = lp.encode(xyz, None, max_error)
    found, ratio = lp._elevation_rings, lp.BUNCH_RATIO
    try:
        lp.BUNCH_RATIO = 0.0  # bands whatever the bunching: what they would cost
        bands = lp.encode(xyz, None, max_error, rings=found(xyz))
        valleys = lp.encode(xyz, None, max_error, rings=valley_rings(xyz, height))
        lp._elevation_rings = lambda cloud: None  # the grid alone, as the order leaves it
        grid = geometry_bpp(xyz, max_error)
    finally:
        lp._elevation_rings, lp.BUNCH_RATIO = found, ratio
    points = np.concatenate([xyz, np.zeros((len(xyz), 1), np.float32)], axis=1)
    return dict(points=len(xyz), bunching=round(score, 2), height_m=round(float(height), 2),
                grid_bpp=grid, bands_bpp=8.0 * len(bands.payload) / len(xyz),
                valley_bands_bpp=8.0 * len(valleys.payload) / len(xyz), chosen=chosen.mode,
                chosen_bpp=8.0 * len(chosen.payload) / len(xyz),
                in_order_bpp=None if in_order is None else geometry_bpp(in_order, max_error),
                draco_kdtree_bpp=8.0 * run_draco(points, max_error, 7)['geometry_bytes'] / len(xyz))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data', type=Path, default=ROOT.parent / 'shared' / 'data')
    parser.add_argument('--max-error', type=float, default=0.01)
    parser.add_argument('--band-degrees', type=float, default=lp.BAND_DEGREES,
                        help="the bands' height (the codec's BAND_DEGREES by default)")
    parser.add_argument('--out', type=Path,
                        default=ROOT / 'research' / 'results' / 'lidar_unordered_probe.json')
    args = parser.parse_args()
    lp.BAND_DEGREES = args.band_degrees
    rng = np.random.default_rng(0)
    clouds = {}
    for k, (name, points) in enumerate(full_scans(args.data)):
        if k % 9 == 0:
            xyz = points[:, :3]
            clouds[f'KITTI {name} shuffled'] = (xyz[rng.permutation(len(xyz))], xyz)
    if clouds:
        first, in_order = next(iter(clouds.values()))
        clouds['the first, 1.73 m up (vehicle frame)'] = (first + np.float32([0, 0, 1.73]),
                                                          in_order + np.float32([0, 0, 1.73]))
    for beams, top, bottom in ((16, 15.0, -15.0), (64, 2.0, -24.9), (128, 21.0, -21.0)):
        clouds[f'synthetic {beams} beams, column by column'] = (synthetic_scan(beams, top, bottom), None)
    drive = SyntheticDrive(SynthConfig(frames=2))
    clouds['synthetic solid-state, random rays'] = (solid_state_cloud(drive, 'random', 24000, rng), None)
    clouds['synthetic solid-state, rosette'] = (solid_state_cloud(drive, 'rosette', 96000, rng), None)
    results = {}
    for name, (xyz, in_order) in clouds.items():
        results[name] = row = measure(xyz, in_order, args.max_error)
        in_order = row['in_order_bpp'] or float('nan')
        print(f'{name:<42} bunching {row["bunching"]:5.2f} at {row["height_m"]:5.2f} m | grid '
              f'{row["grid_bpp"]:5.2f} | bands {row["bands_bpp"]:5.2f} | valley bands '
              f'{row["valley_bands_bpp"]:5.2f} | chosen {row["chosen"]:<8} {row["chosen_bpp"]:5.2f} | '
              f'in order {in_order:5.2f} | Draco kd-tree {row["draco_kdtree_bpp"]:5.2f}', flush=True)
    out = args.out
    out.write_text(json.dumps(dict(max_error=args.max_error, band_degrees=lp.BAND_DEGREES,
                                   bunch_ratio=lp.BUNCH_RATIO, clouds=results), indent=1))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
