"""Inputs for export checks, runtime benchmarks and tests: frames and (when none are trained) models.

Frames: real KITTI frames when present, else procedural ones: a textured image with a KITTI-like
calibration and a scan of a ground plane, two walls and a few boxes, so the projection and the
LiDAR branch see realistic sparsity. Models: the committed ``models/`` files, else untrained
models of the same architecture written to a folder (right for timing and determinism checks,
meaningless for image quality).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.geometry.calibration import Calibration

# KITTI's Velodyne-to-camera axes: x_cam = -y_lidar, y_cam = -z_lidar, z_cam = x_lidar.
_LIDAR_TO_CAMERA = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08], [1.0, 0.0, 0.0, -0.27],
                             [0.0, 0.0, 0.0, 1.0]])
_KITTI_FOCAL_AT_1242 = 721.5
_REPO_ROOT = Path(__file__).resolve().parents[2]
#: The committed default models (stems), LiDAR-conditioned and image-only twin.
DEFAULT_MODELS = ('models/xmodal-lidar', 'models/xmodal-hyperprior')
#: A small architecture for fast tests.
TINY_CONFIG = dict(N=16, M=24, Nz=8, hyper_hidden=8)


def shared_data_dir() -> Path:
    """``$XMODAL_SHARED_DATA``, else ``../shared/data`` beside the repository (see test/conftest.py)."""
    default = Path(__file__).resolve().parents[2].parent / 'shared' / 'data'
    return Path(os.environ.get('XMODAL_SHARED_DATA', default))


def kitti_frames(limit: int, root: Optional[Path] = None) -> List[SensorFrame]:
    """Up to ``limit`` real frames (the consecutive KITTI raw drive, else KITTI object); [] if absent."""
    from xmodal_compress_ros.data.kitti import KittiObjectDataset, KittiRawDrive

    root = shared_data_dir() if root is None else Path(root)
    raw = root / 'kitti_raw' / '2011_09_26'
    drives = sorted(raw.glob('*_sync')) if raw.is_dir() else []
    if drives:
        with warnings.catch_warnings():
            # The drive has no timestamp files; nominal 10 Hz stamps are fine for checks and timing.
            warnings.simplefilter('ignore', UserWarning)
            source = KittiRawDrive(drives[0], raw)
    elif (root / 'kitti_object').is_dir():
        source = KittiObjectDataset(root / 'kitti_object')
    else:
        return []
    return [source[i] for i in range(min(limit, len(source)))]


def synthetic_calibration(width: int, height: int) -> Calibration:
    """A KITTI-like rectified camera of ``width`` x ``height`` (focal length scaled with the width)."""
    focal = _KITTI_FOCAL_AT_1242 * width / 1242.0
    P = np.array([[focal, 0.0, width / 2.0, 0.0], [0.0, focal, height / 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return Calibration(width=width, height=height, K=P[:, :3], P=P, T_cam_lidar=_LIDAR_TO_CAMERA)


def synthetic_frame(width: int, height: int, seed: int = 0) -> SensorFrame:
    """A procedural camera image and LiDAR scan of a street-like scene."""
    rng = np.random.default_rng(seed)
    calib = synthetic_calibration(width, height)
    return SensorFrame(image=_texture(width, height, rng), points=_street_scan(rng), calib=calib,
                       name=f'synthetic-{width}x{height}-{seed}')


def frames_for(width: int, height: int, count: int, real: bool = True) -> Iterator[SensorFrame]:
    """``count`` frames of ``width`` x ``height``: real KITTI frames of this size, else synthetic ones."""
    frames = [f for f in kitti_frames(count) if f.image.shape[:2] == (height, width)] if real else []
    for i in range(count):
        yield frames[i % len(frames)] if frames else synthetic_frame(width, height, seed=i)


def _texture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour gradients plus blocky mid-frequency texture and mild noise, uint8 RGB."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([0.5 + 0.4 * np.sin(u / (37.0 + 10 * c) + c) * np.cos(v / (23.0 + 5 * c))
                      for c in range(3)], -1)
    blocks = rng.random((height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    image += 0.2 * (np.kron(blocks, np.ones((16, 16, 1), np.float32))[:height, :width] - 0.5)
    image += rng.normal(0.0, 0.02, image.shape).astype(np.float32)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _street_scan(rng: np.random.Generator, points_per_part: int = 30000) -> np.ndarray:
    """Ground plane, two side walls and boxes in the LiDAR frame (x forward, y left, z up), with intensity."""
    n = points_per_part
    ground = np.column_stack([rng.uniform(2, 70, n), rng.uniform(-20, 20, n), np.full(n, -1.73)])
    side = rng.choice([-1.0, 1.0], n)
    walls = np.column_stack([rng.uniform(2, 70, n), side * rng.uniform(8, 8.3, n), rng.uniform(-1.7, 6, n)])
    centres = rng.uniform([8, -6, -1.7], [40, 6, -1.7], (10, 3))
    boxes = centres[rng.integers(0, 10, n)] + rng.uniform([-1, -1, 0], [1, 1, 1.6], (n, 3))
    xyz = np.concatenate([ground, walls, boxes])
    intensity = rng.uniform(0.0, 1.0, (len(xyz), 1))
    return np.hstack([xyz, intensity]).astype(np.float32)


def committed_models() -> Optional[Tuple[str, str]]:
    """Absolute stems of the committed (LiDAR, twin) models, or None if either is missing."""
    stems = tuple(str(_REPO_ROOT / stem) for stem in DEFAULT_MODELS)
    return stems if all(Path(stem + '.json').is_file() for stem in stems) else None


def untrained_models(out_dir, config: Optional[Dict] = None, seed: int = 0,
                     post_filter_std: float = 0.0) -> Tuple[str, str]:
    """Write an untrained LiDAR model and its twin (``config``: constructor arguments, default
    architecture if None) to ``out_dir``; returns their stems. The LiDAR model starts as the twin.

    ``post_filter_std`` > 0 draws the last layer of a post filter (``config['post_filter']``) from a
    normal distribution: an untrained filter is the identity, which would test nothing."""
    import torch

    from xmodal_compress_ros.codec.model_io import save_model
    from xmodal_compress_ros.codec.models import HyperpriorCodec, LidarConditionedCodec

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    twin = HyperpriorCodec(**(config or {})).eval()
    lidar = LidarConditionedCodec(**(config or {})).eval()
    lidar.init_from_twin(twin)
    stems = (str(out_dir / 'untrained-lidar'), str(out_dir / 'untrained-hyperprior'))
    for model, stem in ((lidar, stems[0]), (twin, stems[1])):
        if post_filter_std > 0:
            torch.nn.init.normal_(model.post_filter.tail.weight, std=post_filter_std)
        model.update()
        save_model(model, stem, {'trained': False})
    return stems


def untrained_pframe_model(out_dir, intra_stem: str, ctx_ch: Tuple[int, int, int] = (8, 8, 8)) -> str:
    """Write an untrained P-frame model started from the image-only model ``intra_stem`` to
    ``out_dir``; returns its stem. :meth:`PredictiveCodec.init_from_intra` leaves every path from the
    reference at zero; here the mean refiner and g_s's refinement are drawn at random, so that the
    reference moves the means and the image as a trained model's does (else tests of what a wrong
    reference changes would test nothing)."""
    import torch

    from xmodal_compress_ros.codec.model_io import load_model, save_model
    from xmodal_compress_ros.codec.predictive import PredictiveCodec

    intra = load_model(intra_stem)
    model = PredictiveCodec(**intra.config, ctx_ch=ctx_ch).eval()
    model.init_from_intra(intra)
    generator = torch.Generator().manual_seed(28)
    with torch.no_grad():
        for weight in (model.hyper_refiner.weight, model.g_s.refine.weight):
            weight.copy_(0.05 * torch.randn(weight.shape, generator=generator))
    model.update()
    stem = str(Path(out_dir) / 'untrained-pframe')
    save_model(model, stem, {'trained': False})
    return stem


def crop_frame(frame: SensorFrame, width: int, height: int) -> SensorFrame:
    """The bottom-centre ``width`` x ``height`` window of a frame (where the LiDAR points are), with
    the calibration moved accordingly (``P' = S @ P``, S shifting the principal point)."""
    full_h, full_w = frame.image.shape[:2]
    u0, v0 = (full_w - width) // 2, full_h - height
    shift = np.array([[1.0, 0.0, -u0], [0.0, 1.0, -v0], [0.0, 0.0, 1.0]])
    P = shift @ frame.calib.P
    calib = Calibration(width=width, height=height, K=shift @ frame.calib.K, P=P,
                        T_cam_lidar=frame.calib.T_cam_lidar, R_rect=frame.calib.R_rect)
    return SensorFrame(image=np.ascontiguousarray(frame.image[v0:, u0:u0 + width]), points=frame.points,
                       calib=calib, image_stamp_ns=frame.image_stamp_ns, lidar_stamp_ns=frame.lidar_stamp_ns,
                       name=f'{frame.name}-crop{width}x{height}')
