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
        expected = int_path(z.numpy().astype(np.int64), exact='int64')
        simulated = module.double()(z.double()).detach().numpy()
        module.float()
        assert expected.dtype == np.int32 and expected.shape == (2, 12, 12, 20)
        np.testing.assert_array_equal(simulated, expected)
        # Indexes spread over the table, so the comparison is not trivially all-clamped.
        assert len(np.unique(expected)) > 10


def test_float32_training_path_rarely_differs(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    z = _z(7, shape=(4, 8, 6, 6), span=20)
    simulated = module(z).detach().numpy()
    mismatch = np.mean(simulated != int_path(z.numpy()))
    assert mismatch < 1e-3


def test_blas_and_int64_agree_and_repeat(module):
    int_path = IntegerHyperSynthesis.from_trained(module)
    z = _z(3).numpy()
    first = int_path(z.astype(np.int64))
    for dtype in (np.int8, np.int16, np.int32, np.float32, np.float64):
        np.testing.assert_array_equal(int_path(z.astype(dtype)), first)
    np.testing.assert_array_equal(int_path(z, exact='int64'), first)
    np.testing.assert_array_equal(int_path(z), first)


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


def test_blas_product_is_exact_at_the_largest_magnitudes():
    # Activations up to 2^16 times int16 weights over 1152 terms: every sum is an integer far below 2^53
    # but far above float32's 2^24, so a product in anything less than float64 would round.
    from xmodal_compress_ros.codec.integer_hyper import _int_matmul
    rng = np.random.default_rng(0)
    a = rng.integers(-2 ** 16, 2 ** 16 + 1, size=(300, 1152))
    b = rng.integers(-2 ** 15, 2 ** 15, size=(1152, 40)).astype(np.int16)
    a[0], b[:, 0] = 2 ** 16, 2 ** 15 - 1  # one sum at the extreme: 1152 * 2^16 * (2^15 - 1) > 2^41
    exact = a @ b.astype(np.int64)
    assert np.abs(exact).max() > 2 ** 41
    np.testing.assert_array_equal(_int_matmul(a, b, 'blas'), exact)
    np.testing.assert_array_equal(_int_matmul(a.T.copy().T, b.T.copy().T, 'blas'), exact)  # strided views
