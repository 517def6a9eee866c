"""Decoder-side restoration of g_s's output: a small residual network, conditioned on the quality level.

It runs after g_s on every backend and never sees the LiDAR scan: bench/lidar_postfilter.py trained
the same network with and without the scan's depth and reflectance maps, and the scan did not help
(docs/method.md). Like g_s it only changes the reconstruction, never how a symbol is parsed.

The work runs at half resolution (pixel-unshuffle by 2), where 3x3 convolutions see a 6x6-pixel
neighbourhood for a quarter of the cost. The last convolution starts at zero, so a filter that has not
been trained returns g_s's output unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from xmodal_compress_ros.codec.layers import ResidualBlock, conv


class PostFilter(nn.Module):
    """``x_hat + correction(x_hat, quality plane)``.

    Args:
        channels: channels of the half-resolution residual blocks.
        blocks: number of residual blocks.
        side_channels: extra full-resolution input planes (none in the codec; bench/lidar_postfilter.py
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

    def forward(self, x_hat: torch.Tensor, quality: torch.Tensor,
                side: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x_hat``: (B, 3, H, W) with even H and W; ``quality``: (B, 1) in [0, 1] (level / top level);
        ``side``: (B, side_channels, H, W) when the filter has side channels."""
        height, width = x_hat.shape[-2:]
        plane = quality.to(x_hat.dtype).reshape(-1, 1, 1, 1).expand(-1, 1, height, width)
        inputs = [x_hat, plane] if side is None else [x_hat, plane, side]
        features = self.body(self.head(F.pixel_unshuffle(torch.cat(inputs, dim=1), 2)))
        return x_hat + F.pixel_shuffle(self.tail(features), 2)
