"""``xmodal export``: ONNX graphs + manifest on disk, the --check comparison, bad resolutions."""
import json

import pytest
import torch

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.cli.export import parse_resolutions
from xmodal_compress_ros.errors import ParameterError
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models

pytest.importorskip('onnxruntime')


@pytest.fixture(autouse=True)
def only_export(monkeypatch):
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {'export': 'export'})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_export_with_check(capsys, tmp_path):
    twin = untrained_models(tmp_path, TINY_CONFIG)[1]
    code = cli.main(['export', '--model', twin, '--out', str(tmp_path / 'onnx'), '--resolutions', '200x100',
                     '--dynamic', '--check', '--check-frames', '1'])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and sorted(result['graphs']) == sorted(
        ['encoder.onnx', 'mean.onnx', 'decoder.onnx', 'encoder_256x128.onnx', 'mean_256x128.onnx',
         'decoder_256x128.onnx'])
    assert json.loads((tmp_path / 'onnx' / 'manifest.json').read_text())['model_id'] == result['model_id']
    assert len(result['check']) == 6
    assert all(r['frames'] == 1 and r['max_abs_diff'] < 1e-3 for r in result['check'])
    assert 'Conv' in result['op_types']


def test_resolution_parsing():
    assert parse_resolutions('1242x375, 1920X1080') == ((1242, 375), (1920, 1080))
    assert parse_resolutions('') == ()
    for bad in ('1242', 'axb', '0x10'):
        with pytest.raises(ParameterError, match='resolution'):
            parse_resolutions(bad)
