"""Compiled kernels of the integer hyper-synthesis (:class:`integer_hyper.IntegerHyperSynthesis`).

Each kernel computes one layer for a band of output rows, directly in integers: for every output
pixel an accumulator per output channel starts at the bias and adds ``activation * weight`` for every
input pixel and tap that reaches it, skipping zero activations (a third or more after the ReLUs).
The layer's shift, ReLU and clamp follow at once, so no int64 canvas or im2col matrix is built.

Exactness: the accumulators are int32 where the layer's bound (largest input magnitude times the
largest per-output sum of absolute weights, plus the largest bias) is below 2^31, else int64; the
caller picks the dtype. Every partial sum then fits, integer addition is associative, and the
result is the same integers on every machine, however the compiler vectorises the loops. The
kernels release the GIL, so bands run on several threads (:mod:`kernel_threads`).

Layouts: activations are (H, W, C) int32, channels last, so that the innermost loop runs over
contiguous output channels; weights are (C_in, k, k, C_out) in the accumulator's dtype.
"""
from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # IntegerHyperSynthesis falls back to its NumPy reference
    numba = None


def available() -> bool:
    """Whether the kernels can run (numba imports)."""
    return numba is not None


def _accumulate(acc, a, i, j, w, kh, kw):
    """``acc[co] += a[i, j, ci] * w[ci, kh, kw, co]`` for every channel pair, skipping zero inputs."""
    for ci in range(a.shape[2]):
        v = a[i, j, ci]
        if v != 0:
            for co in range(acc.shape[0]):
                acc[co] += v * w[ci, kh, kw, co]


def _rounded(acc, half, shift, top):
    """``clip(floor((acc + half) / 2^shift), 0, top)`` (arithmetic shift: floor for negatives too)."""
    return min(max((np.int64(acc) + half) >> shift, 0), top)


def deconv_s2_rows(a, w, b, shift, top, out, y0, y1):
    """Rows ``y0..y1-1`` of a stride-2 transposed convolution (PyTorch semantics, padding ``k // 2``,
    output padding 1), then ``clip(floor((acc + 2^(shift-1)) / 2^shift), 0, top)`` (the ReLU is the
    lower clip: the rounding shift is monotone and keeps 0 at 0).

    ``a``: (h, w, C_in) int32; ``w``: (C_in, k, k, C_out); ``b``: (C_out,) of ``w``'s dtype;
    ``out``: (2h, 2w, C_out) int32. Input pixel (i, j) and tap (kh, kw) reach output pixel
    (2i + kh - pad, 2j + kw - pad).
    """
    h, wd = a.shape[:2]
    k = w.shape[1]
    cout = w.shape[3]
    pad = k // 2
    half = 1 << (shift - 1)
    acc = np.empty_like(b)
    for oy in range(y0, y1):
        for ox in range(2 * wd):
            for co in range(cout):
                acc[co] = b[co]
            for kh in range((oy + pad) % 2, k, 2):
                i = (oy + pad - kh) // 2
                if i < 0 or i >= h:
                    continue
                for kw in range((ox + pad) % 2, k, 2):
                    j = (ox + pad - kw) // 2
                    if j < 0 or j >= wd:
                        continue
                    _accumulate(acc, a, i, j, w, kh, kw)
            for co in range(cout):
                out[oy, ox, co] = _rounded(acc[co], half, shift, top)


def conv3x3_rows(a, w, b, shift, top, out, y0, y1):
    """Rows ``y0..y1-1`` of a 3x3 convolution (cross-correlation, zero padding 1), then
    ``clip(floor((acc + 2^(shift-1)) / 2^shift), 0, top)`` written as (C_out, H, W) int32 ``out``.

    ``a``: (H, W, C_in) int32; ``w``: (C_in, 3, 3, C_out); ``b``: (C_out,) of ``w``'s dtype.
    """
    h, wd = a.shape[:2]
    cout = w.shape[3]
    half = 1 << (shift - 1)
    acc = np.empty_like(b)
    for y in range(y0, y1):
        for x in range(wd):
            for co in range(cout):
                acc[co] = b[co]
            for kh in range(3):
                i = y + kh - 1
                if i < 0 or i >= h:
                    continue
                for kw in range(3):
                    j = x + kw - 1
                    if j < 0 or j >= wd:
                        continue
                    _accumulate(acc, a, i, j, w, kh, kw)
            for co in range(cout):
                out[co, y, x] = _rounded(acc[co], half, shift, top)


if numba is not None:
    # No fastmath: integers only, and nothing here may be reassociated into anything but integers.
    _compile = numba.njit(nogil=True, cache=True)
    _inline = numba.njit(nogil=True, cache=True, inline='always')
    _accumulate = _inline(_accumulate)
    _rounded = _inline(_rounded)
    deconv_s2_rows = _compile(deconv_s2_rows)
    conv3x3_rows = _compile(conv3x3_rows)
