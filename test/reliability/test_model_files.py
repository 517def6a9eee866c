"""Tampered or mismatched model files are refused with an error that names the difference."""

import json
import shutil
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from xmodal_compress_ros.codec.model_io import compute_model_id, load_model, model_paths
from xmodal_compress_ros.errors import ModelFileError


@pytest.fixture
def pair(codec_kit, tmp_path):
    """A fresh copy of the tiny LiDAR model's files: (stem, .safetensors path, .json path)."""
    stem = tmp_path / 'model'
    for src, dst in zip(model_paths(codec_kit.stems[0]), model_paths(stem)):
        shutil.copyfile(src, dst)
    return (stem, *model_paths(stem))


def _load(tensor_path):
    """The tensors, copied out of the memory-mapped file (which the tests then overwrite)."""
    return {name: tensor.clone() for name, tensor in load_file(str(tensor_path)).items()}


def _edit_json(path, **changes):
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            meta[key].update(value)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


def _rewrite_tensors(tensor_path, json_path, tensors):
    """Save changed tensors with a matching id and header, so only deeper checks can object."""
    meta = json.loads(json_path.read_text())
    meta['model_id'] = compute_model_id(tensors)
    json_path.write_text(json.dumps(meta))
    header = {
        k: json.dumps(meta[k], sort_keys=True)
        for k in ('format_version', 'architecture', 'config', 'model_id')
    }
    save_file(tensors, str(tensor_path), metadata=header)


def test_untouched_copy_loads(pair):
    assert load_model(pair[0]).metadata['architecture'] == 'xmodal-lidar'


def test_flipped_weight_byte(pair):
    _, tensor_path, _ = pair
    data = bytearray(tensor_path.read_bytes())
    (header_length,) = struct.unpack_from('<Q', data)
    data[8 + header_length + len(data[8 + header_length :]) // 2] ^= 0x10
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match='model_id .* does not match'):
        load_model(pair[0])


def test_flipped_header_byte(pair):
    _, tensor_path, _ = pair
    data = bytearray(tensor_path.read_bytes())
    data[12] ^= 0xFF
    tensor_path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError):
        load_model(pair[0])


def test_truncated_weights(pair):
    _, tensor_path, _ = pair
    tensor_path.write_bytes(tensor_path.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match='not a readable safetensors'):
        load_model(pair[0])


@pytest.mark.parametrize(
    'changes, named',
    [
        ({'architecture': 'xmodal-hyperprior'}, "'architecture'"),
        ({'architecture': 'xmodal-nonexistent'}, 'xmodal-hyperprior'),  # unknown: the valid names are listed
        ({'format_version': 2}, 'format_version 2'),
        ({'config': {'conditioning': 'zeros'}}, "'config'"),  # same tensors, different behaviour
        ({'config': {'N': 32}}, "'config'"),
        ({'model_id': '0' * 32}, "'model_id'"),
    ],
)
def test_edited_json(pair, changes, named):
    _edit_json(pair[2], **changes)
    with pytest.raises(ModelFileError, match=named):
        load_model(pair[0])


def test_renamed_tensor(pair):
    _, tensor_path, json_path = pair
    tensors = _load(tensor_path)
    tensors['g_s.renamed.weight'] = tensors.pop('g_s.deconv1.weight')
    save_file(tensors, str(tensor_path))
    with pytest.raises(ModelFileError, match='model_id'):
        load_model(pair[0])
    _rewrite_tensors(tensor_path, json_path, tensors)  # even with a consistent id
    with pytest.raises(
        ModelFileError, match=r"missing tensors \['g_s.deconv1.weight'\].*'g_s.renamed.weight'"
    ):
        load_model(pair[0])


def test_wrong_dtype(pair):
    _, tensor_path, json_path = pair
    tensors = _load(tensor_path)
    tensors['g_a.conv1.weight'] = tensors['g_a.conv1.weight'].half()
    _rewrite_tensors(tensor_path, json_path, tensors)
    with pytest.raises(
        ModelFileError, match='g_a.conv1.weight has dtype torch.float16, expected torch.float32'
    ):
        load_model(pair[0])


def test_wrong_table_dtype(pair):
    _, tensor_path, json_path = pair
    tensors = _load(tensor_path)
    name = next(n for n in tensors if n.startswith('int_hyper') and tensors[n].dtype == torch.int16)
    tensors[name] = tensors[name].float()
    _rewrite_tensors(tensor_path, json_path, tensors)
    with pytest.raises(ModelFileError, match='dtype'):
        load_model(pair[0])


def test_wrong_shape(pair):
    _, tensor_path, json_path = pair
    tensors = _load(tensor_path)
    tensors['g_s.deconv1.bias'] = torch.zeros(3)
    _rewrite_tensors(tensor_path, json_path, tensors)
    with pytest.raises(ModelFileError, match=r'g_s.deconv1.bias has shape \(3,\)'):
        load_model(pair[0])


def test_json_of_another_model(pair, codec_kit):
    stem, _, json_path = pair
    shutil.copyfile(model_paths(codec_kit.stems[1])[1], json_path)  # the twin's JSON beside LiDAR weights
    with pytest.raises(ModelFileError, match='disagree on'):
        load_model(stem)


@pytest.mark.parametrize('suffix', ['.pt', '.pth', '.ckpt'])
def test_pickle_checkpoint_is_refused(tmp_path, suffix):
    path = tmp_path / f'model{suffix}'
    torch.save({'w': torch.zeros(2)}, path)
    with pytest.raises(ModelFileError, match='pickle'):
        load_model(path)


def test_pickle_under_a_safetensors_name_is_refused(pair):
    _, tensor_path, _ = pair
    tensors = _load(tensor_path)
    tensor_path.unlink()
    torch.save(tensors, tensor_path)
    with pytest.raises(ModelFileError, match='pickle'):
        load_model(pair[0])


def test_file_without_header_copy_still_loads(pair):
    """Files written before the header carried the metadata load; only the JSON-vs-header check is skipped."""
    _, tensor_path, _ = pair
    save_file(_load(tensor_path), str(tensor_path))
    assert load_model(pair[0]).metadata['architecture'] == 'xmodal-lidar'
