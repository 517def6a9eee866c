"""The integer scale path: exact against its float64 simulation, deterministic, dtype-independent."""
import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.integer_hyper import (SCALE_LEVELS, FakeQuantHyperSynthesis,
                                                     IntegerHyperSynthesis, index_to_scale, scale_table)
from xmodal_compress_ros.errors import ModelFileError


def _random_module(seed=0, in_ch=8, hidden=8, out_ch=12):
    torch.manual_seed(seed)
    module = FakeQuantHyperSynthesis(in_ch, hidden, out_ch)
    with torch.no_grad():
        for layer in module.layers():
            layer.weight.normal_(0.0, 0.15)
            layer.bias.normal_(0.0, 2.0)
        module.conv3.bias += SCALE_LEVELS / 2
    return module


@pytest.fixture(scope='module')
def module():
    return _random_module()


def _z(seed, shape=(2, 8, 3, 5), span=8):
    return torch.from_numpy(np.random.default_rng(seed).integers(-span, span + 1, size=shape)).float()


def test_float64_simulation_equals_int64(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    for seed in range(5):
        z = _z(seed)
        expected = int_path(z.numpy().astype(np.int64), engine='numpy')
        simulated = module.double()(z.double()).detach().numpy()
        module.float()
        assert expected.dtype == np.int32 and expected.shape == (2, 12, 12, 20)
        np.testing.assert_array_equal(simulated, expected)
        np.testing.assert_array_equal(int_path(z.numpy(), engine='numba'), expected)
        # Indexes spread over the table, so the comparison is not trivially all-clamped.
        assert len(np.unique(expected)) > 10


def test_float32_training_path_rarely_differs(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    z = _z(7, shape=(4, 8, 6, 6), span=20)
    simulated = module(z).detach().numpy()
    mismatch = np.mean(simulated != int_path(z.numpy()))
    assert mismatch < 1e-3


def test_engines_agree_and_repeat(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    z = _z(3).numpy()
    first = int_path(z.astype(np.int64), engine='numpy')
    for dtype in (np.int8, np.int16, np.int32, np.float32, np.float64):
        np.testing.assert_array_equal(int_path(z.astype(dtype)), first)
    np.testing.assert_array_equal(int_path(z, engine='numba'), first)
    np.testing.assert_array_equal(int_path(z), first)
    with pytest.raises(ValueError, match='engine'):
        int_path(z, engine='blas')


def test_index_is_clamped_to_table(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    out = int_path(_z(4, span=2000).numpy())
    assert out.min() >= 0 and out.max() <= SCALE_LEVELS - 1


def test_scale_table_matches_interpolation():
    table = scale_table()
    assert len(table) == SCALE_LEVELS and table[0] == pytest.approx(0.11) and table[-1] == pytest.approx(256)
    np.testing.assert_allclose(index_to_scale(torch.arange(SCALE_LEVELS).double()).numpy(), table, rtol=1e-12)


def test_rejects_float_weights_and_non_integer_input(module):
    params = IntegerHyperSynthesis.from_trained(module).tensors()
    bad = dict(params, w2=params['w2'].astype(np.float32))
    with pytest.raises(ModelFileError, match='w2'):
        IntegerHyperSynthesis(bad)
    with pytest.raises(ModelFileError, match='missing'):
        IntegerHyperSynthesis({k: v for k, v in params.items() if k != 'b3'})
    with pytest.raises(ValueError, match='integers'):
        IntegerHyperSynthesis(params)(np.full((1, 8, 2, 2), 0.5))


def test_straight_through_gradients_reach_every_layer(module):
    z = _z(5)
    module.zero_grad()
    index = module.continuous_index(z)
    index_to_scale(index).sum().backward()
    for layer in module.layers():
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def _extreme_params(seed, in_ch=6, hidden=5, out_ch=7):
    # int16 weights at full range and large biases: sums far past 2^31 in the first layer, activations
    # saturated at 2^ACT_BITS - 1 after it.
    rng = np.random.default_rng(seed)
    shapes = {'w1': (in_ch, hidden, 5, 5), 'w2': (hidden, hidden, 5, 5), 'w3': (out_ch, hidden, 3, 3)}
    params = {n: rng.choice([-2 ** 15, 2 ** 15 - 1, -7, 0, 3], size=shape).astype(np.int16)
              for n, shape in shapes.items()}
    for n, size in (('b1', hidden), ('b2', hidden), ('b3', out_ch)):
        params[n] = rng.integers(-2 ** 24, 2 ** 24, size=size).astype(np.int32)
    return params


@pytest.mark.parametrize('seed', range(4))
def test_kernels_are_exact_at_the_largest_magnitudes(seed):
    # |z_hat| up to 2^16 times int16 weights: the kernels must pick int64 accumulators for the first layer.
    int_path = IntegerHyperSynthesis(_extreme_params(seed))
    rng = np.random.default_rng(100 + seed)
    z = rng.integers(-2 ** 16, 2 ** 16 + 1, size=(2, 6, 3, 4))
    z[0, :, 0, 0] = 2 ** 16
    first = int_path._kernel_layers[0]
    assert 2 ** 16 * first.weight_sum > 2 ** 31
    expected = int_path(z, engine='numpy')
    np.testing.assert_array_equal(int_path(z, engine='numba'), expected)
    # Small inputs keep the first layer within int32: the same integers from the other accumulators.
    small = rng.integers(-3, 4, size=(1, 6, 5, 2))
    assert 3 * first.weight_sum + first.bias_max < 2 ** 31
    np.testing.assert_array_equal(int_path(small, engine='numba'), int_path(small, engine='numpy'))


def test_kernels_split_rows_in_any_band(module):
    # Sizes whose row counts do not divide among the threads, down to a single input row and column.
    int_path = IntegerHyperSynthesis.from_trained(module)
    for shape in ((1, 8, 1, 1), (1, 8, 1, 7), (3, 8, 5, 1), (1, 8, 7, 3)):
        z = np.random.default_rng(sum(shape)).integers(-30, 31, size=shape)
        np.testing.assert_array_equal(int_path(z, engine='numba'), int_path(z, engine='numpy'))
