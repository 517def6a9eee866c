"""The P-frame codec: one image coded conditionally on the previous decoded frame, aligned to its view.

Conditional coding as in DCVC (Li et al. 2021): the decoder already holds the previous decoded frame,
and :mod:`geometry.warp` aligns it to the current view with the current scan's depth and the
ego-motion the packet carries (the pipeline then moves its blocks by the coarse block motion the
packet carries, :mod:`geometry.block_motion`); the codec also analyses it into ``y_ref`` for the
encoder's latent prediction (:mod:`codec.latent_prediction`)::

    reference (aligned previous decoded frame, validity) ──> TemporalContext ──> c1, c2, c3, c_hyper
    x ──> g_a(x; c1, c2, c3) ──> y ──> ... the intra codec's latent path ...
    x_hat <── post filter(q; reference) <── g_s(y_hat; c3, c2, c1)

The scale index of every symbol still comes from ``z_hat`` through the integer path (moved down by
integers the packet carries): the reference moves the means and the reconstruction, never how a
symbol parses, so a P packet parses identically with a wrong, missing or garbage reference.

:meth:`PredictiveCodec.init_from_intra` starts from a trained intra codec with every path from the
reference silent, so step 0 codes exactly as the intra codec does; training then opens those paths.
(A residual start, g_a coding ``x - reference``, was measured worse: the warp predicts a real drive
at about 21 dB, and such residuals are far from what the intra transforms learned; see
docs/temporal_coding.md.)
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from xmodal_compress_ros.codec.layers import conv
from xmodal_compress_ros.codec.models import (DEFAULT_LAMBDAS, HyperpriorCodec, LidarContext,
                                              pad_to_multiple, register_model)
from xmodal_compress_ros.codec.post_filter import PostFilter
from xmodal_compress_ros.errors import ModelFileError

#: Planes of the reference input, uint8-valued like the LiDAR model's depth map: the aligned frame's
#: RGB (0..255) and its validity (0 or 255).
REFERENCE_CHANNELS = 4


class TemporalContext(nn.Module):
    """Multi-scale context from the aligned reference: c1 (1/1), c2 (1/2), c3 (1/4), c_hyper (1/16).

    c1 leads with the masked reference itself, so the transforms can copy it without learning to.
    """

    def __init__(self, ctx: Tuple[int, int, int], hyper_ch: int):
        super().__init__()
        self.c1 = conv(REFERENCE_CHANNELS, ctx[0], 3, 1)
        self.c2 = conv(ctx[0], ctx[1], 3)
        self.c3 = conv(ctx[1], ctx[2], 3)
        self.hyper = nn.Sequential(conv(ctx[2], hyper_ch, 3), nn.LeakyReLU(0.1), conv(hyper_ch, hyper_ch, 3))

    def forward(self, reference: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        valid = reference[:, 3:4]
        masked = reference[:, :3] * valid
        f1 = F.leaky_relu(self.c1(torch.cat([masked, valid], dim=1)), 0.1)
        c2 = F.leaky_relu(self.c2(f1), 0.1)
        c3 = F.leaky_relu(self.c3(c2), 0.1)
        return torch.cat([masked, f1], dim=1), c2, c3, self.hyper(c3)


@register_model('xmodal-pframe')
class PredictiveCodec(HyperpriorCodec):
    """The intra codec's transforms and latent path, conditioned on the aligned previous decoded frame.

    Args (beyond :class:`HyperpriorCodec`):
        ctx_ch: channels of the learned features at 1, 1/2 and 1/4 resolution (c1 adds the 3
            reference planes to the first).
    """

    registry_name = 'xmodal-pframe'
    uses_lidar = False
    condition_name = 'reference'
    condition_channels = REFERENCE_CHANNELS

    def __init__(self, N: int = 48, M: int = 128, Nz: int = 64, hyper_hidden: int = 64,
                 lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS, post_filter: Tuple[int, int] = (0, 0),
                 quality_planes: Optional[Sequence[float]] = None,
                 ctx_ch: Tuple[int, int, int] = (8, 32, 32)):
        self._ctx_ch = tuple(int(c) for c in ctx_ch)
        super().__init__(N, M, Nz, hyper_hidden, lambdas, post_filter, quality_planes)
        self.config['ctx_ch'] = list(self._ctx_ch)
        self.temporal = TemporalContext(self._ctx_ch, M // 4)
        self.hyper_refiner = conv(M + M // 4, M, 3, 1)
        nn.init.zeros_(self.hyper_refiner.weight)
        nn.init.zeros_(self.hyper_refiner.bias)
        if self.post_filter is not None:
            # The filter sees the reference too: where the warp holds, it is a sharper copy.
            self.post_filter = PostFilter(*post_filter, side_channels=REFERENCE_CHANNELS)

    def _context_channels(self) -> Tuple[int, int, int]:
        return (3 + self._ctx_ch[0], self._ctx_ch[1], self._ctx_ch[2])

    def context(self, reference: Optional[torch.Tensor], like: torch.Tensor) -> LidarContext:
        """``reference``: (B, 4, H, W), the aligned frame and its validity; None = no reference (all
        invalid: the codec then codes the image alone, at a higher rate)."""
        b, _, h, w = like.shape
        if reference is None:
            reference = like.new_zeros(b, REFERENCE_CHANNELS, h, w)
        else:
            reference = pad_to_multiple(reference.to(like.dtype), 'constant') / 255.0
            if reference.shape[-2:] != (h, w) or reference.shape[:2] != (b, REFERENCE_CHANNELS):
                raise ValueError(f'reference {tuple(reference.shape)} does not match image '
                                 f'{tuple(like.shape)} '
                                 f'with {REFERENCE_CHANNELS} planes')
        c1, c2, c3, c_hyper = self.temporal(reference)
        return LidarContext(c1, c2, c3, c_hyper, reference)

    def mean(self, z_hat: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        mu = self.h_s_mean(z_hat)
        if ctx is not None:
            mu = mu + self.hyper_refiner(torch.cat([mu, ctx.c_hyper], dim=1))
        return mu

    def reference_latent(self, ctx: LidarContext, gain: torch.Tensor) -> torch.Tensor:
        """``y_ref``: the aligned reference analysed as the image is (same context, gain (B, M)), so
        that a reference equal to the image gives the image's latent (codec.latent_prediction)."""
        return self.g_a(ctx.prediction[:, :3], ctx) * gain[:, :, None, None]

    def restore(self, x_hat: torch.Tensor, plane: torch.Tensor,
                ctx: Optional[LidarContext] = None) -> torch.Tensor:
        if self.post_filter is None:
            return x_hat
        side = ctx.prediction if ctx is not None else x_hat.new_zeros(
            x_hat.shape[0], REFERENCE_CHANNELS, *x_hat.shape[-2:])
        return self.post_filter(x_hat, plane, side)

    @torch.no_grad()
    def init_from_intra(self, intra: HyperpriorCodec) -> None:
        """Start from a trained image-only codec, coding exactly as it does whatever the reference.

        Every tensor of ``intra`` is copied; the inputs the reference widened (concatenated context,
        the filter's side planes), the mean refiner and g_s's full-resolution refinement start at zero.
        """
        if intra.condition_name is not None or type(intra) is not HyperpriorCodec:
            raise ModelFileError('init_from_intra needs an image-only '
                                 f'{HyperpriorCodec.registry_name} model, '
                                 f'got {intra.registry_name}')
        own = self.state_dict()
        for name, tensor in intra.state_dict().items():
            if name not in own:
                raise ModelFileError(f'intra tensor {name} has no counterpart in the P-frame model')
            target = own[name]
            if target.shape == tensor.shape:
                target.copy_(tensor)
                continue
            # Concat fusion and the filter's side planes widened an input dimension.
            module = self.get_submodule(name.rsplit('.', 1)[0])
            dim = 1 if isinstance(module, nn.Conv2d) else 0
            target.zero_()
            # The filter's pixel-unshuffled input leads with the image's (4 planes x 4) channels, as
            # concat fusion leads with the transform's own: the intra weights fill the front.
            target.narrow(dim, 0, tensor.shape[dim]).copy_(tensor)
