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
* A convolution of concatenated features and context (the ``concat`` fusion of g_a and g_s, in the
  LiDAR and P-frame models) -> :class:`SplitInputConv`, one convolution per part, summed:
  ``conv(cat(a, b)) = conv_a(a) + conv_b(b)``. The concatenation is a copy of both inputs (at half
  resolution 80 channels, 40 ms of one core on the development VM, a sixth of a fast P-frame decode
  in all); the sum touches only the output, which has fewer channels or a quarter of the pixels.
"""
from __future__ import annotations

import copy
from typing import Dict, List

import torch
import torch.nn as nn

from xmodal_compress_ros.codec.layers import GDN, ConcatFusion
from xmodal_compress_ros.codec.models import AnalysisTransform, SynthesisTransform


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


class Parts(tuple):
    """(features, context): a concatenation left undone for the :class:`SplitInputConv` that reads it."""


class DeferredConcat(nn.Module):
    """:class:`~xmodal_compress_ros.codec.layers.ConcatFusion` without the copy: hands both parts on."""

    def forward(self, image_feat: torch.Tensor, context: torch.Tensor) -> Parts:
        return Parts((image_feat, context))


class SplitInputConv(nn.Module):
    """``layer`` (Conv2d, ConvTranspose2d, or a phase form: Conv2d then PixelShuffle) applied to
    ``cat(a, b)`` as the sum of its two input slices applied to ``a`` and to ``b``; a tensor already
    concatenated is split at ``first_channels`` first."""

    def __init__(self, layer: nn.Module, first_channels: int):
        super().__init__()
        self.first_channels = first_channels
        conv, self.shuffle = (layer[0], layer[1]) if isinstance(layer, nn.Sequential) else (layer, None)
        axis = 0 if isinstance(conv, nn.ConvTranspose2d) else 1  # the weight's input-channel axis
        self.first, self.second = copy.deepcopy(conv), copy.deepcopy(conv)
        self.second.bias = None
        sizes = [first_channels, conv.weight.shape[axis] - first_channels]
        with torch.no_grad():
            for part, weight in zip((self.first, self.second), conv.weight.split(sizes, dim=axis)):
                part.weight = nn.Parameter(weight.clone(), requires_grad=False)
                part.in_channels = weight.shape[axis]

    def forward(self, x):
        if not isinstance(x, Parts):
            x = x.split([self.first_channels, x.shape[1] - self.first_channels], dim=1)
        a, b = x
        out = self.first(a).add_(self.second(b))
        return out if self.shuffle is None else self.shuffle(out)


def _split_fused_inputs(module: nn.Module) -> None:
    """Every concat fusion of ``module`` (g_a or g_s) and the layer that reads it -> split form."""
    if isinstance(module, AnalysisTransform):
        readers = [('conv1', 3), ('conv2', module.conv1.out_channels), ('conv3', module.conv2.out_channels)]
    else:
        readers = [('deconv3', module.deconv2.out_channels), ('deconv4', module.deconv3.out_channels)]
    for fusion, (name, channels) in enumerate(readers):
        if type(module.fusions[fusion]) is ConcatFusion:
            module.fusions[fusion] = DeferredConcat()
            setattr(module, name, SplitInputConv(getattr(module, name), channels))


def prepare_for_cpu(model: nn.Module) -> nn.Module:
    """Rewrites ``model`` in place for CPU inference (see the module docstring) and returns it:
    every diagonal GDN, the last transposed convolution of every g_s, and the convolutions of
    concatenated context."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GDN) and is_diagonal(child):
                setattr(parent, name, DiagonalGDN(child))
    for module in list(model.modules()):
        if isinstance(module, SynthesisTransform) and isinstance(module.deconv4, nn.ConvTranspose2d):
            module.deconv4 = phase_conv_transpose(module.deconv4)
    for module in list(model.modules()):
        if isinstance(module, (AnalysisTransform, SynthesisTransform)):
            _split_fused_inputs(module)
    return model
