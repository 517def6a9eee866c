"""Inference forms: each rewrite computes what the trained layer does, and only where it applies."""
import copy

import pytest
import torch
import torch.nn as nn

from xmodal_compress_ros.codec.inference_forms import (DiagonalGDN, Parts, SplitInputConv, is_diagonal,
                                                       phase_conv_transpose, phase_taps, prepare_for_cpu)
from xmodal_compress_ros.codec.layers import GDN, deconv
from xmodal_compress_ros.codec.models import HyperpriorCodec, LidarConditionedCodec
from xmodal_compress_ros.codec.predictive import PredictiveCodec
from xmodal_compress_ros.runtime.graphs import example_inputs, graph_modules, graph_specs

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8)


def test_phase_taps_of_the_5x5_stride_2_layer():
    # Output phase r reads input offset m through tap r + 2 - 2m: even outputs taps 4, 2, 0, odd ones 3, 1.
    assert phase_taps(5, 2, 2) == {0: [-1, 0, 1], 1: [0, 1]}


@pytest.mark.parametrize('in_ch, out_ch, kernel, stride', [
    (48, 3, 5, 2), (7, 5, 5, 2), (1, 1, 5, 2), (6, 4, 1, 2), (3, 4, 9, 3), (4, 2, 4, 2), (5, 3, 6, 3)])
@pytest.mark.parametrize('memory_format', [torch.contiguous_format, torch.channels_last])
def test_phase_form_equals_the_transposed_convolution(in_ch, out_ch, kernel, stride, memory_format):
    torch.manual_seed(in_ch * 100 + kernel)
    padding = (kernel - stride + 1) // 2
    output_padding = stride - kernel + 2 * padding
    layer = nn.ConvTranspose2d(in_ch, out_ch, kernel, stride, padding, output_padding=output_padding)
    x = torch.randn(2, in_ch, 11, 14).contiguous(memory_format=memory_format)
    phased = phase_conv_transpose(layer).to(memory_format=memory_format)
    with torch.no_grad():
        expected, got = layer(x), phased(x)
    assert got.shape == expected.shape == (2, out_ch, 11 * stride, 14 * stride)
    assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max())


@pytest.mark.parametrize('layer', [nn.Conv2d(7, 4, 3, 2, 1), deconv(7, 4, 3),
                                   phase_conv_transpose(deconv(7, 3, 5))])
def test_split_input_form_equals_the_layer_on_the_concatenation(layer):
    torch.manual_seed(5)
    a, b = torch.randn(1, 4, 9, 10), torch.randn(1, 3, 9, 10)
    split = SplitInputConv(layer, 4)
    with torch.no_grad():
        expected = layer(torch.cat([a, b], dim=1))
        for got in (split(Parts((a, b))), split(torch.cat([a, b], dim=1))):
            assert got.shape == expected.shape
            assert (got - expected).abs().max() <= 1e-5 * max(1.0, expected.abs().max())


def test_layers_without_a_phase_form_are_refused():
    for layer in (deconv(4, 2, 3), nn.ConvTranspose2d(4, 2, 5, 2, 2, output_padding=1, groups=2),
                  nn.ConvTranspose2d(4, 2, 7, 2, 3, output_padding=1), nn.ConvTranspose2d(4, 2, 5, 2, 1)):
        with pytest.raises(ValueError, match='no phase form'):
            phase_conv_transpose(layer)


@pytest.mark.parametrize('inverse', [False, True])
def test_diagonal_gdn_equals_gdn(inverse):
    torch.manual_seed(1)
    gdn = GDN(12, inverse=inverse)
    with torch.no_grad():
        gdn.gamma_sqrt.copy_(torch.diag(torch.randn(12)))
        gdn.beta_sqrt.copy_(torch.randn(12))
    x = 3 * torch.randn(1, 12, 9, 10).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected, got = gdn(x), DiagonalGDN(gdn)(x)
    assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_training_keeps_gdn_diagonal():
    """Why every trained GDN has a diagonal form: gamma's off-diagonal roots start at zero, where the
    gradient of their square is zero."""
    torch.manual_seed(2)
    gdn = GDN(6)
    optimizer = torch.optim.Adam(gdn.parameters(), lr=0.1, weight_decay=1e-4)
    for _ in range(5):
        optimizer.zero_grad()
        gdn(torch.randn(4, 6, 5, 5)).square().mean().backward()
        optimizer.step()
    assert is_diagonal(gdn)
    with torch.no_grad():
        gdn.gamma_sqrt[0, 1] = 0.1
    assert not is_diagonal(gdn)


@pytest.mark.parametrize('cls', [HyperpriorCodec, LidarConditionedCodec, PredictiveCodec])
def test_prepared_graphs_agree_with_the_model(cls):
    torch.manual_seed(3)
    model = cls(**TINY).eval()
    with torch.no_grad():  # a GDN that is not diagonal stays as it is
        model.g_s.igdn2.gamma_sqrt[0, 1] = 0.2
        for parameter in model.parameters():  # the context's paths start at zero: give them weight
            if not parameter.any():
                parameter.normal_(0.0, 0.1)
    prepared = prepare_for_cpu(copy.deepcopy(model))
    assert type(prepared.g_s.igdn1) is DiagonalGDN and type(prepared.g_a.gdn3) is DiagonalGDN
    assert type(prepared.g_s.igdn2) is GDN
    deconv4 = prepared.g_s.deconv4
    assert deconv4.shuffle is not None if cls is not HyperpriorCodec else isinstance(deconv4, nn.Sequential)
    split = [type(m) for m in (prepared.g_a.conv2, prepared.g_a.conv3, prepared.g_s.deconv3, deconv4)]
    assert split == [SplitInputConv if cls is not HyperpriorCodec else t for t in (
        nn.Conv2d, nn.Conv2d, nn.ConvTranspose2d, nn.Sequential)]
    reference, rewritten = graph_modules(model), graph_modules(prepared.to(memory_format=torch.channels_last))
    for name, spec in graph_specs(model).items():
        inputs = example_inputs(spec, 64, 128, seed=4).values()
        with torch.inference_mode():
            expected, got = reference[name](*inputs), rewritten[name](*inputs)
        for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                        got if isinstance(got, tuple) else (got,)):
            assert (g - e).abs().max() <= 1e-5 * max(1.0, e.abs().max()), name
