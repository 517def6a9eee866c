"""Encoder-side latent refinement: encoder time traded for fewer bits at the same quality.

One analysis network serves every image, so the latent ``y_g`` it produces is not the one that
trades this image's rate and distortion best under the fixed decoder (the amortisation gap; Campos
et al., "Content Adaptive Optimization for Neural Image Compression", CVPR-W 2019; Yang et al.,
"Improving Inference for Neural Image Compression", NeurIPS 2020). A few gradient steps on ``y_g``
close part of the gap.

Neither the decoder nor the bitstream changes: ``z`` stays as the analysis made it, so the integer
scale indexes (which decide how each symbol is parsed) and the means are those of the unrefined
encode, and the refined ``y_g`` is coded by :func:`encode_latents` like any other. Refining ``z`` too
would need gradients through the integer scale path; it is left out.

The objective is the training loss of the quality level, ``lambda * 255^2 * MSE + bpp``, with the
scales the coder will use. Plain straight-through rounding gives poor gradients here (the objective
moved less than 1 % in trials); the latent is optimised through stochastic Gumbel annealing (SGA,
Yang et al. 2020): each residual is a soft, random mix of its floor and ceiling, more likely the
nearer one, hardening as the temperature falls. Every few steps the iterate is scored with the real
rounding, and the best one is kept, the unrefined latent included: refinement never makes the
objective worse. The Gumbel noise comes from a generator seeded per call, so the same image, model
and settings give the same bytes.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from xmodal_compress_ros.codec.integer_hyper import scale_table
from xmodal_compress_ros.codec.latent_coding import quantise_hyper_latent
from xmodal_compress_ros.codec.layers import gaussian_likelihood, ste_round

#: Adam's step on y_g (whose quantisation step is 1) and the SGA temperature's geometric schedule: the
#: best of a small grid on KITTI crops (0.02 - 0.05, end temperature 0.05 - 0.2) at 20 - 100 steps.
DEFAULT_LEARNING_RATE = 0.02
TEMPERATURE = (0.5, 0.2)
#: Steps between scorings of the iterate with real rounding (each costs a synthesis pass).
SCORE_EVERY = 5
#: Refinement steps are capped: each costs one synthesis pass forward and back.
MAX_STEPS = 1000
_EPS = 1e-5


def check_steps(steps) -> int:
    """``steps`` as an int in 0..MAX_STEPS, else ValueError."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps <= MAX_STEPS:
        raise ValueError(f'refinement steps must be an integer in 0..{MAX_STEPS}, got {steps!r}')
    return int(steps)


def refine_latent(model, x: torch.Tensor, y_g: torch.Tensor, z: np.ndarray, tables, quality: int, ctx,
                  steps: int, size: Tuple[int, int]) -> torch.Tensor:
    """The refined gained latent, same shape, dtype and device as ``y_g``.

    Args:
        model: the codec (its float synthesis, means and integer tables run in PyTorch).
        x: the padded image (1, 3, Hp, Wp) in [0, 1] that ``y_g`` encodes.
        y_g: the analysis output (1, M, Hp/16, Wp/16).
        z: the hyper-latent from the analysis (float NumPy); it is quantised as the coder quantises it.
        tables: the model's entropy tables (their integer scale path gives the coder's scales).
        quality: the quality level (its lambda weighs distortion against rate).
        ctx: the LiDAR context of the encode (None for the twin).
        steps: gradient steps (0 returns ``y_g`` unchanged).
        size: the original (H, W); padding does not count in the distortion.
    """
    steps = check_steps(steps)
    if steps == 0:
        return y_g
    device, dtype = y_g.device, y_g.dtype
    _, _, int_hyper = tables
    z_hat = quantise_hyper_latent(z, tables)
    scales = torch.from_numpy(scale_table()[int_hyper(z_hat)]).to(device, torch.float32)
    quality_t = torch.tensor([int(quality)], device=device)
    lam = float(model.lambdas[int(quality)])
    h, w = size
    target = x[..., :h, :w].float()
    with torch.no_grad():
        mu = model.mean(torch.from_numpy(z_hat).to(device, dtype), ctx).float()
    y = y_g.detach().float().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=DEFAULT_LEARNING_RATE)
    generator = torch.Generator(device=device).manual_seed(0)

    @torch.no_grad()
    def score() -> float:
        return _objective(model, y, mu, scales, quality_t, ctx, target, lam, ste_round).item()

    best, best_loss = y_g, score()
    first, last = TEMPERATURE
    with torch.enable_grad():
        for step in range(steps):
            tau = first * (last / first) ** (step / max(steps - 1, 1))
            relaxed = lambda r: _sga_round(r, tau, generator)  # noqa: E731
            loss = _objective(model, y, mu, scales, quality_t, ctx, target, lam, relaxed)
            optimizer.zero_grad()
            loss.backward(inputs=[y])
            optimizer.step()
            if (step + 1) % SCORE_EVERY == 0 or step + 1 == steps:
                current = score()
                if current < best_loss:
                    best, best_loss = y.detach().to(dtype).clone(), current
    return best


def _sga_round(r: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """A relaxed rounding of ``r``: floor and ceiling mixed by a Gumbel-softmax sample at temperature
    ``tau`` whose logits favour the nearer integer (Yang et al. 2020, eq. 5)."""
    floor = torch.floor(r)
    logits = torch.stack([-torch.atanh((r - floor).clamp(-1 + _EPS, 1 - _EPS)),
                          -torch.atanh((floor + 1 - r).clamp(-1 + _EPS, 1 - _EPS))], dim=-1) / tau
    uniform = torch.rand(logits.shape, generator=generator, device=r.device).clamp(_EPS, 1 - _EPS)
    weights = torch.softmax((logits - torch.log(-torch.log(uniform))) / tau, dim=-1)
    return floor + weights[..., 1]


def _objective(model, y: torch.Tensor, mu: torch.Tensor, scales: torch.Tensor, quality: torch.Tensor,
               ctx: Optional[object], target: torch.Tensor, lam: float, rounding) -> torch.Tensor:
    """``lambda * 255^2 * MSE + bpp`` of coding ``y`` with its residual rounded by ``rounding``, rated
    with the coder's scales."""
    h, w = target.shape[-2:]
    residual = rounding(y - mu)
    bits = -torch.log2(gaussian_likelihood(residual, scales)).sum()
    dtype = next(model.g_s.parameters()).dtype
    # Clamped as the decoder clamps: pixels pushed past the range cost nothing more.
    x_hat = model.synthesis((residual + mu).to(dtype), quality, ctx)[..., :h, :w].float().clamp(0.0, 1.0)
    return lam * 255.0 ** 2 * F.mse_loss(x_hat, target) + bits / (h * w)
