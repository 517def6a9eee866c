"""TensorRT backend: optimisation profiles everywhere; engines only where TensorRT and a GPU exist."""
import pytest
import torch

from xmodal_compress_ros.runtime.base import BackendOptions, create_backend, get_backend_class
from xmodal_compress_ros.runtime.tensorrt_backend import optimisation_profile


def test_profile_spans_the_padded_resolutions():
    assert optimisation_profile([(1242, 375), (1920, 1080)]) == {
        'min': (1280, 384), 'opt': (1280, 384), 'max': (1920, 1088)}
    assert optimisation_profile([(32, 20)]) == {'min': (64, 64), 'opt': (64, 64), 'max': (64, 64)}


def _require_tensorrt():
    pytest.importorskip('tensorrt')
    if not get_backend_class('tensorrt').is_available('cuda'):
        pytest.skip('TensorRT needs a CUDA GPU')


@pytest.mark.tensorrt
@pytest.mark.parametrize('precision, tolerance', [('fp32', 1e-3), ('fp16', 0.05)])
def test_engines_agree_with_pytorch_and_are_cached(tmp_path, precision, tolerance):
    _require_tensorrt()
    from xmodal_compress_ros.codec.model_io import load_model
    from xmodal_compress_ros.runtime.graphs import example_inputs
    from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models

    model = load_model(untrained_models(tmp_path, TINY_CONFIG)[0])
    options = BackendOptions(device='cuda', precision=precision, cache_dir=str(tmp_path / 'cache'),
                             resolutions=((192, 128), (320, 256)))
    backend = create_backend('tensorrt', model, options)
    reference = create_backend('torch', model, BackendOptions(device='cuda'))
    for name, spec in backend.specs.items():
        for h, w in ((128, 192), (256, 320)):
            inputs = {k: v.cuda() for k, v in example_inputs(spec, h, w).items()}
            got, expected = backend.run(name, inputs), reference.run(name, inputs)
            for out in spec.output_names:
                assert got[out].is_cuda
                scale = max(1.0, expected[out].abs().max().item())
                assert (got[out] - expected[out]).abs().max().item() <= tolerance * scale
    engines = sorted((tmp_path / 'cache' / 'tensorrt').rglob('*.engine'))
    assert len(engines) == 3
    stamps = [p.stat().st_mtime_ns for p in engines]
    create_backend('tensorrt', model, options)
    assert [p.stat().st_mtime_ns for p in engines] == stamps
    torch.cuda.synchronize()
