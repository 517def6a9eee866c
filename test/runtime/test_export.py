"""ONNX export: manifest, TensorRT-supported operators, static and dynamic graphs, agreement with PyTorch."""
import hashlib
import json

import pytest

from xmodal_compress_ros.codec.model_io import load_model
from xmodal_compress_ros.codec.models import HyperpriorCodec
from xmodal_compress_ros.errors import ModelFileError
from xmodal_compress_ros.runtime.export import (MANIFEST_NAME, TENSORRT_OPS, check_export, export_model,
                                                read_manifest)
from xmodal_compress_ros.runtime.samples import (TINY_CONFIG, crop_frame, kitti_frames, synthetic_frame,
                                                 untrained_models, untrained_pframe_model)

pytestmark = pytest.mark.usefixtures('one_torch_thread')

pytest.importorskip('onnxruntime')


@pytest.fixture(scope='module')
def lidar_model(tmp_path_factory):
    return load_model(untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG)[0])


@pytest.fixture(scope='module')
def exported(lidar_model, tmp_path_factory):
    out = tmp_path_factory.mktemp('export')
    return out, export_model(lidar_model, out, resolutions=[(200, 100)], dynamic=True)


def test_manifest_describes_every_graph(lidar_model, exported):
    out, manifest = exported
    assert read_manifest(out) == json.loads((out / MANIFEST_NAME).read_text()) == manifest
    assert manifest['model_id'] == lidar_model.metadata['model_id'] and manifest['opset'] >= 17
    assert manifest['architecture'] == 'xmodal-lidar'
    assert manifest['quality_levels'] == lidar_model.quality_levels
    files = {g['file'] for g in manifest['graphs']}
    assert files == {'encoder.onnx', 'mean.onnx', 'decoder.onnx', 'encoder_256x128.onnx', 'mean_256x128.onnx',
                     'decoder_256x128.onnx'}
    for graph in manifest['graphs']:
        assert hashlib.sha256((out / graph['file']).read_bytes()).hexdigest() == graph['sha256']
        assert set(graph['op_types']) <= TENSORRT_OPS
        names = [t['name'] for t in graph['inputs']]
        if graph['resolution'] is None:
            assert graph['inputs'][0]['shape'][2] in ('H', 'H/64')
        else:
            assert graph['resolution'] == [200, 100] and graph['padded_resolution'] == [256, 128]
            assert all(isinstance(d, int) for t in graph['inputs'] for d in t['shape'])
        expected = {'encoder': ['x', 'depth', 'gain'], 'mean': ['z_hat', 'c_hyper'],
                    'decoder': ['z_hat', 'symbols', 'depth', 'gain']}[graph['name']]
        assert names == expected


def test_onnx_graphs_match_pytorch(lidar_model, exported):
    out, _ = exported
    frames = [synthetic_frame(200, 100, seed=1), synthetic_frame(320, 180, seed=2)]
    records = check_export(lidar_model, out, frames, quality=2)
    by_file = {r['file']: r for r in records}
    assert by_file['decoder.onnx']['frames'] == 2 and by_file['decoder_256x128.onnx']['frames'] == 1
    for record in records:
        assert record['max_abs_diff'] < 1e-3, record


@pytest.mark.kitti
def test_onnx_graphs_match_pytorch_on_kitti(lidar_model, exported, kitti_root):
    out, _ = exported
    frames = [crop_frame(f, 200, 100) for f in kitti_frames(1, kitti_root)]
    assert all(r['max_abs_diff'] < 1e-3 for r in check_export(lidar_model, out, frames))


def test_export_errors(lidar_model, tmp_path):
    with pytest.raises(ModelFileError, match='load it from its model files'):
        export_model(HyperpriorCodec(**TINY_CONFIG), tmp_path)
    with pytest.raises(ModelFileError, match='nothing to export'):
        export_model(lidar_model, tmp_path, dynamic=False)
    with pytest.raises(ModelFileError, match='opset 13'):
        export_model(lidar_model, tmp_path, opset=13)
    with pytest.raises(ModelFileError, match='xmodal export'):
        read_manifest(tmp_path / 'missing')


def test_p_frame_graphs_export_and_match_pytorch_with_a_reference(tmp_path):
    """The P-frame codec's graphs take the 4-plane reference where the LiDAR model takes depth."""
    twin = untrained_models(tmp_path / 'models', TINY_CONFIG)[1]
    pframe = load_model(untrained_pframe_model(tmp_path / 'models', twin))
    out = tmp_path / 'export'
    manifest = export_model(pframe, out, resolutions=[(200, 100)], dynamic=False)
    inputs = {g['name']: [t['name'] for t in g['inputs']] for g in manifest['graphs']}
    assert inputs['encoder'] == ['x', 'reference', 'gain'] and 'reference' in inputs['decoder']
    records = check_export(pframe, out, [synthetic_frame(200, 100, seed=3)], quality=1)
    assert all(r['frames'] == 1 and r['max_abs_diff'] < 1e-3 for r in records), records
