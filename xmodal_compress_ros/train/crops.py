"""Training frames held in memory as uint8, and random aligned crops of image and depth map."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Tuple

import numpy as np
import torch

from xmodal_compress_ros.errors import DatasetError


@dataclass
class FrameBank:
    """Images (H, W, 3) uint8 RGB and their depth-condition maps (H, W) uint8, with names."""

    images: List[np.ndarray] = field(default_factory=list)
    depths: List[np.ndarray] = field(default_factory=list)
    names: List[str] = field(default_factory=list)

    @classmethod
    def from_frames(cls, frames: Iterable) -> 'FrameBank':
        """Project every :class:`SensorFrame`'s scan once, on the full frame."""
        from xmodal_compress_ros.geometry.projection import depth_condition

        bank = cls()
        for frame in frames:
            bank.add(frame.image, depth_condition(frame.points, frame.calib), frame.name)
        return bank

    def add(self, image: np.ndarray, depth: np.ndarray, name: str) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(f'frame {name}: image must be HxWx3 uint8, got {image.shape} {image.dtype}')
        if depth.shape != image.shape[:2] or depth.dtype != np.uint8:
            raise DatasetError(f'frame {name}: depth map {depth.shape} {depth.dtype} must be uint8 of the '
                               f'image size {image.shape[:2]}')
        self.images.append(np.ascontiguousarray(image))
        self.depths.append(np.ascontiguousarray(depth))
        self.names.append(name)

    def __len__(self) -> int:
        return len(self.images)

    def resident(self, device: str) -> 'ResidentFrames':
        """The frames copied once to ``device`` (a GPU keeps its training data there, no per-step upload)."""
        return ResidentFrames(self, device)

    def draws(self, batch: int, crop: int, rng: np.random.Generator) -> List[Tuple[int, int, int, bool]]:
        """``batch`` random (frame, top, left, flip) crop positions; the only use of ``rng`` in sampling."""
        if not self.images:
            raise DatasetError('no training frames: give at least one --data source with frames')
        out = []
        for _ in range(batch):
            k = int(rng.integers(len(self.images)))
            h, w = self.depths[k].shape
            if h < crop or w < crop:
                raise DatasetError(f'frame {self.names[k]} ({w}x{h}) is smaller than the crop {crop}: '
                                   'use a smaller --crop')
            top, left = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            out.append((k, top, left, bool(rng.random() < 0.5)))
        return out

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``batch`` random ``crop`` x ``crop`` crops (random frames, offsets, horizontal flips).

        Returns images (B, 3, crop, crop) float in [0, 1] and depth maps (B, 1, crop, crop) float
        holding the uint8 values 0..255; image and map are cut and flipped together.
        """
        draws = self.draws(batch, crop, rng)
        xs = np.empty((batch, crop, crop, 3), dtype=np.uint8)
        ds = np.empty((batch, crop, crop), dtype=np.uint8)
        for i, (k, top, left, flip) in enumerate(draws):
            xi = self.images[k][top:top + crop, left:left + crop]
            di = self.depths[k][top:top + crop, left:left + crop]
            xs[i], ds[i] = (xi[:, ::-1], di[:, ::-1]) if flip else (xi, di)
        x = torch.from_numpy(xs).permute(0, 3, 1, 2).float() / 255.0
        d = torch.from_numpy(ds)[:, None].float()
        return x, d


class ResidentFrames:
    """A :class:`FrameBank` held on a device as uint8 tensors; crops are cut there.

    ``sample`` draws the same positions from ``rng`` as :meth:`FrameBank.sample` and returns the same
    values, on ``device``.
    """

    def __init__(self, bank: FrameBank, device: str):
        self.bank = bank
        self.device = torch.device(device)
        # (4, H, W): RGB and the depth map stacked, so one slice cuts both.
        self.frames = [torch.from_numpy(np.dstack([img, dep])).permute(2, 0, 1).to(self.device)
                       for img, dep in zip(bank.images, bank.depths)]

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        crops = []
        for k, top, left, flip in self.bank.draws(batch, crop, rng):
            c = self.frames[k][:, top:top + crop, left:left + crop]
            crops.append(c.flip(-1) if flip else c)
        both = torch.stack(crops).float()
        return both[:, :3] / 255.0, both[:, 3:]
