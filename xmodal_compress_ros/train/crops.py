"""Training frames held in memory as uint8, and random aligned crops of image and condition map."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, NamedTuple, Tuple

import numpy as np
import torch

from xmodal_compress_ros.errors import DatasetError


class Batch(NamedTuple):
    """Crops of a :class:`FrameBank`: images (B, 3, c, c) in [0, 1], condition maps (B, C, c, c) holding
    uint8 values 0..255, and each crop's quality level (B,) int64, -1 where its frame has none."""

    x: torch.Tensor
    condition: torch.Tensor
    levels: torch.Tensor


@dataclass
class FrameBank:
    """Images (H, W, 3) uint8 RGB and their condition maps, uint8 (H, W) depth maps or (H, W, C) planes
    (a P-frame's aligned reference), with names and, for maps made at one quality level (a decoded
    reference), that level (-1: any level)."""

    images: List[np.ndarray] = field(default_factory=list)
    depths: List[np.ndarray] = field(default_factory=list)
    names: List[str] = field(default_factory=list)
    levels: List[int] = field(default_factory=list)

    @classmethod
    def from_frames(cls, frames: Iterable) -> 'FrameBank':
        """Project every :class:`SensorFrame`'s scan once, on the full frame."""
        from xmodal_compress_ros.geometry.projection import depth_condition

        bank = cls()
        for frame in frames:
            bank.add(frame.image, depth_condition(frame.points, frame.calib), frame.name)
        return bank

    def add(self, image: np.ndarray, depth: np.ndarray, name: str, level: int = -1) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(f'frame {name}: image must be HxWx3 uint8, got {image.shape} {image.dtype}')
        if depth.shape[:2] != image.shape[:2] or depth.ndim not in (2, 3) or depth.dtype != np.uint8:
            raise DatasetError(f'frame {name}: condition map {depth.shape} {depth.dtype} '
                               'must be uint8 of the '
                               f'image size {image.shape[:2]}')
        if self.depths and depth.shape[2:] != self.depths[0].shape[2:]:
            raise DatasetError(f'frame {name}: condition map {depth.shape} has other planes than the '
                               f'bank\'s {self.depths[0].shape}')
        self.images.append(np.ascontiguousarray(image))
        self.depths.append(np.ascontiguousarray(depth))
        self.names.append(name)
        self.levels.append(int(level))

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
            h, w = self.depths[k].shape[:2]
            if h < crop or w < crop:
                raise DatasetError(f'frame {self.names[k]} ({w}x{h}) is smaller than the crop {crop}: '
                                   'use a smaller --crop')
            top, left = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            out.append((k, top, left, bool(rng.random() < 0.5)))
        return out

    def draw_levels(self, draws: List[Tuple[int, int, int, bool]]) -> torch.Tensor:
        """The quality level of each drawn crop's frame (-1: any)."""
        return torch.tensor([self.levels[k] for k, _, _, _ in draws], dtype=torch.int64)

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> Batch:
        """``batch`` random ``crop`` x ``crop`` crops (random frames, offsets, horizontal flips); image and
        map are cut and flipped together."""
        draws = self.draws(batch, crop, rng)
        xs = np.empty((batch, crop, crop, 3), dtype=np.uint8)
        ds = np.empty((batch, crop, crop) + self.depths[0].shape[2:], dtype=np.uint8)
        for i, (k, top, left, flip) in enumerate(draws):
            xi = self.images[k][top:top + crop, left:left + crop]
            di = self.depths[k][top:top + crop, left:left + crop]
            xs[i], ds[i] = (xi[:, ::-1], di[:, ::-1]) if flip else (xi, di)
        x = torch.from_numpy(xs).permute(0, 3, 1, 2).float() / 255.0
        d = torch.from_numpy(ds).float()
        d = d[:, None] if d.dim() == 3 else d.permute(0, 3, 1, 2)
        return Batch(x, d, self.draw_levels(draws))


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

    def sample(self, batch: int, crop: int, rng: np.random.Generator) -> Batch:
        crops = []
        draws = self.bank.draws(batch, crop, rng)
        for k, top, left, flip in draws:
            c = self.frames[k][:, top:top + crop, left:left + crop]
            crops.append(c.flip(-1) if flip else c)
        both = torch.stack(crops).float()
        return Batch(both[:, :3] / 255.0, both[:, 3:], self.bank.draw_levels(draws).to(self.device))
