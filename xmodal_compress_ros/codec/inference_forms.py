"""Inference-time rewrites of trained layers into forms that compute the same function faster on a CPU.

The model files and training keep the layers as they are (:class:`~xmodal_compress_ros.codec.layers.GDN`,
``nn.ConvTranspose2d``); a backend applies :func:`prepare_for_cpu` to its own copy of a loaded model.
Results change by float rounding at most, never what a symbol parses to (that path is integer).

* GDN/IGDN with a diagonal ``gamma`` -> :class:`DiagonalGDN`, elementwise: ``x * sqrt(beta + g * x^2)``.
  GDN stores ``gamma = gamma_sqrt^2`` and initialises ``gamma_sqrt`` to a scaled identity: the gradient
  of ``gamma_sqrt^2`` is zero wherever ``gamma_sqrt`` is zero, so the off-diagonal entries never leave
  zero in training and every trained GDN is diagonal. The 1x1 convolution then adds exact zeros; the
  elementwise form skips them (the same bits on oneDNN) and runs 2-3x faster at g_s's half resolution.
* g_s's last transposed convolution (5x5, stride 2, to 3 channels at full resolution) ->
  :func:`phase_conv_transpose`, a 3x3 convolution to 4x the channels and a pixel shuffle: oneDNN runs
  that 1.5x faster in NHWC and 2.5x in NCHW than the transposed convolution (bench/bench_gs.py). The
  other transposed convolutions of g_s (48 channels out) are faster as they are, so they stay.
"""
from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn as nn

from xmodal_compress_ros.codec.layers import GDN
from xmodal_compress_ros.codec.models import SynthesisTransform


class DiagonalGDN(nn.Module):
    """GDN (or IGDN) with a diagonal ``gamma``, evaluated elementwise; for inference only (in-place ops)."""

    def __init__(self, gdn: GDN):
        super().__init__()
        self.inverse = gdn.inverse
        with torch.no_grad():
            channels = gdn.beta_sqrt.shape[0]
            shape = (1, channels, 1, 1)
            self.register_buffer('beta', (gdn.beta_sqrt ** 2 + 1e-6).reshape(shape).clone())
            self.register_buffer('gamma', torch.diagonal(gdn.gamma_sqrt ** 2).reshape(shape).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The order of GDN's 1x1 convolution (x^2 * gamma, then + beta), in one buffer.
        norm = x * x
        norm.mul_(self.gamma).add_(self.beta)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(x)


def is_diagonal(gdn: GDN) -> bool:
    """True if every off-diagonal entry of ``gdn``'s ``gamma`` is zero."""
    gamma_sqrt = gdn.gamma_sqrt.detach()
    return bool(torch.count_nonzero(gamma_sqrt - torch.diag(torch.diagonal(gamma_sqrt))) == 0)


def phase_taps(kernel: int, stride: int, padding: int) -> Dict[int, List[int]]:
    """For a transposed convolution whose output is ``stride`` times its input: per output phase ``r``
    (output index ``stride * Y + r``), the input offsets ``m`` it reads (input index ``Y + m``), each
    through kernel tap ``r + padding - stride * m``."""
    return {r: [m for m in range(-kernel, kernel + 1) if 0 <= r + padding - stride * m < kernel]
            for r in range(stride)}


def phase_conv_transpose(deconv: nn.ConvTranspose2d) -> nn.Sequential:
    """``deconv`` (square kernel and stride, output ``stride`` times the input, no groups or dilation,
    input offsets symmetric about 0) as ``Conv2d`` to ``stride^2`` times the output channels and
    ``PixelShuffle(stride)``: output channel ``o * stride^2 + ry * stride + rx`` of the convolution is
    phase (ry, rx) of channel ``o``. ValueError for other transposed convolutions."""
    kernel, stride, padding = deconv.kernel_size[0], deconv.stride[0], deconv.padding[0]
    square = deconv.kernel_size[1] == kernel and deconv.stride[1] == stride and deconv.padding[1] == padding
    doubles = kernel + deconv.output_padding[0] - 2 * padding == stride == kernel + deconv.output_padding[1] \
        - 2 * padding
    taps = phase_taps(kernel, stride, padding)
    reach = max(abs(m) for offsets in taps.values() for m in offsets)
    symmetric = min(m for offsets in taps.values() for m in offsets) == -reach
    if not (square and doubles and symmetric and deconv.groups == 1 and deconv.dilation == (1, 1)):
        raise ValueError(f'no phase form for {deconv}')
    weight = deconv.weight.detach()  # (in, out, k, k)
    in_ch, out_ch = weight.shape[:2]
    size = 2 * reach + 1
    phases = weight.new_zeros(out_ch, stride, stride, in_ch, size, size)
    for ry, rows in taps.items():
        for rx, cols in taps.items():
            for my in rows:
                for mx in cols:
                    ky, kx = ry + padding - stride * my, rx + padding - stride * mx
                    phases[:, ry, rx, :, my + reach, mx + reach] = weight[:, :, ky, kx].t()
    conv = nn.Conv2d(in_ch, out_ch * stride * stride, size, padding=reach, bias=deconv.bias is not None)
    conv = conv.to(weight)
    with torch.no_grad():
        conv.weight.copy_(phases.reshape(out_ch * stride * stride, in_ch, size, size))
        if deconv.bias is not None:
            conv.bias.copy_(deconv.bias.detach().repeat_interleave(stride * stride))
    return nn.Sequential(conv, nn.PixelShuffle(stride))


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Rewrites ``model`` in place for CPU inference (see the module docstring) and returns it:
    every diagonal GDN, and the last transposed convolution of every g_s."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GDN) and is_diagonal(child):
                setattr(parent, name, DiagonalGDN(child))
    for module in list(model.modules()):
        if isinstance(module, SynthesisTransform) and isinstance(module.deconv4, nn.ConvTranspose2d):
            module.deconv4 = phase_conv_transpose(module.deconv4)
    return model
