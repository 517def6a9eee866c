"""Model files: safetensors + JSON, validated on load (architecture, version, id, tensors)."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from xmodal_compress_ros.codec.model_io import (compute_model_id, load_model, model_paths, read_metadata,
                                                save_model)
from xmodal_compress_ros.codec.models import HyperpriorCodec, LidarConditionedCodec
from xmodal_compress_ros.errors import ModelFileError

TINY = dict(N=16, M=24, Nz=8, hyper_hidden=8)


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    torch.manual_seed(1)
    model = LidarConditionedCodec(**TINY, fusion='mmfft').eval()
    model.update()
    stem = tmp_path_factory.mktemp('models') / 'tiny-lidar'
    save_model(model, stem, {'training': {'frames': ['a/000001'], 'steps': 0}})
    return model, stem


def _copy(saved, tmp_path):
    _, stem = saved
    tensor_path, json_path = model_paths(stem)
    dst = tmp_path / 'copy'
    dst_t, dst_j = model_paths(dst)
    dst_t.write_bytes(tensor_path.read_bytes())
    dst_j.write_text(json_path.read_text())
    return dst, dst_t, dst_j


def test_round_trip_preserves_model_and_metadata(saved):
    model, stem = saved
    meta = read_metadata(stem)
    assert meta['architecture'] == 'xmodal-lidar' and meta['config']['fusion'] == 'mmfft'
    assert [q['lambda'] for q in meta['qualities']] == list(model.lambdas)
    assert meta['training']['frames'] == ['a/000001'] and len(meta['model_id']) == 32
    loaded = load_model(str(stem) + '.safetensors')
    assert isinstance(loaded, LidarConditionedCodec) and not loaded.training
    x = torch.rand(1, 3, 64, 64)
    compressed = model.compress(x, quality=2)
    torch.testing.assert_close(loaded.decompress(compressed), model.decompress(compressed), atol=0, rtol=0)
    assert loaded.compress(x, quality=2) == compressed


def test_tampered_weights_are_refused(saved, tmp_path):
    dst, dst_t, _ = _copy(saved, tmp_path)
    tensors = load_file(str(dst_t))
    tensors['g_a.conv1.bias'] = tensors['g_a.conv1.bias'] + 1e-3
    save_file(tensors, str(dst_t))
    with pytest.raises(ModelFileError, match='model_id'):
        load_model(dst)


def test_unknown_architecture_lists_valid(saved, tmp_path):
    dst, _, dst_j = _copy(saved, tmp_path)
    meta = json.loads(dst_j.read_text())
    meta['architecture'] = 'xmodal-unknown'
    dst_j.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match='xmodal-hyperprior'):
        load_model(dst)


def test_unsupported_version(saved, tmp_path):
    dst, _, dst_j = _copy(saved, tmp_path)
    meta = json.loads(dst_j.read_text())
    meta['format_version'] = 99
    dst_j.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match='format_version 99'):
        load_model(dst)


def _rewrite(dst_t, dst_j, tensors):
    """Save tensors with a matching id, so only the structural check can catch the problem."""
    save_file(tensors, str(dst_t))
    meta = json.loads(dst_j.read_text())
    meta['model_id'] = compute_model_id(tensors)
    dst_j.write_text(json.dumps(meta))


@pytest.mark.parametrize('change, message', [
    ('drop', 'missing tensors'),
    ('extra', 'unexpected tensors'),
    ('shape', 'has shape'),
])
def test_structural_mismatch(saved, tmp_path, change, message):
    dst, dst_t, dst_j = _copy(saved, tmp_path)
    tensors = load_file(str(dst_t))
    if change == 'drop':
        del tensors['int_hyper.w2']
    elif change == 'extra':
        tensors['surprise'] = torch.zeros(2)
    else:
        tensors['g_s.deconv1.bias'] = torch.zeros(3)
    _rewrite(dst_t, dst_j, tensors)
    with pytest.raises(ModelFileError, match=message):
        load_model(dst)


def test_config_of_other_architecture(saved, tmp_path):
    dst, _, dst_j = _copy(saved, tmp_path)
    meta = json.loads(dst_j.read_text())
    meta['architecture'] = 'xmodal-hyperprior'
    dst_j.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match='config'):
        load_model(dst)


def test_missing_files(tmp_path):
    with pytest.raises(ModelFileError, match='not found'):
        load_model(tmp_path / 'absent')


def test_save_requires_update(tmp_path):
    with pytest.raises(ModelFileError, match='update'):
        save_model(HyperpriorCodec(**TINY), tmp_path / 'x')


def test_earlier_runs_read_history_and_the_older_backbone_key():
    from xmodal_compress_ros.codec.model_io import earlier_runs

    run = {'model_id': 'a' * 32, 'training': {'steps': 1}}
    assert earlier_runs({'history': [run]}) == [run]
    assert earlier_runs({'backbone': run}) == [run]
    assert earlier_runs({}) == []
