"""Building blocks of the learned codecs: convolutions, GDN, residual/attention blocks, fusion, densities.

Every block uses only standard operators (conv, transposed conv, pooling, sigmoid, elementwise maths)
so the float transforms export to ONNX unchanged.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.Conv2d:
    """Same-padding convolution; ``stride=2`` halves the resolution."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_ch: int, out_ch: int, kernel_size: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """Transposed convolution that exactly doubles the resolution (for ``stride=2``)."""
    return nn.ConvTranspose2d(in_ch, out_ch, kernel_size, stride=stride, padding=kernel_size // 2,
                              output_padding=stride - 1)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round half up in the forward pass, identity gradient (straight-through estimator).

    Half-up (``floor(x + 0.5)``) rather than half-to-even so it equals the integer round-shift
    ``(a + 2^(s-1)) >> s`` used by the integer hyper-synthesis.
    """
    return x + (torch.floor(x + 0.5) - x).detach()


class GDN(nn.Module):
    """Generalized divisive normalisation (Balle et al. 2016), or its inverse (IGDN).

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``. ``beta`` and ``gamma`` are kept
    non-negative by storing their square roots.
    """

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_sqrt = nn.Parameter(torch.ones(channels))
        self.gamma_sqrt = nn.Parameter(math.sqrt(gamma_init) * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        beta = self.beta_sqrt ** 2 + 1e-6
        gamma = (self.gamma_sqrt ** 2).reshape(channels, channels, 1, 1)
        norm = F.conv2d(x * x, gamma, beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a LeakyReLU and an identity shortcut."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv(channels, channels, 3, 1)
        self.conv2 = conv(channels, channels, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.1)), 0.1))


class AttentionBlock(nn.Module):
    """Simplified attention block (Cheng et al. 2020): a residual trunk gated by a sigmoid mask branch.

    One residual block per branch instead of three, to fit a CPU budget.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.trunk = ResidualBlock(channels)
        self.mask = nn.Sequential(ResidualBlock(channels), conv(channels, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.trunk(x) * torch.sigmoid(self.mask(x))


class ConcatFusion(nn.Module):
    """Joins image features and LiDAR context by channel concatenation (the plain multi-scale scheme)."""

    def forward(self, image_feat: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return torch.cat([image_feat, context], dim=1)


class MMFFTFusion(nn.Module):
    """Channel-attention fusion of image and LiDAR features (MMFFT-style).

    The concatenated features are re-weighted per channel by a squeeze-and-excitation gate computed
    from both modalities, projected back to the image channel count by a 1x1 convolution and added to
    the image features. The projection starts at zero, so an untrained fusion is the identity on the
    image path (the LiDAR model starts exactly as its image-only twin).
    """

    def __init__(self, image_ch: int, context_ch: int, reduction: int = 4):
        super().__init__()
        total = image_ch + context_ch
        hidden = max(total // reduction, 4)
        self.gate = nn.Sequential(nn.Conv2d(total, hidden, 1), nn.ReLU(inplace=True),
                                  nn.Conv2d(hidden, total, 1), nn.Sigmoid())
        self.project = nn.Conv2d(total, image_ch, 1)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def forward(self, image_feat: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        joint = torch.cat([image_feat, context], dim=1)
        weights = self.gate(joint.mean(dim=(2, 3), keepdim=True))
        return image_feat + self.project(joint * weights)


class FactorizedDensity(nn.Module):
    """Learned per-channel univariate density of the hyper-latent z (Balle et al. 2018, appendix 6.1).

    A monotone per-channel MLP gives the cumulative ``c(x)``; the likelihood of a value (with uniform
    noise in training, an integer at test) is ``c(x + 1/2) - c(x - 1/2)``.
    """

    def __init__(self, channels: int, filters: tuple = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1,) + tuple(filters) + (1,)
        scale = init_scale ** (1.0 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1.0 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def _logits_cumulative(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (C, 1, N) -> logits of the cumulative, (C, 1, N)."""
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit interval around each element of ``z`` (B, C, H, W)."""
        b, c, h, w = z.shape
        flat = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cumulative(flat - 0.5)
        upper = self._logits_cumulative(flat + 0.5)
        # Evaluate in the tail where the sigmoids are far from 1, for precision.
        sign = -torch.sign(lower + upper).detach()
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return lik.reshape(c, b, h, w).permute(1, 0, 2, 3).clamp_min(1e-9)

    @torch.no_grad()
    def integer_pmf(self, max_symbol: int = 256, tail_mass: float = 1e-9) -> tuple:
        """Per-channel pmfs over integer symbols for the entropy coder.

        Returns ``(pmf, offsets, lengths)``: ``pmf`` float64 (C, S) whose row ``c`` gives the
        probabilities of symbols ``offsets[c] .. offsets[c] + lengths[c] - 1`` (zeros after), both
        int64 (C,). The support drops the tails carrying less than ``tail_mass``.
        """
        c = self.matrices[0].shape[0]
        grid = torch.arange(-max_symbol, max_symbol + 1, dtype=self.matrices[0].dtype)
        lik = self.likelihood(grid.reshape(1, 1, 1, -1).expand(1, c, 1, -1).contiguous())
        lik = lik.reshape(c, -1).double()
        cdf = torch.cumsum(lik, dim=1)
        total = cdf[:, -1:]
        keep = (cdf >= tail_mass / 2 * total) & (cdf - lik <= (1 - tail_mass / 2) * total)
        first = keep.float().argmax(dim=1)
        last = keep.shape[1] - 1 - keep.flip(1).float().argmax(dim=1)
        size = int((last - first).max().item()) + 1
        pmf = torch.zeros(c, size, dtype=torch.float64)
        for ch in range(c):
            n = int(last[ch] - first[ch]) + 1
            pmf[ch, :n] = lik[ch, int(first[ch]):int(first[ch]) + n]
        offsets = (first - max_symbol).to(torch.int64)
        return pmf.numpy(), offsets.numpy(), (last - first + 1).to(torch.int64).numpy()


def gaussian_likelihood(values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Mass of a zero-mean Gaussian of std ``scales`` over the unit interval around ``values``."""
    v = torch.abs(values)
    inv = 1.0 / (scales * math.sqrt(2.0))
    upper = 0.5 * torch.erfc((v - 0.5) * inv)
    lower = 0.5 * torch.erfc((v + 0.5) * inv)
    return (upper - lower).clamp_min(1e-9)


class GainUnits(nn.Module):
    """Per-quality, per-channel positive gains of the asymmetric gained VAE (Cui et al. 2021).

    ``y_g = y * gain_enc[q]`` before quantisation and ``y = y_hat_g * gain_dec[q]`` after, so one
    model covers every quality level. Gains are stored as logarithms (always positive). The initial
    gains grow with sqrt(lambda), which matches the quantisation step an RD-optimal codec picks.
    """

    def __init__(self, channels: int, lambdas: tuple):
        super().__init__()
        lam = torch.tensor(lambdas, dtype=torch.float32)
        log_gain = 0.5 * torch.log(lam / torch.exp(torch.log(lam).mean()))
        self.log_gain_enc = nn.Parameter(log_gain[:, None].repeat(1, channels))
        self.log_gain_dec = nn.Parameter(-log_gain[:, None].repeat(1, channels))

    @property
    def levels(self) -> int:
        return self.log_gain_enc.shape[0]

    def encode(self, y: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(self.log_gain_enc[quality])[:, :, None, None]

    def decode(self, y_hat_g: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        return y_hat_g * torch.exp(self.log_gain_dec[quality])[:, :, None, None]
