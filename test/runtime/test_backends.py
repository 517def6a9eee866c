"""Backends: registry, options, agreement with the PyTorch reference, the ONNX graph cache."""
import json

import numpy as np
import pytest
import torch

from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime.base import (BackendOptions, available_backends, backend_names,
                                              create_backend, get_backend_class)
from xmodal_compress_ros.runtime.graphs import GRAPH_NAMES, example_inputs, graph_modules, graph_specs
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models

pytestmark = pytest.mark.usefixtures('one_torch_thread')

H, W = 128, 192


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """LiDAR model, twin, and both again with a post filter (its decoder graph has a quality input)."""
    stems = untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG)
    filtered = untrained_models(tmp_path_factory.mktemp('filtered'), dict(TINY_CONFIG, post_filter=(8, 1)),
                                post_filter_std=0.05)
    return [load_model(stem) for stem in stems + filtered]


def test_registry_names_and_errors():
    assert backend_names() == ('torch', 'onnxruntime', 'tensorrt')
    assert {'torch', 'onnxruntime'} <= set(available_backends('cpu'))
    assert 'tensorrt' not in available_backends('cpu')
    with pytest.raises(ParameterError, match="unknown backend 'tflite'; valid: torch, onnxruntime, tensorrt"):
        get_backend_class('tflite')
    for name in backend_names():
        cls = get_backend_class(name)
        assert cls.name == name
        if cls.is_available('cpu'):
            assert cls.get_version()


def test_options_are_validated():
    with pytest.raises(ParameterError, match='device'):
        BackendOptions(device='tpu')
    with pytest.raises(ParameterError, match='precision'):
        BackendOptions(precision='int8')
    with pytest.raises(ParameterError, match='resolutions'):
        BackendOptions(resolutions=((0, 10),))
    with pytest.raises(ParameterError, match='threads'):
        BackendOptions(threads=-1)
    assert BackendOptions(resolutions=[[640.0, 480]]).resolutions == ((640, 480),)


def test_unavailable_backends_say_why(models):
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match='no CUDA GPU'):
            create_backend('torch', models[0], BackendOptions(device='cuda'))
    with pytest.raises(ParameterError, match='does not run precision'):
        create_backend('onnxruntime', models[0], BackendOptions(precision='fp16'))
    cls = get_backend_class('tensorrt')
    if not cls.is_available('cuda'):
        assert 'tensorrt' in cls.unavailable_reason('cuda') or 'GPU' in cls.unavailable_reason('cuda')
    assert 'cuda' in cls.unavailable_reason('cpu')


@pytest.mark.parametrize('backend, device, precision, tolerance', [
    ('torch', 'cpu', 'fp32', 1e-5), ('torch', 'cpu', 'fp16', 0.05), ('torch', 'cpu', 'bf16', 0.3),
    ('onnxruntime', 'cpu', 'fp32', 1e-4),
    ('torch', 'cuda', 'fp32', 1e-4), ('torch', 'cuda', 'fp16', 0.05), ('onnxruntime', 'cuda', 'fp32', 1e-4)])
def test_graphs_agree_with_the_reference(models, tmp_path_factory, backend, device, precision, tolerance):
    """Every graph on every backend, device and precision matches the plain modules, fp32 NCHW on the
    CPU (the torch backend runs channels_last; CUDA rows run where there is a GPU; TF32 convolutions keep
    fp32 within 1e-4)."""
    options = BackendOptions(device=device, precision=precision,
                             cache_dir=str(tmp_path_factory.getbasetemp() / 'cache'))
    for model in models:
        reference = graph_modules(model)
        try:
            other = create_backend(backend, model, options)
        except ParameterError as exc:
            pytest.skip(str(exc))
        assert other.describe()['backend'] == backend
        for name, spec in graph_specs(model).items():
            inputs = example_inputs(spec, H, W, seed=1)
            with torch.inference_mode():
                outputs = reference[name](*inputs.values())
            expected = dict(zip(spec.output_names, outputs if isinstance(outputs, tuple) else (outputs,)))
            got = other.run(name, {k: v.numpy() for k, v in inputs.items()})
            assert list(got) == list(spec.output_names)
            for out in spec.outputs:
                assert tuple(got[out.name].shape) == out.concrete_shape(H, W)
                assert got[out.name].device == other.device
                diff = (got[out.name].float().cpu() - expected[out.name]).abs().max().item()
                scale = max(1.0, expected[out.name].abs().max().item())
                assert diff <= tolerance * scale, (name, out.name, diff)


def test_run_checks_graph_and_input_names(models):
    backend = create_backend('torch', models[1])
    with pytest.raises(ParameterError, match="unknown graph 'hyper'"):
        backend.run('hyper', {})
    with pytest.raises(ParameterError, match=r"takes inputs \['z_hat'\]"):
        backend.run('mean', {'z': np.zeros((1, 8, 1, 1), np.float32)})


def test_onnx_graphs_are_cached_and_revalidated(models, tmp_path):
    pytest.importorskip('onnxruntime')
    model = models[1]
    create_backend('onnxruntime', model, BackendOptions(cache_dir=str(tmp_path)))
    folder = next((tmp_path / 'onnx').iterdir())
    assert folder.name == f'{model.metadata["model_id"]}-opset17'
    files = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert set(files) == {'manifest.json'} | {f'{g}.onnx' for g in GRAPH_NAMES}
    create_backend('onnxruntime', model, BackendOptions(cache_dir=str(tmp_path)))
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == files
    # A damaged cached graph fails its sha256 check and is exported again.
    (folder / 'mean.onnx').write_bytes(b'garbage')
    backend = create_backend('onnxruntime', model, BackendOptions(cache_dir=str(tmp_path)))
    assert (folder / 'mean.onnx').stat().st_size > 1000
    spec = backend.specs['mean']
    assert backend.run('mean', example_inputs(spec, 64, 64))['mu'].shape == (1, TINY_CONFIG['M'], 4, 4)
    # An export whose graphs take other inputs (an older build's, same weights) is exported again.
    manifest = json.loads((folder / 'manifest.json').read_text())
    for entry in manifest['graphs']:
        if entry['name'] == 'decoder':
            entry['inputs'] = entry['inputs'][:-1]
    (folder / 'manifest.json').write_text(json.dumps(manifest))
    backend = create_backend('onnxruntime', model, BackendOptions(cache_dir=str(tmp_path)))
    manifest = json.loads((folder / 'manifest.json').read_text())
    decoder = next(e for e in manifest['graphs'] if e['name'] == 'decoder')
    assert [t['name'] for t in decoder['inputs']] == list(backend.specs['decoder'].input_names)


@pytest.mark.parametrize('fast', [False, True, None])
def test_bf16_on_a_cpu_without_amx_warns(models, monkeypatch, fast):
    import warnings

    from xmodal_compress_ros.runtime import torch_backend

    monkeypatch.setattr(torch_backend, 'fast_bf16', lambda: fast)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        create_backend('torch', models[0], BackendOptions(device='cpu', precision='bf16'))
        create_backend('torch', models[0], BackendOptions(device='cpu', precision='fp32'))
    slow = [w for w in caught if issubclass(w.category, RuntimeWarning) and 'without AMX' in str(w.message)]
    assert len(slow) == (1 if fast is False else 0)
