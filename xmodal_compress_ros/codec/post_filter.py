"""Decoder-side restoration of g_s's output: a small residual network, conditioned on the quality level.

It runs after g_s on every backend and never sees the LiDAR scan: research/lidar_postfilter.py trained
the same network with and without the scan's depth and reflectance maps, and the scan did not help
(docs/method.md). Like g_s it only changes the reconstruction, never how a symbol is parsed.

The work runs at half resolution (pixel-unshuffle by 2), where 3x3 convolutions see a 6x6-pixel
neighbourhood for a quarter of the cost. The last convolution starts at zero, so a filter that has not
been trained returns g_s's output unchanged.

A decoder with time to spare may average the filter over several views of the same image (a
self-ensemble; Timofte et al. 2016, Lim et al. 2017): the image shifted by one pixel against the
pixel-unshuffle grid, and mirrored left to right as in training. Each view sees a different
half-resolution grid, so their errors differ and the average is closer to the image (docs/method.md).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from xmodal_compress_ros.codec.layers import ResidualBlock, conv

#: The self-ensemble's views, in the order they are added: (rows shifted, columns shifted, mirrored).
ENSEMBLE_VIEWS = ((0, 0, False), (1, 1, True), (1, 1, False), (0, 0, True),
                  (0, 1, False), (1, 0, True), (1, 0, False), (0, 1, True))
#: The view counts a decoder may choose (1: the filter alone).
ENSEMBLE_SIZES = (1, 2, 4, 8)


def check_views(views: int) -> int:
    """``views`` as an int if it is one of :data:`ENSEMBLE_SIZES`, else ValueError."""
    if isinstance(views, bool) or int(views) != views or int(views) not in ENSEMBLE_SIZES:
        raise ValueError(f'post filter views must be one of {", ".join(map(str, ENSEMBLE_SIZES))}, '
                         f'got {views!r}')
    return int(views)


class PostFilter(nn.Module):
    """``x_hat + correction(x_hat, quality plane)``.

    Args:
        channels: channels of the half-resolution residual blocks.
        blocks: number of residual blocks.
        side_channels: extra full-resolution input planes (none in the codec; research/lidar_postfilter.py
            feeds the scan's maps through them to test whether the scan helps this network).
    """

    def __init__(self, channels: int = 32, blocks: int = 4, side_channels: int = 0):
        super().__init__()
        if channels < 1 or blocks < 0 or side_channels < 0:
            raise ValueError(f'post filter needs channels >= 1, blocks >= 0 and side_channels >= 0, got '
                             f'{channels}, {blocks}, {side_channels}')
        self.head = conv((4 + side_channels) * 4, channels, 3, 1)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.tail = conv(channels, 3 * 4, 3, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # Not a weight: how many views the decoder averages (set on a copy by
        # HyperpriorCodec.with_post_filter_views; training always runs one).
        self.views = 1

    def forward(self, x_hat: torch.Tensor, quality: torch.Tensor,
                side: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x_hat``: (B, 3, H, W) with even H and W; ``quality``: (B, 1) in [0, 1] (level / top level);
        ``side``: (B, side_channels, H, W) when the filter has side channels."""
        if self.views == 1:
            return self._filter(x_hat, quality, side)
        outputs = [self._view(x_hat, quality, side, *view) for view in ENSEMBLE_VIEWS[:self.views]]
        return torch.stack(outputs).mean(dim=0)

    def _view(self, x_hat: torch.Tensor, quality: torch.Tensor, side: Optional[torch.Tensor],
              rows: int, columns: int, mirrored: bool) -> torch.Tensor:
        """The filter on ``x_hat`` shifted by (rows, columns) pixels and mirrored, mapped back."""
        inputs = x_hat if side is None else torch.cat([x_hat, side], dim=1)
        if mirrored:
            inputs = inputs.flip(-1)
        if rows or columns:
            # One pixel each side moves the grid by one and keeps the size even for pixel-unshuffle.
            inputs = F.pad(inputs, (columns, columns, rows, rows), mode='replicate')
        image, rest = inputs[:, :3], (inputs[:, 3:] if side is not None else None)
        out = self._filter(image, quality, rest)
        if rows or columns:
            out = out[..., rows:rows + x_hat.shape[-2], columns:columns + x_hat.shape[-1]]
        return out.flip(-1) if mirrored else out

    def _filter(self, x_hat: torch.Tensor, quality: torch.Tensor,
                side: Optional[torch.Tensor] = None) -> torch.Tensor:
        height, width = x_hat.shape[-2:]
        plane = quality.to(x_hat.dtype).reshape(-1, 1, 1, 1).expand(-1, 1, height, width)
        inputs = [x_hat, plane] if side is None else [x_hat, plane, side]
        features = self.body(self.head(F.pixel_unshuffle(torch.cat(inputs, dim=1), 2)))
        return x_hat + F.pixel_shuffle(self.tail(features), 2)
