"""The model files in models/: small, safetensors, and naming the data they trained on, which is never
the evaluation drive (kitti_raw)."""
import json
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / 'models'
SHIPPED = sorted(MODELS.glob('*.json'))
LIMIT_BYTES = 20 * 1000 * 1000


def _runs(meta):
    """The model's last training run and every earlier one it started from."""
    return [meta['training']] + [run['training'] for run in meta.get('history', []) if 'training' in run]


def test_every_tier_and_frame_kind_ships_a_model():
    from xmodal_compress_ros.codec.tiers import DECODER_MODELS

    assert {Path(stem).name for stem in DECODER_MODELS} == {path.stem for path in SHIPPED}


@pytest.mark.parametrize('meta_path', SHIPPED, ids=lambda path: path.stem)
def test_model_files_are_small_safetensors(meta_path):
    weights = meta_path.with_suffix('.safetensors')
    assert weights.is_file() and weights.stat().st_size < LIMIT_BYTES
    # safetensors: an 8-byte little-endian header length, then a JSON header (never a pickle).
    header = weights.read_bytes()[:9]
    assert int.from_bytes(header[:8], 'little') < weights.stat().st_size and header[8:9] == b'{'


@pytest.mark.parametrize('meta_path', SHIPPED, ids=lambda path: path.stem)
def test_metadata_names_the_training_data_and_never_the_evaluation_drive(meta_path):
    meta = json.loads(meta_path.read_text())
    for run in _runs(meta):
        assert run['sources'] and run['frames'], meta_path.name
        named = ' '.join(run['sources'] + run['frames'])
        assert 'kitti_raw' not in named, f'{meta_path.name} trained on the evaluation drive'
