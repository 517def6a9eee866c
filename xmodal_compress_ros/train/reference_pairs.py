"""Training pairs for the P-frame codec: a current frame and its aligned, decoded previous frame.

The P-frame codec learns what a stream gives it at run time: the previous frame as the intra codec
decoded it at one quality level, warped into the current view with the current scan's dense depth
and the camera's motion. Two kinds of pairs, neither from the evaluation drive:

* synthetic drives (:class:`SyntheticDrive`): consecutive frames 1-3 apart, the camera's motion from
  the known trajectory, moving traffic, exposure flicker;
* still frames (KITTI object): the frame is the current view, and its re-render from a pose up to
  2 m behind (:func:`render_from_pose`, holes filled) is the previous one; real texture, no traffic.

The motion used for warping is perturbed by a few centimetres and tenths of a degree, the size of a
scan registration's error, so the codec does not learn to trust the warp blindly.
"""
from __future__ import annotations

from typing import Iterable, Iterator, Tuple

import numpy as np
import torch

from xmodal_compress_ros.codec.models import HyperpriorCodec
from xmodal_compress_ros.codec.reference import reference_planes
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.geometry.warp import camera_intrinsics, dense_depth, render_from_pose
from xmodal_compress_ros.train.crops import FrameBank

#: Standard deviations of the motion error added before warping: metres, radians.
POSE_NOISE_M, POSE_NOISE_RAD = 0.03, 0.002


def _decoded(intra: HyperpriorCodec, image: np.ndarray, level: int) -> np.ndarray:
    """``image`` (H, W, 3 uint8) as the intra codec decodes it at ``level``, uint8."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    x_hat = intra.decompress(intra.compress(x, quality=level))
    return (x_hat[0].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def _perturbed(T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``T`` with a small random rigid error (first order in the rotation, re-orthonormalised)."""
    w = rng.normal(0.0, POSE_NOISE_RAD, 3)
    skew = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])
    u, _, vt = np.linalg.svd(np.eye(3) + skew)
    error = np.eye(4)
    error[:3, :3], error[:3, 3] = u @ vt, rng.normal(0.0, POSE_NOISE_M, 3)
    return error @ T


Pair = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def still_pairs(frames: Iterable[SensorFrame], rng: np.random.Generator,
                per_frame: int = 2) -> Iterator[Pair]:
    """(previous image, current image, current depth, K, T_prev_cur) from still frames re-rendered from
    ``per_frame`` random poses 0.3-2 m behind, up to 0.3 m aside and 1.5 degrees of yaw."""
    for frame in frames:
        K, _ = camera_intrinsics(frame.calib)
        depth = dense_depth(frame.points, frame.calib)
        for _ in range(per_frame):
            yaw = np.radians(rng.uniform(-1.5, 1.5))
            T = np.eye(4)
            T[:3, :3] = [[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]
            T[:3, 3] = [rng.uniform(-0.3, 0.3), rng.uniform(-0.05, 0.05), rng.uniform(0.3, 2.0)]
            previous, _ = render_from_pose(frame.image, depth, K, T)
            yield np.clip(previous + 0.5, 0, 255).astype(np.uint8), frame.image, depth, K, T


def drive_pairs(drive, rng: np.random.Generator, strides: Tuple[int, ...] = (1, 2, 3)) -> Iterator[Pair]:
    """(previous image, current image, current depth, K, T_prev_cur) of a :class:`SyntheticDrive`: each
    frame from the ``stride`` before it (a random choice of ``strides``), motion from its trajectory."""
    K, T_cam_lidar = camera_intrinsics(drive.calib)
    cached = {}

    def frame(k: int):
        if k not in cached:
            rendered = drive.render(k).frame
            t = (rendered.image_stamp_ns - drive.start_ns) / 1e9
            T_world_cam = drive.trajectory.poses(np.array([t]))[0] @ np.linalg.inv(T_cam_lidar)
            cached[k] = (rendered, T_world_cam)
        return cached[k]

    for k in range(max(strides), len(drive)):
        stride = int(rng.choice(strides))
        (prev, T_world_prev), (cur, T_world_cur) = frame(k - stride), frame(k)
        for old in [j for j in cached if j < k - max(strides)]:
            del cached[old]
        T_prev_cur = np.linalg.inv(T_world_prev) @ T_world_cur
        yield prev.image, cur.image, dense_depth(cur.points, cur.calib), K, T_prev_cur


def add_pairs(bank: FrameBank, pairs: Iterable[Pair], intra: HyperpriorCodec, rng: np.random.Generator,
              name: str) -> None:
    """Decode each pair's previous image at a random level, warp it into the current view with a
    perturbed motion and add (current image, reference planes, level) to ``bank``."""
    for i, (previous, current, depth, K, T_prev_cur) in enumerate(pairs):
        level = int(rng.integers(intra.quality_levels))
        reference = _decoded(intra, previous, level)
        planes = reference_planes(reference, depth, K, _perturbed(T_prev_cur, rng))
        bank.add(current, planes, f'{name}/{i:04d}', level)


#: ``synthetic-drive:SEED,FRAMES``: a drive rendered in-process, with its trajectory (for pairs).
DRIVE_KIND = 'synthetic-drive'


def pair_bank(specs: Iterable[str], intra: HyperpriorCodec, seed: int = 0, max_frames: int = 0) -> FrameBank:
    """A bank of P-frame training pairs from ``--data`` sources: ``synthetic-drive:SEED,FRAMES`` gives
    consecutive pairs, every other source (:func:`sources.frames_from_spec`) re-rendered stills."""
    import itertools

    from xmodal_compress_ros.data.synthetic.sequence import SynthConfig, SyntheticDrive
    from xmodal_compress_ros.errors import DatasetError
    from xmodal_compress_ros.train.sources import frames_from_spec

    rng = np.random.default_rng(seed)
    bank = FrameBank()
    intra = intra.eval()
    for spec in specs:
        kind, _, location = spec.partition(':')
        if kind == DRIVE_KIND:
            try:
                drive_seed, frames = (int(v) for v in location.split(','))
            except ValueError:
                raise DatasetError(f'data source {spec!r}: give {DRIVE_KIND}:SEED,FRAMES') from None
            pairs = drive_pairs(SyntheticDrive(SynthConfig(frames=frames, seed=drive_seed)), rng)
        else:
            frames = frames_from_spec(spec)
            pairs = still_pairs(itertools.islice(frames, max_frames) if max_frames else frames, rng)
        with torch.no_grad():
            add_pairs(bank, pairs, intra, rng, spec)
    return bank
