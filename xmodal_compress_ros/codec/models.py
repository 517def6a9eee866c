"""Registered learned image codecs: the image-only hyperprior twin and the LiDAR-conditioned codec.

Data flow (both models; the LiDAR branch only in :class:`LidarConditionedCodec`)::

    depth ──> P2I ──> prediction ──> context mining ──> c1, c2, c3, c_hyper
                                                     │        │
    x ──> g_a(x; c1,c2,c3) ──> y ──> * gain_enc[q] ──> y_g ──> h_a ──> z ──> Q ──> z_hat
                                                        │                         │
                                              Q(y_g - mu) <── mu <── h_s_mean(z_hat; c_hyper)
                                                   │                              │
                                        GaussianConditional(index) <── h_s_scale (INTEGER)
                                                   │
    x_hat <── post filter(q) <── g_s(y_hat; c3,c2,c1) <── * gain_dec[q] <── y_hat_g = symbols + mu

The scale index that selects each symbol's probability table comes only from ``z_hat`` through the
integer :mod:`integer_hyper` path, never from the LiDAR or any float network, so the bitstream parses
identically on every backend and even without the LiDAR scan at the decoder.
"""
from __future__ import annotations

import bisect
import copy
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xmodal_compress_ros.codec import entropy
from xmodal_compress_ros.codec.integer_hyper import (FakeQuantHyperSynthesis, IntegerHyperSynthesis,
                                                     index_to_scale, scale_table)
from xmodal_compress_ros.codec.latent_coding import DEFAULT_Y_SUBSTREAMS, decode_latents, encode_latents
from xmodal_compress_ros.codec.latent_refinement import refine_latent
from xmodal_compress_ros.codec.post_filter import PostFilter, check_views
from xmodal_compress_ros.codec.layers import (GDN, AttentionBlock, ConcatFusion, FactorizedDensity, GainUnits,
                                              MMFFTFusion, conv, deconv, gaussian_likelihood,
                                              ste_round)
from xmodal_compress_ros.errors import ModelFileError

# Lambdas of the quality levels for loss = lambda * 255^2 * MSE + bpp (about 0.1 .. 1 bpp on KITTI).
DEFAULT_LAMBDAS = (0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.05)
# Latents are at 1/16 and hyper-latents at 1/64 of the input size: pad inputs to a multiple of this.
PAD_MULTIPLE = 64

# Precision (bits) of the integer pmf tables of both streams.
TABLE_PRECISION = 16
# Prefixes of the integer tensors stored beside the float weights.
_Z_TABLE, _Y_TABLE, _INT_HYPER = 'tables.z.', 'tables.y.', 'int_hyper.'

_MODELS: Dict[str, type] = {}


def check_lambdas(lambdas: Sequence[float]) -> Tuple[float, ...]:
    """Positive and strictly increasing, so that a higher quality index always means more bits."""
    try:
        values = tuple(float(v) for v in lambdas)
    except (TypeError, ValueError):
        raise ValueError(f'lambdas must be numbers, got {lambdas!r}') from None
    if not values or any(not v > 0 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f'lambdas must be positive and strictly increasing, got {list(values)}')
    return values


def _quality_planes(planes: Optional[Sequence[float]], levels: int) -> Tuple[float, ...]:
    if planes is None:
        return tuple(q / max(levels - 1, 1) for q in range(levels))
    planes = tuple(float(p) for p in planes)
    if len(planes) != levels or not all(math.isfinite(p) for p in planes):
        raise ValueError(f'quality_planes needs {levels} finite values (one per lambda), got {list(planes)}')
    return planes


def _log_lambda_resample(lambdas: Sequence[float], values: torch.Tensor,
                         targets: Sequence[float]) -> torch.Tensor:
    """Rows of ``values`` (one per lambda) at ``targets``, piecewise linear in log lambda.

    A target equal to a known lambda returns that row exactly; beyond the ends the end segment is
    extended. With a single known level every target gets its row.
    """
    known = list(lambdas)
    logs = [math.log(v) for v in known]
    rows = []
    for target in targets:
        if target in known or len(known) == 1:
            rows.append(values[known.index(target) if target in known else 0])
            continue
        t = math.log(target)
        i = min(max(bisect.bisect_right(logs, t) - 1, 0), len(logs) - 2)
        weight = (t - logs[i]) / (logs[i + 1] - logs[i])
        rows.append(values[i] + weight * (values[i + 1] - values[i]))
    return torch.stack(rows).to(values.dtype)


def register_model(name: str) -> Callable[[type], type]:
    """Class decorator registering a codec under a stable name (stored in model files)."""
    def decorator(cls: type) -> type:
        _MODELS[name] = cls
        cls.registry_name = name
        return cls
    return decorator


def get_model_class(name: str) -> type:
    """The codec class registered as ``name``; raises ModelFileError listing the valid names."""
    if name not in _MODELS:
        raise ModelFileError(f'unknown codec architecture {name!r}; valid: {sorted(_MODELS)}')
    return _MODELS[name]


def model_names() -> List[str]:
    return sorted(_MODELS)


class LidarContext(NamedTuple):
    """Features a conditioning branch gives the transforms: c1 (1/1), c2 (1/2), c3 (1/4), c_hyper (1/16).

    The LiDAR branch fills ``prediction`` with its P2I structure prediction; the P-frame codec
    (:mod:`codec.predictive`) with the aligned reference frame and its validity mask.
    """

    c1: torch.Tensor
    c2: torch.Tensor
    c3: torch.Tensor
    c_hyper: torch.Tensor
    prediction: torch.Tensor


class AnalysisTransform(nn.Module):
    """g_a: four stride-2 stages (5x5, 3x3, 3x3, 5x5) with GDN; optional LiDAR context fused at 1, 1/2
    and 1/4 resolution."""

    def __init__(self, N: int, M: int, ctx: Tuple[int, int, int] = (0, 0, 0), fusion: str = 'concat'):
        super().__init__()
        base = (3, N, N)
        self.fusions = nn.ModuleList()
        in_ch = []
        for b, c in zip(base, ctx):
            if c == 0:
                self.fusions.append(nn.Identity())
                in_ch.append(b)
            elif fusion == 'concat':
                self.fusions.append(ConcatFusion())
                in_ch.append(b + c)
            else:
                self.fusions.append(MMFFTFusion(b, c))
                in_ch.append(b)
        # 5x5 where few channels meet (first, last), 3x3 in the N -> N stages: a third of the cost.
        self.conv1, self.gdn1 = conv(in_ch[0], N, 5), GDN(N)
        self.conv2, self.gdn2 = conv(in_ch[1], N, 3), GDN(N)
        self.conv3, self.gdn3 = conv(in_ch[2], N, 3), GDN(N)
        self.conv4 = conv(N, M, 5)

    def _fuse(self, i: int, h: torch.Tensor, ctx: Optional[LidarContext]) -> torch.Tensor:
        return h if ctx is None else self.fusions[i](h, ctx[i])

    def forward(self, x: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        h = self.gdn1(self.conv1(self._fuse(0, x, ctx)))
        h = self.gdn2(self.conv2(self._fuse(1, h, ctx)))
        h = self.gdn3(self.conv3(self._fuse(2, h, ctx)))
        return self.conv4(h)


class SynthesisTransform(nn.Module):
    """g_s: the mirror of g_a (5x5, 3x3, 3x3, 5x5) with IGDN; LiDAR context fused at 1/4 and 1/2, and a
    residual refinement from c1 at full resolution (zero-initialised, so an untrained LiDAR model equals
    its twin)."""

    def __init__(self, N: int, M: int, ctx: Tuple[int, int, int] = (0, 0, 0), fusion: str = 'concat'):
        super().__init__()
        self.deconv1, self.igdn1 = deconv(M, N, 5), GDN(N, inverse=True)
        self.deconv2, self.igdn2 = deconv(N, N, 3), GDN(N, inverse=True)
        self.fusions = nn.ModuleList()
        in_ch = []
        for c in (ctx[2], ctx[1]):
            if c == 0:
                self.fusions.append(nn.Identity())
                in_ch.append(N)
            elif fusion == 'concat':
                self.fusions.append(ConcatFusion())
                in_ch.append(N + c)
            else:
                self.fusions.append(MMFFTFusion(N, c))
                in_ch.append(N)
        self.deconv3, self.igdn3 = deconv(in_ch[0], N, 3), GDN(N, inverse=True)
        self.deconv4 = deconv(in_ch[1], 3, 5)
        self.refine = None
        if ctx[0]:
            self.refine = conv(3 + ctx[0], 3, 3, 1)
            nn.init.zeros_(self.refine.weight)
            nn.init.zeros_(self.refine.bias)

    def forward(self, y: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        h = self.igdn1(self.deconv1(y))
        h = self.igdn2(self.deconv2(h))
        h = self.igdn3(self.deconv3(h if ctx is None else self.fusions[0](h, ctx.c3)))
        x = self.deconv4(h if ctx is None else self.fusions[1](h, ctx.c2))
        if ctx is not None and self.refine is not None:
            x = x + self.refine(torch.cat([x, ctx.c1], dim=1))
        return x


class P2INetwork(nn.Module):
    """Point-to-image prediction: sparse depth map -> 3-channel structure prediction (full resolution).

    Two stride-2 convolutions densify the sparse map to 1/4 resolution, an attention block models the
    scene, two transposed convolutions return to full resolution. The 1/2 and 1/4 features are
    handed to the context miner too.
    """

    def __init__(self, ch: int = 24):
        super().__init__()
        self.down1 = conv(1, ch, 5)
        self.down2 = conv(ch, ch, 3)
        self.trunk = AttentionBlock(ch)
        self.up1 = deconv(ch, ch, 3)
        self.up2 = deconv(ch, 3, 3)

    def forward(self, depth01: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f_quarter = self.trunk(self.down2(F.leaky_relu(self.down1(depth01), 0.1)))
        f_half = F.leaky_relu(self.up1(f_quarter), 0.1)
        return self.up2(f_half), f_half, f_quarter


class ContextMining(nn.Module):
    """Multi-scale context mining: c1, c2, c3 at 1, 1/2, 1/4 and c_hyper at 1/16 resolution from the
    P2I prediction, the depth map and the P2I features."""

    def __init__(self, p2i_ch: int, ctx: Tuple[int, int, int], hyper_ch: int):
        super().__init__()
        self.c1 = conv(4, ctx[0], 3, 1)
        self.c2_down, self.c2_feat = conv(ctx[0], ctx[1], 3), conv(p2i_ch, ctx[1], 1, 1)
        self.c3_down, self.c3_feat = conv(ctx[1], ctx[2], 3), conv(p2i_ch, ctx[2], 1, 1)
        self.hyper = nn.Sequential(conv(ctx[2], hyper_ch, 3), nn.LeakyReLU(0.1), conv(hyper_ch, hyper_ch, 3))

    def forward(self, prediction, depth01, f_half, f_quarter) -> Tuple[torch.Tensor, ...]:
        c1 = F.leaky_relu(self.c1(torch.cat([prediction, depth01], dim=1)), 0.1)
        c2 = F.leaky_relu(self.c2_down(c1) + self.c2_feat(f_half), 0.1)
        c3 = F.leaky_relu(self.c3_down(c2) + self.c3_feat(f_quarter), 0.1)
        return c1, c2, c3, self.hyper(c3)


@dataclass(frozen=True)
class CompressedImage:
    """Everything :meth:`HyperpriorCodec.decompress` needs besides the model (and the LiDAR map).

    ``original_size``/``padded_size`` are (H, W); ``y_substreams`` is how many independent rANS
    substreams the y stream holds (decodable in parallel).
    """

    z_bytes: bytes
    y_bytes: bytes
    y_substreams: int
    original_size: Tuple[int, int]
    padded_size: Tuple[int, int]
    quality: int

    @property
    def num_bytes(self) -> int:
        return len(self.z_bytes) + len(self.y_bytes)


@dataclass
class ForwardResult:
    """What :meth:`HyperpriorCodec.forward` returns (also indexable like a dict)."""

    x_hat: torch.Tensor
    likelihoods: Dict[str, torch.Tensor]
    prediction: Optional[torch.Tensor] = None

    def __getitem__(self, key: str):
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key != 'prediction' or self.prediction is not None


def pad_to_multiple(x: torch.Tensor, mode: str = 'replicate') -> torch.Tensor:
    """Pad the bottom and right of (B, C, H, W) to multiples of :data:`PAD_MULTIPLE`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
    if ph == 0 and pw == 0:
        return x
    if mode == 'constant':
        return F.pad(x, (0, pw, 0, ph))
    return F.pad(x, (0, pw, 0, ph), mode='replicate')


@register_model('xmodal-hyperprior')
class HyperpriorCodec(nn.Module):
    """Mean-scale hyperprior (Minnen et al. 2018, no autoregressive context) with gain units for
    variable rate (Cui et al. 2021) and an integer scale path. The image-only twin of the LiDAR codec.

    Args:
        N: channels of the hidden transform stages.
        M: channels of the latent y.
        Nz: channels of the hyper-latent z.
        hyper_hidden: hidden channels of the integer h_s_scale.
        lambdas: one rate-distortion lambda per quality level (loss = lambda*255^2*MSE + bpp).
        post_filter: (channels, blocks) of the decoder-side :class:`PostFilter` after g_s; (0, 0)
            for none (models trained before it existed have none).
        quality_planes: the post filter's input for each level; ``None``: level / top level.
            :meth:`with_lambdas` sets them so that added levels leave the others' outputs unchanged.
    """

    registry_name = 'xmodal-hyperprior'
    uses_lidar = False
    #: The conditioning map the float graphs take (None: none), and its planes.
    condition_name: Optional[str] = None
    condition_channels = 0

    def __init__(self, N: int = 48, M: int = 128, Nz: int = 64, hyper_hidden: int = 64,
                 lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS, post_filter: Tuple[int, int] = (0, 0),
                 quality_planes: Optional[Sequence[float]] = None):
        super().__init__()
        self.lambdas = check_lambdas(lambdas)
        self.config = dict(N=N, M=M, Nz=Nz, hyper_hidden=hyper_hidden, lambdas=list(self.lambdas))
        self.quality_planes = _quality_planes(quality_planes, len(self.lambdas))
        if quality_planes is not None:  # configs written before planes existed stay as written
            self.config['quality_planes'] = list(self.quality_planes)
        post_filter = tuple(int(v) for v in post_filter)
        self.post_filter = None
        if post_filter[0] > 0:
            # Only models with a filter record it, so older configs (and their model files) stay as written.
            self.config['post_filter'] = list(post_filter)
            self.post_filter = PostFilter(*post_filter)
        ctx = self._context_channels()
        fusion = getattr(self, 'fusion', 'concat')
        self.g_a = AnalysisTransform(N, M, ctx, fusion)
        self.g_s = SynthesisTransform(N, M, ctx, fusion)
        self.h_a = nn.Sequential(conv(M, Nz, 3, 1), nn.LeakyReLU(0.1), conv(Nz, Nz, 5), nn.LeakyReLU(0.1),
                                 conv(Nz, Nz, 5))
        self.h_s_mean = nn.Sequential(deconv(Nz, N, 5), nn.LeakyReLU(0.1), deconv(N, N, 5), nn.LeakyReLU(0.1),
                                      conv(N, M, 3, 1))
        self.h_s_scale = FakeQuantHyperSynthesis(Nz, hyper_hidden, M)
        self.z_density = FactorizedDensity(Nz)
        self.gain = GainUnits(M, self.lambdas)
        # Integer tables and weights from update(); compress()/decompress() need them.
        self.entropy_tables = None

    def _context_channels(self) -> Tuple[int, int, int]:
        return (0, 0, 0)

    @property
    def quality_levels(self) -> int:
        return len(self.lambdas)

    # -- float networks (replaceable by an external backend) ---------------------------------------
    def context(self, depth: Optional[torch.Tensor], like: torch.Tensor) -> Optional[LidarContext]:
        """Features of the conditioning map for the transforms (``None`` for the image-only twin)."""
        return None

    def analysis(self, x: torch.Tensor, quality: torch.Tensor,
                 ctx: Optional[LidarContext] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Padded image -> (y_g, z)."""
        y_g = self.gain.encode(self.g_a(x, ctx), quality)
        return y_g, self.h_a(y_g)

    def mean(self, z_hat: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        """Means mu of y_g from the integer hyper-latent (float; never used for parsing)."""
        return self.h_s_mean(z_hat)

    def synthesis(self, y_hat_g: torch.Tensor, quality: torch.Tensor,
                  ctx: Optional[LidarContext] = None) -> torch.Tensor:
        """Quantised gained latent -> padded reconstruction."""
        x_hat = self.g_s(self.gain.decode(y_hat_g, quality), ctx)
        return self.restore(x_hat, self.quality_plane(quality), ctx)

    def quality_plane(self, quality: torch.Tensor) -> torch.Tensor:
        """(B, 1) float: the post filter's input for each sample's quality level."""
        quality = torch.as_tensor(quality)
        return torch.tensor(self.quality_planes, device=quality.device)[quality].reshape(-1, 1)

    def restore(self, x_hat: torch.Tensor, plane: torch.Tensor,
                ctx: Optional[LidarContext] = None) -> torch.Tensor:
        """The post filter on g_s's padded output (identity without one); ``ctx`` is for codecs whose
        filter sees the conditioning map too (the P-frame codec)."""
        return x_hat if self.post_filter is None else self.post_filter(x_hat, plane)

    def without_post_filter(self) -> 'HyperpriorCodec':
        """A copy that decodes without the post filter: the same packets, g_s's reconstruction.

        The copy shares no tensor with this model. Its metadata (if this model has any) names it
        ``<model_id>-no-post-filter``, so that compiled graphs and engines of the two are cached apart.
        """
        config = {k: v for k, v in self.config.items() if k != 'post_filter'}
        plain = type(self)(**config).to(self.g_s.deconv1.weight)
        plain.load_state_dict({k: v for k, v in self.state_dict().items()
                               if not k.startswith('post_filter.')})
        plain.entropy_tables = self.entropy_tables
        meta = getattr(self, 'metadata', None)
        if meta is not None:
            plain.metadata = dict(meta, model_id=f"{meta['model_id']}-no-post-filter")
        return plain.eval()

    def with_post_filter_views(self, views: int) -> 'HyperpriorCodec':
        """A copy whose post filter averages ``views`` shifted and mirrored views (a self-ensemble,
        :data:`~xmodal_compress_ros.codec.post_filter.ENSEMBLE_VIEWS`): the same packets, a slightly
        better reconstruction for ``views`` times the filter's cost.

        The copy shares no tensor with this model. Its metadata (if this model has any) names it
        ``<model_id>-post-filter-x<views>``, so that compiled graphs and engines are cached apart.
        """
        views = check_views(views)
        if self.post_filter is None:
            raise ValueError('this model has no post filter to average over views')
        ensemble = copy.deepcopy(self)
        ensemble.post_filter.views = views
        meta = getattr(self, 'metadata', None)
        if meta is not None and views > 1:
            ensemble.metadata = dict(meta, model_id=f"{meta['model_id']}-post-filter-x{views}")
        return ensemble.eval()

    def with_lambdas(self, lambdas: Sequence[float]) -> 'HyperpriorCodec':
        """A copy whose quality levels are ``lambdas`` (a new, untrained model: no metadata).

        A level whose lambda this model has keeps its gains and post-filter plane bit for bit, so its
        packets and reconstructions do not change. A new level's log-gains and plane are interpolated
        linearly in log lambda between the two nearest levels, or extrapolated from the two end levels;
        Cui et al. (2021) interpolate gains this way for continuous rates. Fine-tune the new levels
        alone with ``train_only='gain.'`` and ``train_qualities``.
        """
        lambdas = check_lambdas(lambdas)
        planes = _log_lambda_resample(self.lambdas, torch.tensor(self.quality_planes, dtype=torch.float64),
                                      lambdas)
        config = dict(self.config, lambdas=list(lambdas), quality_planes=[float(p) for p in planes])
        resampled = type(self)(**config).to(self.g_s.deconv1.weight)
        state = {k: v for k, v in self.state_dict().items() if not k.startswith('gain.')}
        missing, unexpected = resampled.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {'gain.log_gain_enc', 'gain.log_gain_dec'}:
            raise RuntimeError(f'with_lambdas: tensors other than the gains differ ({missing}, {unexpected})')
        with torch.no_grad():
            for name in ('log_gain_enc', 'log_gain_dec'):
                rows = _log_lambda_resample(self.lambdas, getattr(self.gain, name), lambdas)
                getattr(resampled.gain, name).copy_(rows)
        resampled.entropy_tables = self.entropy_tables
        return resampled.train(self.training)

    # -- training -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, depth: Optional[torch.Tensor] = None,
                quality: Optional[torch.Tensor] = None,
                depth_dec: Optional[torch.Tensor] = None) -> ForwardResult:
        """Training pass: noise for the rates, straight-through rounding of (y_g - mu) for g_s.

        ``depth_dec`` (LiDAR model) is the map the decoder sees, defaulting to ``depth``; training
        passes a partly zeroed copy to learn decoding after a lost scan. In eval mode rounding replaces
        the noise, which gives the reconstruction that compress()/decompress() produce.
        """
        h, w = x.shape[-2:]
        quality = self._check_quality(quality, x.shape[0])
        xp = pad_to_multiple(x)
        ctx_enc = self.context(depth, xp)
        ctx_dec = ctx_enc if depth_dec is None else self.context(depth_dec, xp)
        y_g, z = self.analysis(xp, quality, ctx_enc)
        z_hat = ste_round(z)
        noisy = self.training
        z_lik = self.z_density.likelihood(z + torch.empty_like(z).uniform_(-0.5, 0.5) if noisy else z_hat)
        scales = index_to_scale(self.scale_index(z_hat, ctx_enc))
        mu_enc = self.mean(z_hat, ctx_enc)
        mu_dec = mu_enc if ctx_dec is ctx_enc else self.mean(z_hat, ctx_dec)
        residual = y_g - mu_enc
        y_lik = gaussian_likelihood(residual + torch.empty_like(residual).uniform_(-0.5, 0.5) if noisy
                                    else torch.round(residual), scales)
        y_hat_g = ste_round(residual) + mu_dec
        x_hat = self.synthesis(y_hat_g, quality, ctx_dec)[..., :h, :w]
        prediction = None if ctx_enc is None else ctx_enc.prediction[..., :h, :w]
        return ForwardResult(x_hat, {'y': y_lik, 'z': z_lik}, prediction)

    def scale_index(self, z_hat: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        """Training-time scale indexes: the float twin of the integer path, which ``ctx`` never reaches
        (parsing must not depend on the LiDAR). research/lidar_scales.py overrides it to measure what that
        rule costs."""
        return self.h_s_scale(z_hat)

    def _check_quality(self, quality, batch: int) -> torch.Tensor:
        if quality is None:
            return torch.full((batch,), self.quality_levels - 1, dtype=torch.long)
        quality = torch.as_tensor(quality, dtype=torch.long).reshape(-1).expand(batch)
        if int(quality.min()) < 0 or int(quality.max()) >= self.quality_levels:
            raise ValueError(f'quality {quality.tolist()} out of range 0..{self.quality_levels - 1}')
        return quality

    # -- integer tables and model files -------------------------------------------------------------
    @torch.no_grad()
    def update(self) -> None:
        """Compute the integer parts both ends share: z and y pmf tables, integer h_s_scale weights."""
        pmf, offsets, lengths = self.z_density.integer_pmf()
        z_table = entropy.table_from_pmfs(pmf, offsets, lengths, precision=TABLE_PRECISION)
        y_table = entropy.gaussian_table(scale_table(), precision=TABLE_PRECISION)
        self.entropy_tables = (z_table, y_table, IntegerHyperSynthesis.from_trained(self.h_s_scale))

    def export_tensors(self) -> Dict[str, torch.Tensor]:
        """Float weights plus the integer tables, as stored in the model file."""
        if self.entropy_tables is None:
            raise ModelFileError('call update() before exporting: the integer tables are not computed')
        z_table, y_table, int_hyper = self.entropy_tables
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        for prefix, table in ((_Z_TABLE, z_table), (_Y_TABLE, y_table)):
            for name in ('pmfs', 'lengths', 'offsets'):
                tensors[prefix + name] = torch.from_numpy(np.array(getattr(table, name), dtype=np.int32))
            tensors[prefix + 'precision'] = torch.tensor([table.precision], dtype=torch.int32)
        for name, value in int_hyper.tensors().items():
            tensors[_INT_HYPER + name] = torch.from_numpy(np.ascontiguousarray(value))
        return tensors

    def import_tensors(self, tensors: Dict[str, torch.Tensor], source: str = 'model file') -> None:
        """Load what :meth:`export_tensors` wrote; raises ModelFileError on any mismatch."""
        from xmodal_compress_ros.codec.model_io import check_tensors, to_numpy

        expected = {k: tuple(v.shape) for k, v in self.state_dict().items()}
        for prefix in (_Z_TABLE, _Y_TABLE):
            expected.update({prefix + n: None for n in ('pmfs', 'lengths', 'offsets', 'precision')})
        int_shapes = {'w1': tuple(self.h_s_scale.deconv1.weight.shape),
                      'b1': (self.h_s_scale.deconv1.out_channels,),
                      'w2': tuple(self.h_s_scale.deconv2.weight.shape),
                      'b2': (self.h_s_scale.deconv2.out_channels,),
                      'w3': tuple(self.h_s_scale.conv3.weight.shape),
                      'b3': (self.h_s_scale.conv3.out_channels,)}
        expected.update({_INT_HYPER + k: v for k, v in int_shapes.items()})
        check_tensors(expected, tensors, source)
        self.load_state_dict({k: tensors[k] for k in self.state_dict()})
        tables = []
        for prefix in (_Z_TABLE, _Y_TABLE):
            tables.append(entropy.PmfTable(to_numpy(tensors[prefix + 'pmfs']),
                                           to_numpy(tensors[prefix + 'lengths']),
                                           to_numpy(tensors[prefix + 'offsets']),
                                           int(tensors[prefix + 'precision'][0])))
        if tables[0].num_rows != self.config['Nz'] or tables[1].num_rows != len(scale_table()):
            raise ModelFileError(f'{source}: entropy tables have {tables[0].num_rows} z rows and '
                                 f'{tables[1].num_rows} y rows, expected {self.config["Nz"]} and '
                                 f'{len(scale_table())}: re-export the model')
        int_hyper = IntegerHyperSynthesis({k: to_numpy(tensors[_INT_HYPER + k]) for k in int_shapes})
        self.entropy_tables = (tables[0], tables[1], int_hyper)

    # -- deployment: bytes ----------------------------------------------------------------------------
    def _tables(self):
        if self.entropy_tables is None:
            raise ModelFileError('the integer tables are missing: call update() or load a model file')
        return self.entropy_tables

    def _prepare(self, x: Optional[torch.Tensor], depth, size: Tuple[int, int], dtype: torch.dtype):
        """(padded image or None, LiDAR context or None, padded size) for compress/decompress."""
        h, w = size
        padded = (h + (-h) % PAD_MULTIPLE, w + (-w) % PAD_MULTIPLE)
        xp = None if x is None else pad_to_multiple(x.to(dtype))
        like = xp if xp is not None else torch.zeros(1, 3, *padded, dtype=dtype)
        if depth is not None:
            depth = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth)
            # (H, W) or (1, C, H, W): one plane for a depth map, more for a reference frame.
            depth = depth.reshape(1, -1, *depth.shape[-2:]).to(dtype)
            if tuple(depth.shape[-2:]) != (h, w):
                raise ValueError(f'depth map {tuple(depth.shape[-2:])} must match the image size {(h, w)}')
        return xp, self.context(depth, like), padded

    @torch.no_grad()
    def compress(self, x: torch.Tensor, depth=None, quality: int = 0,
                 y_substreams: int = DEFAULT_Y_SUBSTREAMS, refine_steps: int = 0) -> CompressedImage:
        """Encode one image ``x`` (1, 3, H, W) in [0, 1] at quality index ``quality``.

        ``depth``: the (H, W) or (1, 1, H, W) uint8-valued depth-condition map, or None (LiDAR model:
        an all-zero map, the same at the decoder). Entropy coding uses only integers: symbols, the
        integer scale indexes, and the stored tables. ``refine_steps`` > 0 refines the latent for
        this image (:mod:`latent_refinement`): slower encoding, same decoder.
        """
        if x.dim() != 4 or x.shape[:2] != (1, 3):
            raise ValueError(f'x must be (1, 3, H, W), got {tuple(x.shape)}')
        if not 0 <= int(quality) < self.quality_levels:
            raise ValueError(f'quality {quality} out of range 0..{self.quality_levels - 1}')
        size = (int(x.shape[2]), int(x.shape[3]))
        xp, ctx, padded = self._prepare(x, depth, size, self.g_a.conv1.weight.dtype)
        y_g, z = self.analysis(xp, torch.tensor([int(quality)]), ctx)
        if refine_steps:
            y_g = refine_latent(self, xp, y_g, z.float().numpy(), self._tables(), int(quality), ctx,
                                refine_steps, size)

        def mean(z_hat: np.ndarray) -> np.ndarray:
            return self.mean(torch.from_numpy(z_hat).to(z.dtype), ctx).float().numpy()

        # The one coding implementation, shared with codec.pipeline (which runs any backend).
        coded = encode_latents(y_g.float().numpy(), z.float().numpy(), mean, self._tables(), y_substreams)
        return CompressedImage(coded.z_bytes, coded.y_bytes, int(y_substreams), size, padded, int(quality))

    def decode_latents(self, compressed: CompressedImage) -> Tuple[np.ndarray, np.ndarray]:
        """Parse the streams: (z_hat, y symbols), int32, (1, Nz, H/64, W/64) and (1, M, H/16, W/16).

        Integer-only (entropy decoding and the integer scale path): the result is the same on every
        machine whatever runs the float networks.
        """
        ph, pw = compressed.padded_size
        if ph % PAD_MULTIPLE or pw % PAD_MULTIPLE or not 0 <= compressed.quality < self.quality_levels:
            raise ValueError(f'padded size {compressed.padded_size} / quality {compressed.quality} invalid '
                             f'for this model (multiples of {PAD_MULTIPLE}, '
                             f'quality 0..{self.quality_levels - 1})')
        latents = decode_latents(compressed.z_bytes, compressed.y_bytes, compressed.padded_size,
                                 self._tables())
        return latents.z_hat, latents.symbols

    @torch.no_grad()
    def decompress(self, compressed: CompressedImage, depth=None) -> torch.Tensor:
        """Reconstruct (1, 3, H, W) in [0, 1]. ``depth`` None on a LiDAR model means the zeros map
        (lower quality if the encoder had a scan, never a parsing error). The float networks run in
        the model's dtype (``model.half()`` works)."""
        z_hat, y_sym = self.decode_latents(compressed)
        dtype = self.g_s.deconv1.weight.dtype
        _, ctx, _ = self._prepare(None, depth, compressed.original_size, dtype)
        mu = self.mean(torch.from_numpy(z_hat).to(dtype), ctx)
        y_hat_g = torch.from_numpy(y_sym).to(dtype) + mu
        x_hat = self.synthesis(y_hat_g, torch.tensor([compressed.quality]), ctx)
        h, w = compressed.original_size
        return x_hat[..., :h, :w].float().clamp(0.0, 1.0)


_DEFAULT_CTX = (3, 16, 16)


@register_model('xmodal-lidar')
class LidarConditionedCodec(HyperpriorCodec):
    """The hyperprior twin plus a LiDAR branch: P2I prediction and multi-scale context mining whose
    features join g_a and g_s at matching scales (and, optionally, the means through a Hyper Refiner).

    Args (beyond :class:`HyperpriorCodec`):
        fusion: ``'concat'`` (multi-scale concatenation) or ``'mmfft'`` (channel-attention fusion).
        conditioning: ``'lidar'`` or ``'zeros'`` (ablation: the same network fed an all-zero map).
        hyper_refiner: refine the means mu with c_hyper (never the scales).
        p2i_ch: channels of the P2I network.
        ctx_ch: channels of c1, c2, c3.
    """

    registry_name = 'xmodal-lidar'
    uses_lidar = True
    condition_name = 'depth'
    condition_channels = 1

    def __init__(self, N: int = 48, M: int = 128, Nz: int = 64, hyper_hidden: int = 64,
                 lambdas: Tuple[float, ...] = DEFAULT_LAMBDAS, fusion: str = 'concat',
                 conditioning: str = 'lidar', hyper_refiner: bool = True, p2i_ch: int = 24,
                 ctx_ch: Tuple[int, int, int] = _DEFAULT_CTX, post_filter: Tuple[int, int] = (0, 0),
                 quality_planes: Optional[Sequence[float]] = None):
        if fusion not in ('concat', 'mmfft'):
            raise ValueError(f"fusion must be 'concat' or 'mmfft', got {fusion!r}")
        if conditioning not in ('lidar', 'zeros'):
            raise ValueError(f"conditioning must be 'lidar' or 'zeros', got {conditioning!r}")
        self.fusion = fusion
        self._ctx_ch = tuple(int(c) for c in ctx_ch)
        super().__init__(N, M, Nz, hyper_hidden, lambdas, post_filter, quality_planes)
        self.config.update(fusion=fusion, conditioning=conditioning, hyper_refiner=hyper_refiner,
                           p2i_ch=p2i_ch, ctx_ch=list(self._ctx_ch))
        self.conditioning = conditioning
        self.p2i = P2INetwork(p2i_ch)
        self.context_mining = ContextMining(p2i_ch, self._ctx_ch, hyper_ch=M // 4)
        self.hyper_refiner = None
        if hyper_refiner:
            self.hyper_refiner = conv(M + M // 4, M, 3, 1)
            nn.init.zeros_(self.hyper_refiner.weight)
            nn.init.zeros_(self.hyper_refiner.bias)

    def _context_channels(self) -> Tuple[int, int, int]:
        return self._ctx_ch

    def context(self, depth: Optional[torch.Tensor], like: torch.Tensor) -> LidarContext:
        """``depth``: (B, 1, H, W) uint8-valued (0 = no point) or None (= no scan: zeros map)."""
        b, _, h, w = like.shape
        if depth is None or self.conditioning == 'zeros':
            depth01 = like.new_zeros(b, 1, h, w)
        else:
            depth01 = pad_to_multiple(depth.to(like.dtype), 'constant') / 255.0
            if depth01.shape[-2:] != (h, w) or depth01.shape[0] != b:
                raise ValueError(f'depth map {tuple(depth.shape)} does not match image {tuple(like.shape)}')
        prediction, f_half, f_quarter = self.p2i(depth01)
        c1, c2, c3, c_hyper = self.context_mining(prediction, depth01, f_half, f_quarter)
        return LidarContext(c1, c2, c3, c_hyper, prediction)

    def mean(self, z_hat: torch.Tensor, ctx: Optional[LidarContext] = None) -> torch.Tensor:
        mu = self.h_s_mean(z_hat)
        if self.hyper_refiner is not None and ctx is not None:
            mu = mu + self.hyper_refiner(torch.cat([mu, ctx.c_hyper], dim=1))
        return mu

    @torch.no_grad()
    def init_from_twin(self, twin: HyperpriorCodec) -> None:
        """Copy the twin's backbone; extra (LiDAR) input channels get zero weights, so the LiDAR
        model starts computing exactly what the twin computes."""
        own = self.state_dict()
        for name, tensor in twin.state_dict().items():
            if name not in own:
                raise ModelFileError(f'twin tensor {name} has no counterpart in the LiDAR model: '
                                     'use a twin of the same N, M, Nz and hyper_hidden')
            target = own[name]
            if target.shape == tensor.shape:
                target.copy_(tensor)
                continue
            # Concat fusion widened an input: conv weights (out, in, k, k) or deconv (in, out, k, k).
            dim = 1 if isinstance(self.get_submodule(name.rsplit('.', 1)[0]), nn.Conv2d) else 0
            target.zero_()
            target.narrow(dim, 0, tensor.shape[dim]).copy_(tensor)


# The P-frame codec registers itself; imported last because it builds on the classes above.
from xmodal_compress_ros.codec import predictive  # noqa: E402,F401
