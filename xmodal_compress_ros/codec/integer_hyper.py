"""Deterministic integer hyper-synthesis for the scales: z_hat -> one scale-table index per element of y.

Why: the entropy decoder must see exactly the probability tables the encoder used, or the stream
desynchronises (CompressAI issues #279, #309: float hyper-decoders differ across CPU/GPU/fp16). Here
the scale path is integer arithmetic only: integer weights and biases, ReLU, round-shift and clamp, the
last layer emitting an index into a fixed table of ``SCALE_LEVELS`` log-spaced scales. Whatever backend
runs the float transforms, both ends compute bit-identical indexes from the integer ``z_hat``.

Training uses :class:`FakeQuantHyperSynthesis`, the same computation in float with straight-through
rounding, so the network learns under the quantisation it will run with. Deployment uses
:class:`IntegerHyperSynthesis` (compiled integer kernels, :mod:`integer_hyper_kernels`, with a NumPy
int64 reference), built by :meth:`IntegerHyperSynthesis.from_trained`.

Fixed-point format: activations of layer ``l`` are integers ``a = round(real * 2^ACT_FRAC_BITS[l])``
clamped to ``[0, 2^ACT_BITS - 1]``; weights ``W_int = round(W * 2^WEIGHT_FRAC_BITS)`` clamped to int16;
biases ``b_int = round(b * 2^(WEIGHT_FRAC_BITS + ACT_FRAC_BITS[l-1]))``. The accumulator then carries
``WEIGHT_FRAC_BITS + ACT_FRAC_BITS[l-1]`` fractional bits and a right shift with rounding brings it to
the next layer's format.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xmodal_compress_ros.codec import integer_hyper_kernels as kernels
from xmodal_compress_ros.codec.kernel_threads import parallel_map, workers
from xmodal_compress_ros.codec.layers import ste_round
from xmodal_compress_ros.errors import ModelFileError

SCALE_MIN = 0.11
SCALE_MAX = 256.0
SCALE_LEVELS = 64

WEIGHT_FRAC_BITS = 8
ACT_BITS = 12
# Fractional bits of the input z_hat (integers), and of the two hidden activations.
ACT_FRAC_BITS = (0, 4, 4)
INT16_MIN, INT16_MAX = -(2 ** 15), 2 ** 15 - 1
# A float64 sum of integers is exact while every partial sum stays below 2^53.
_FLOAT64_EXACT = 2 ** 53
# Accumulators of the compiled kernels are int32 where a layer's bound stays within this.
_INT32_MAX = 2 ** 31 - 1
# The right shift after each layer: from its accumulator's fractional bits to the next format's.
_SHIFTS = (WEIGHT_FRAC_BITS + ACT_FRAC_BITS[0] - ACT_FRAC_BITS[1],
           WEIGHT_FRAC_BITS + ACT_FRAC_BITS[1] - ACT_FRAC_BITS[2],
           WEIGHT_FRAC_BITS + ACT_FRAC_BITS[2])
_ACT_MAX = 2 ** ACT_BITS - 1
#: Ways to compute the indexes, all giving the same integers: 'auto' is numba's when it imports.
ENGINES = ('auto', 'numba', 'numpy')


def scale_table() -> np.ndarray:
    """The ``SCALE_LEVELS`` log-spaced standard deviations, SCALE_MIN .. SCALE_MAX (float64)."""
    return np.exp(np.linspace(np.log(SCALE_MIN), np.log(SCALE_MAX), SCALE_LEVELS))


def index_to_scale(index: torch.Tensor) -> torch.Tensor:
    """Scale for a (possibly fractional) table index: log-linear interpolation of :func:`scale_table`."""
    step = (np.log(SCALE_MAX) - np.log(SCALE_MIN)) / (SCALE_LEVELS - 1)
    return torch.exp(np.log(SCALE_MIN) + index * step)


class FakeQuantHyperSynthesis(nn.Module):
    """Training-time twin of the integer scale path (float arithmetic, quantised behaviour).

    Layers: deconv 5x5 s2 -> ReLU -> deconv 5x5 s2 -> ReLU -> conv 3x3 -> ``out_ch`` indexes.
    Weights, biases and activations are rounded exactly as the integer path does, with straight-through
    gradients. Run it in float64 and its output equals the integer path's bit for bit (every
    intermediate is an integer multiple of a power of two below 2^53); float32 training differs from
    it only at rare rounding boundaries.
    """

    def __init__(self, in_ch: int, hidden_ch: int, out_ch: int):
        super().__init__()
        self.deconv1 = nn.ConvTranspose2d(in_ch, hidden_ch, 5, stride=2, padding=2, output_padding=1)
        self.deconv2 = nn.ConvTranspose2d(hidden_ch, hidden_ch, 5, stride=2, padding=2, output_padding=1)
        self.conv3 = nn.Conv2d(hidden_ch, out_ch, 3, padding=1)
        # Start in the middle of the scale table, where most latents of an untrained model sit.
        nn.init.constant_(self.conv3.bias, SCALE_LEVELS / 3)

    def layers(self) -> Tuple[nn.Module, nn.Module, nn.Module]:
        return self.deconv1, self.deconv2, self.conv3

    @staticmethod
    def _quant_params(layer: nn.Module, in_frac: int) -> Tuple[torch.Tensor, torch.Tensor]:
        w_scale = 2.0 ** WEIGHT_FRAC_BITS
        b_scale = 2.0 ** (WEIGHT_FRAC_BITS + in_frac)
        weight = torch.clamp(ste_round(layer.weight * w_scale), INT16_MIN, INT16_MAX) / w_scale
        bias = ste_round(layer.bias * b_scale) / b_scale
        return weight, bias

    def continuous_index(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Real-valued index before the final rounding and clamp (``z_hat`` holds integers)."""
        a = z_hat
        for i, layer in enumerate(self.layers()):
            weight, bias = self._quant_params(layer, ACT_FRAC_BITS[i])
            if isinstance(layer, nn.ConvTranspose2d):
                a = F.conv_transpose2d(a, weight.to(a.dtype), bias.to(a.dtype), stride=2, padding=2,
                                       output_padding=1)
            else:
                a = F.conv2d(a, weight.to(a.dtype), bias.to(a.dtype), padding=1)
            if i < 2:
                frac = 2.0 ** ACT_FRAC_BITS[i + 1]
                a = torch.clamp(ste_round(a * frac), 0, 2 ** ACT_BITS - 1) / frac
        return a

    def forward(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Scale-table index (integer-valued float, straight-through) for each element of y."""
        index = torch.clamp(self.continuous_index(z_hat), 0, SCALE_LEVELS - 1)
        return ste_round(index)


class IntegerHyperSynthesis:
    """The deployed integer scale path: int tensors in, int32 indexes out, no float anywhere.

    ``params`` maps ``'w1', 'b1', 'w2', 'b2', 'w3', 'b3'`` to int tensors (weights int16 in PyTorch
    layout, biases int32). Use :meth:`from_trained` to build it and :meth:`tensors` to store it.
    """

    NAMES = ('w1', 'b1', 'w2', 'b2', 'w3', 'b3')

    def __init__(self, params: Dict[str, np.ndarray]):
        missing = [n for n in self.NAMES if n not in params]
        if missing:
            raise ModelFileError(f'integer hyper-synthesis is missing tensors {missing}; '
                                 f'expected {list(self.NAMES)}: re-export the model')
        self.params = {n: np.asarray(params[n]) for n in self.NAMES}
        for n in ('w1', 'w2', 'w3'):
            if self.params[n].dtype != np.int16:
                raise ModelFileError(f'integer hyper-synthesis weight {n} has dtype '
                                     f'{self.params[n].dtype}, expected int16: re-export the model')
        for n in ('b1', 'b2', 'b3'):
            if self.params[n].dtype != np.int32:
                raise ModelFileError(f'integer hyper-synthesis bias {n} has dtype '
                                     f'{self.params[n].dtype}, expected int32: re-export the model')
        self._check_exactness_bound()
        self._kernel_layers = [_KernelLayer(self.params[f'w{i + 1}'], self.params[f'b{i + 1}'], i == 2)
                               for i in range(3)]

    @classmethod
    def from_trained(cls, module: FakeQuantHyperSynthesis) -> 'IntegerHyperSynthesis':
        """Quantise a trained :class:`FakeQuantHyperSynthesis` exactly as its forward pass does."""
        params = {}
        for i, layer in enumerate(module.layers()):
            w = torch.floor(layer.weight.detach().double() * 2.0 ** WEIGHT_FRAC_BITS + 0.5)
            b = torch.floor(layer.bias.detach().double() * 2.0 ** (WEIGHT_FRAC_BITS + ACT_FRAC_BITS[i]) + 0.5)
            params[f'w{i + 1}'] = torch.clamp(w, INT16_MIN, INT16_MAX).numpy().astype(np.int16)
            params[f'b{i + 1}'] = b.numpy().astype(np.int32)
        return cls(params)

    def tensors(self) -> Dict[str, np.ndarray]:
        return dict(self.params)

    def _check_exactness_bound(self) -> None:
        """Refuse weights whose sums could leave the integers float64 represents exactly, where the
        training twin run in float64 equals this path (the kernels' int64 accumulators hold more)."""
        in_max = 2 ** 16  # bound on |z_hat|; activations after the first layer are < 2^ACT_BITS
        for i in range(3):
            w = self.params[f'w{i + 1}'].astype(np.int64)
            b = self.params[f'b{i + 1}'].astype(np.int64)
            bound = (in_max if i == 0 else 2 ** ACT_BITS) * np.abs(w).sum() + np.abs(b).max()
            if bound >= _FLOAT64_EXACT:
                raise ModelFileError(f'integer hyper-synthesis layer {i + 1} may accumulate {bound} '
                                     f'>= 2^53; the weights are out of range: re-train or re-export')

    def __call__(self, z_hat: np.ndarray, engine: str = 'auto') -> np.ndarray:
        """Indexes (int32, (B, out_ch, 4h, 4w)) for integer ``z_hat`` of shape (B, in_ch, h, w).

        ``engine='numba'`` runs the compiled kernels (:mod:`integer_hyper_kernels`), ``'numpy'`` the
        same sums as int64 matrix products (slower, the reference); ``'auto'`` is numba's when it
        imports. Both return the same integers on every machine: integer sums that never overflow.
        """
        if engine not in ENGINES:
            raise ValueError(f'engine must be one of {ENGINES}, got {engine!r}')
        if engine == 'numba' and not kernels.available():
            raise ValueError("engine 'numba' needs the numba package (pip install numba)")
        a = np.asarray(z_hat)
        if not np.issubdtype(a.dtype, np.integer) and not np.array_equal(a, np.round(a)):
            raise ValueError('z_hat must hold integers')
        a = a.astype(np.int64)
        in_max = int(np.abs(a).max(initial=0))
        if in_max > 2 ** 16:
            raise ValueError(f'z_hat magnitude {in_max} exceeds 2^16')
        if engine == 'numpy' or not kernels.available():
            return self._numpy(a)
        return self._compiled(a, in_max)

    def _compiled(self, z_hat: np.ndarray, in_max: int) -> np.ndarray:
        bsz, _, h, wd = z_hat.shape
        first, second, last = self._kernel_layers
        out = np.empty((bsz, last.cout, 4 * h, 4 * wd), dtype=np.int32)
        for item in range(bsz):
            a = np.ascontiguousarray(z_hat[item].transpose(1, 2, 0), dtype=np.int32)
            a = first.run(a, in_max, _SHIFTS[0], _ACT_MAX)
            a = second.run(a, _ACT_MAX, _SHIFTS[1], _ACT_MAX)
            last.run(a, _ACT_MAX, _SHIFTS[2], SCALE_LEVELS - 1, out[item])
        return out

    def _numpy(self, a: np.ndarray) -> np.ndarray:
        p = self.params
        a = _relu_shift(_deconv_s2(a, p['w1'], p['b1']), _SHIFTS[0])
        a = _relu_shift(_deconv_s2(a, p['w2'], p['b2']), _SHIFTS[1])
        index = _round_shift(_conv3x3(a, p['w3'], p['b3']), _SHIFTS[2])
        return np.clip(index, 0, SCALE_LEVELS - 1).astype(np.int32)


class _KernelLayer:
    """One layer's weights in the kernels' layout, int32 and int64, and the bound that picks one."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, conv: bool):
        self.conv = conv
        # PyTorch keeps (C_out, C_in, k, k) for convolutions and (C_in, C_out, k, k) for transposed ones.
        layout = weight.transpose(1, 2, 3, 0) if conv else weight.transpose(0, 2, 3, 1)
        self.cout = layout.shape[3]
        self.weights = {dtype: np.ascontiguousarray(layout, dtype=dtype) for dtype in (np.int32, np.int64)}
        self.biases = {dtype: bias.astype(dtype) for dtype in (np.int32, np.int64)}
        # Every partial sum of an output is within |bias| + max|input| * sum|weights of that output|.
        self.weight_sum = int(np.abs(layout.astype(np.int64)).sum(axis=(0, 1, 2)).max())
        self.bias_max = int(np.abs(bias.astype(np.int64)).max())

    def run(self, a: np.ndarray, in_max: int, shift: int, top: int, out: np.ndarray = None) -> np.ndarray:
        """The layer on (H, W, C_in) int32 activations bounded by ``in_max``: (2H, 2W, C_out) int32
        activations (transposed convolution) or, into ``out``, (C_out, H, W) int32 indexes (convolution)."""
        dtype = np.int32 if in_max * self.weight_sum + self.bias_max <= _INT32_MAX else np.int64
        h, wd = a.shape[:2]
        if self.conv:
            kernel, rows = kernels.conv3x3_rows, h
        else:
            kernel, rows = kernels.deconv_s2_rows, 2 * h
            out = np.empty((2 * h, 2 * wd, self.cout), dtype=np.int32)
        # Bands of output rows, one per core: each kernel call releases the GIL.
        edges = np.linspace(0, rows, min(workers(), rows) + 1).astype(int)
        parallel_map(kernel, [(a, self.weights[dtype], self.biases[dtype], shift, top, out, int(y0), int(y1))
                              for y0, y1 in zip(edges[:-1], edges[1:])])
        return out


def _round_shift(acc: np.ndarray, shift: int) -> np.ndarray:
    """``floor(acc / 2^shift + 1/2)`` on int64 (arithmetic shift: floor for negatives too)."""
    return (acc + (1 << (shift - 1))) >> shift


def _relu_shift(acc: np.ndarray, shift: int) -> np.ndarray:
    return np.clip(_round_shift(np.maximum(acc, 0), shift), 0, _ACT_MAX)


def _deconv_s2(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Transposed conv, kernel 5, stride 2, padding 2, output_padding 1 (PyTorch semantics), int64.

    Input pixel (i, j) and tap (kh, kw) add to output pixel (2i + kh - 2, 2j + kw - 2).
    """
    bsz, cin, h, wd = a.shape
    cout, k = w.shape[1], w.shape[2]
    pad = k // 2
    # One product for all taps: (B*h*w, Cin) @ (Cin, Cout*k*k).
    rows = a.transpose(0, 2, 3, 1).reshape(-1, cin)
    prod = (rows @ w.reshape(cin, -1).astype(np.int64)).reshape(bsz, h, wd, cout, k, k)
    # Accumulate on a canvas with `pad` extra pixels on each side, then crop.
    canvas = np.zeros((bsz, cout, 2 * h + 2 * pad + 1, 2 * wd + 2 * pad + 1), dtype=np.int64)
    for kh in range(k):
        for kw in range(k):
            canvas[:, :, kh:kh + 2 * h:2, kw:kw + 2 * wd:2] += prod[:, :, :, :, kh, kw].transpose(0, 3, 1, 2)
    out = canvas[:, :, pad:pad + 2 * h, pad:pad + 2 * wd]
    return out + b.astype(np.int64)[None, :, None, None]


def _conv3x3(a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Conv, kernel 3, stride 1, zero padding 1 (PyTorch cross-correlation semantics), int64."""
    bsz, cin, h, wd = a.shape
    padded = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
    # im2col: columns ordered (Cin, kh, kw) like the flattened PyTorch weight.
    cols = np.stack([padded[:, :, kh:kh + h, kw:kw + wd] for kh in range(3) for kw in range(3)], axis=2)
    cols = cols.reshape(bsz, cin * 9, h * wd).transpose(0, 2, 1).reshape(-1, cin * 9)
    out = cols @ w.reshape(w.shape[0], -1).T.astype(np.int64)
    out = out.reshape(bsz, h, wd, -1).transpose(0, 3, 1, 2)
    return out + b.astype(np.int64)[None, :, None, None]
