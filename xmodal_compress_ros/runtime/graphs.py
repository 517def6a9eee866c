"""The float parts of a codec as three named graphs: what every backend runs and what ONNX export writes.

::

    'encoder'  x (1,3,H,W), [depth (1,1,H,W)], gain (1,M)      -> y_g (1,M,H/16,W/16), z (1,Nz,H/64,W/64),
                                                                  [c_hyper (1,Ch,H/16,W/16)], [y_ref]
    'mean'     z_hat (1,Nz,H/64,W/64), [c_hyper]               -> mu (1,M,H/16,W/16)
    'decoder'  z_hat, symbols (1,M,H/16,W/16), [depth], gain,
               [analysis_gain (1,M), weight (1,M,H/16,W/16)],
               [quality (1,1)]                                -> x_hat (1,3,H,W) in [0, 1]

H and W are the padded size (multiples of 64). ``depth`` is the uint8-valued conditioning map as
float (0 = no point; all zeros = no scan) and exists only for LiDAR models; the P-frame codec takes
``reference`` (1,4,H,W) in its place: the aligned previous decoded frame and its validity mask.
``c_hyper`` exists for conditioned models with a Hyper Refiner. The P-frame codec's encoder also
returns ``y_ref``, the reference analysed like the image, and its decoder takes the encoder's gain
(``analysis_gain``) to compute it again and the ``weight`` of it in each mean
(:mod:`codec.latent_prediction`). Quality enters as a gain vector
(``exp`` of the model's log gains for that level, computed by :func:`quality_gains`), so one graph
serves every quality.

The decoder graph computes the means itself (``y_hat_g = symbols + mean(z_hat)``), so the LiDAR
branch runs once per decoded image. Quantisation, the integer scale path and entropy coding stay
outside the graphs (:mod:`codec.latent_coding`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn as nn

from xmodal_compress_ros.codec.models import HyperpriorCodec

GRAPH_NAMES = ('encoder', 'mean', 'decoder')
#: Symbolic dimension names used in shapes: padded height and width.
HEIGHT, WIDTH = 'H', 'W'


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output: name and shape, where 'H'/'W' mark the padded image size.

    A dimension given as ``('H', k)`` means ``H // k``.
    """

    name: str
    shape: Tuple
    dtype: str = 'float32'

    def concrete_shape(self, height: int, width: int) -> Tuple[int, ...]:
        """The shape for a padded image of ``height`` x ``width``."""
        sizes = {HEIGHT: height, WIDTH: width}
        return tuple(sizes[d[0]] // d[1] if isinstance(d, tuple) else int(d) for d in self.shape)

    def symbolic_shape(self) -> Tuple:
        """JSON-friendly shape: ints and strings like ``'H/16'``."""
        return tuple(f'{d[0]}/{d[1]}' if isinstance(d, tuple) and d[1] != 1 else d[0] if isinstance(d, tuple)
                     else d for d in self.shape)

    def dynamic_axes(self) -> Dict[int, str]:
        """Axis -> symbolic name, for ``torch.onnx.export``."""
        return {i: s for i, s in enumerate(self.symbolic_shape()) if isinstance(s, str)}


@dataclass(frozen=True)
class GraphSpec:
    name: str
    inputs: Tuple[TensorSpec, ...]
    outputs: Tuple[TensorSpec, ...]

    @property
    def input_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> Tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def _image(channels: int) -> Tuple:
    return (1, channels, (HEIGHT, 1), (WIDTH, 1))


def _at(channels: int, factor: int) -> Tuple:
    return (1, channels, (HEIGHT, factor), (WIDTH, factor))


def uses_c_hyper(model: HyperpriorCodec) -> bool:
    """True if the model's means take conditioning features (a conditioned model with a Hyper Refiner)."""
    return bool(model.condition_name and getattr(model, 'hyper_refiner', None) is not None)


def predicts_latent(model: HyperpriorCodec) -> bool:
    """True for the P-frame codec: its means lean on the reference's own analysis (``y_ref``)."""
    return model.condition_name == 'reference'


def graph_specs(model: HyperpriorCodec) -> Dict[str, GraphSpec]:
    """Inputs and outputs of the three graphs of ``model``."""
    m, nz = model.config['M'], model.config['Nz']
    depth = ((TensorSpec(model.condition_name, _image(model.condition_channels)),)
             if model.condition_name else ())
    # The Hyper Refiner takes [mu, c_hyper]: its input width tells c_hyper's channel count.
    c_hyper = ()
    if uses_c_hyper(model):
        c_hyper = (TensorSpec('c_hyper', _at(model.hyper_refiner.in_channels - m, 16)),)
    gain = TensorSpec('gain', (1, m))
    z_hat = TensorSpec('z_hat', _at(nz, 64))
    quality = (TensorSpec('quality', (1, 1)),) if model.post_filter is not None else ()
    y_ref, prediction = (), ()
    if predicts_latent(model):
        y_ref = (TensorSpec('y_ref', _at(m, 16)),)
        prediction = (TensorSpec('analysis_gain', (1, m)), TensorSpec('weight', _at(m, 16)))
    return {
        'encoder': GraphSpec('encoder', (TensorSpec('x', _image(3)),) + depth + (gain,),
                             (TensorSpec('y_g', _at(m, 16)), TensorSpec('z', _at(nz, 64))) + c_hyper + y_ref),
        'mean': GraphSpec('mean', (z_hat,) + c_hyper, (TensorSpec('mu', _at(m, 16)),)),
        'decoder': GraphSpec('decoder',
                             (z_hat, TensorSpec('symbols', _at(m, 16))) + depth + (gain,) + prediction
                             + quality,
                             (TensorSpec('x_hat', _image(3)),)),
    }


class EncoderGraph(nn.Module):
    """Conditioning branch (from the depth map or the reference), g_a with the gain, h_a."""

    def __init__(self, model: HyperpriorCodec):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, *rest: torch.Tensor):
        model = self.model
        depth, gain = rest if model.condition_name else (None, rest[0])
        ctx = model.context(depth, x) if model.condition_name else None
        y_g = model.g_a(x, ctx) * gain[:, :, None, None]
        outputs = (y_g, model.h_a(y_g))
        if uses_c_hyper(model):
            outputs += (ctx.c_hyper,)
        if predicts_latent(model):
            outputs += (model.reference_latent(ctx, gain),)
        return outputs


class MeanGraph(nn.Module):
    """h_s_mean (plus the Hyper Refiner with c_hyper): the means of y_g. Never used for parsing."""

    def __init__(self, model: HyperpriorCodec):
        super().__init__()
        self.model = model

    def forward(self, z_hat: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        mu = self.model.h_s_mean(z_hat)
        if rest:
            mu = mu + self.model.hyper_refiner(torch.cat([mu, rest[0]], dim=1))
        return mu


class DecoderGraph(nn.Module):
    """Conditioning branch, means, ``y_hat_g = symbols + mu``, the gain, g_s, the post filter (its ``quality``
    input is :func:`quality_plane`); output clamped to [0, 1]."""

    def __init__(self, model: HyperpriorCodec):
        super().__init__()
        self.model = model

    def forward(self, z_hat: torch.Tensor, symbols: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        model = self.model
        conditioned = bool(model.condition_name)
        depth = rest[0] if conditioned else None
        gain = rest[int(conditioned)]
        ctx = model.context(depth, depth) if conditioned else None
        mu = model.mean(z_hat, ctx)
        if predicts_latent(model):
            analysis_gain, weight = rest[2:4]
            mu = mu + weight * (model.reference_latent(ctx, analysis_gain) - mu)
        y_hat_g = symbols + mu
        x_hat = model.g_s(y_hat_g * gain[:, :, None, None], ctx)
        if model.post_filter is not None:
            x_hat = model.restore(x_hat, rest[-1], ctx)
        return torch.clamp(x_hat, 0.0, 1.0)


def graph_modules(model: HyperpriorCodec) -> Dict[str, nn.Module]:
    """The three graphs of ``model`` as modules sharing its weights (eval mode)."""
    model.eval()
    return {'encoder': EncoderGraph(model).eval(), 'mean': MeanGraph(model).eval(),
            'decoder': DecoderGraph(model).eval()}


def _check_level(model: HyperpriorCodec, quality: int) -> None:
    if not 0 <= int(quality) < model.quality_levels:
        raise ValueError(f'quality {quality} out of range 0..{model.quality_levels - 1}')


@torch.no_grad()
def quality_gains(model: HyperpriorCodec, quality: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(encoder gain, decoder gain), float32 (1, M), of quality level ``quality``."""
    _check_level(model, quality)
    gain = model.gain
    return (torch.exp(gain.log_gain_enc[int(quality)].float())[None].contiguous(),
            torch.exp(gain.log_gain_dec[int(quality)].float())[None].contiguous())


@torch.no_grad()
def quality_plane(model: HyperpriorCodec, quality: int) -> torch.Tensor:
    """The decoder graph's ``quality`` input, float32 (1, 1), of quality level ``quality``."""
    _check_level(model, quality)
    return model.quality_plane(torch.tensor([int(quality)])).contiguous()


def example_inputs(spec: GraphSpec, height: int, width: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Plausible float32 inputs of a graph for a padded ``height`` x ``width`` image (export, checks)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for tensor in spec.inputs:
        shape = tensor.concrete_shape(height, width)
        if tensor.name == 'depth':
            values = torch.randint(1, 256, shape, generator=generator).float()
            values *= (torch.rand(shape, generator=generator) < 0.05).float()
        elif tensor.name in ('z_hat', 'symbols'):
            values = torch.randint(-3, 4, shape, generator=generator).float()
        elif tensor.name in ('gain', 'analysis_gain'):
            values = torch.ones(shape)
        else:
            values = torch.rand(shape, generator=generator)
        inputs[tensor.name] = values
    return inputs
