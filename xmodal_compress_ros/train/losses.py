"""Training losses: rate-distortion, and the colour-randomised P2I prediction loss."""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch


def bits_per_pixel(likelihoods: Dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    """Estimated rate of each sample, in bits per pixel of the original image, (B,)."""
    total = 0.0
    for lik in likelihoods.values():
        total = total + torch.log(lik).flatten(1).sum(dim=1)
    return total / (-math.log(2) * num_pixels)


def colour_randomised_target(x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """The P2I target: the image under random contrast, brightness and inversion, per sample.

    A LiDAR scan says nothing about colour, so the prediction is asked for structure (edges, object
    boundaries) that survives any such jitter, not for one particular colouring.
    """
    b = x.shape[0]
    rand = torch.rand(b, 3, 1, 1, generator=generator, dtype=x.dtype).to(x.device)
    contrast = 0.6 + 0.8 * rand[:, 0:1]
    brightness = 0.4 * rand[:, 1:2] - 0.2
    invert = (rand[:, 2:3] < 0.5).to(x.dtype)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    target = torch.clamp(contrast * (x - mean) + mean + brightness, 0.0, 1.0)
    return invert * (1.0 - target) + (1.0 - invert) * target


def affine_invariant_mse(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MSE left after the best affine map ``a * prediction + b`` of each sample and channel is fitted
    to ``target`` (least squares, closed form).

    A plain MSE against a target that is inverted half of the time is minimised by the constant 0.5:
    the P2I network collapsed to a flat grey prediction that way (measured on an early model). Under
    this loss contrast, brightness and inversion cost nothing and a constant costs the target's full
    variance, so only structure lowers it.
    """
    p, t = _centred(prediction), _centred(target)
    gain = (p * t).mean(dim=-1, keepdim=True) / (p.square().mean(dim=-1, keepdim=True) + eps)
    return (t - gain * p).square().mean()


def correlation_loss(prediction: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``var(t) * (1 - |r|)`` per sample and channel, averaged; ``r`` is the Pearson correlation of
    prediction and target.

    :func:`affine_invariant_mse` equals ``var(t) * (1 - r^2)``, whose gradient is proportional to ``r``:
    a prediction uncorrelated with the target is a stationary point, and a P2I trained from scratch
    was measured stuck there (r near 0, its gradient 300 times smaller than a trained P2I's). ``|r|``
    keeps the invariance to contrast, brightness and inversion, and its gradient does not vanish as
    ``r`` goes to 0. Both losses are ``var(t)`` for an unrelated prediction and 0 for a perfect one.
    """
    p, t = _centred(prediction), _centred(target)
    var_t = t.square().mean(dim=-1)
    r = (p * t).mean(dim=-1) / (p.square().mean(dim=-1).sqrt() * var_t.sqrt() + eps)
    return (var_t * (1.0 - r.abs())).mean()


def _centred(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H*W) with each sample's and channel's mean removed."""
    x = x.flatten(2)
    return x - x.mean(dim=-1, keepdim=True)


PREDICTION_LOSSES = {'affine': affine_invariant_mse, 'correlation': correlation_loss}


def rd_loss(x: torch.Tensor, result, lambdas: torch.Tensor, alpha: float = 0.0,
            target: Optional[torch.Tensor] = None,
            prediction_loss: str = 'affine') -> Dict[str, torch.Tensor]:
    """``mean_i(lambda_i * 255^2 * MSE_i + bpp_i) + alpha * P(prediction, target)``, ``P`` one of
    :data:`PREDICTION_LOSSES`.

    ``lambdas`` holds each sample's lambda (B,); ``result`` is a model's forward output.
    """
    mse = (result['x_hat'] - x).square().flatten(1).mean(dim=1)
    bpp = bits_per_pixel(result['likelihoods'], x.shape[-2] * x.shape[-1])
    loss = (lambdas * 255.0 ** 2 * mse + bpp).mean()
    out = {'mse': mse.mean().detach(), 'bpp': bpp.mean().detach()}
    if result.prediction is not None and target is not None:
        pred = PREDICTION_LOSSES[prediction_loss](result.prediction, target)
        out['prediction'] = pred.detach()
        if alpha > 0:
            loss = loss + alpha * pred
    out['loss'] = loss  # the only term with a graph
    return out
