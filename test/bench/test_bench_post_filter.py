"""bench/bench_post_filter.py: the "no filter" variant is the same model without its post filter."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from bench_post_filter import without_post_filter  # noqa: E402

from xmodal_compress_ros.codec.model_io import load_model  # noqa: E402
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models  # noqa: E402


def test_the_variant_keeps_every_other_tensor_and_the_bytes(tmp_path):
    stems = untrained_models(tmp_path, dict(TINY_CONFIG, post_filter=(8, 1)), post_filter_std=0.05)
    filtered = load_model(stems[1])
    plain = load_model(without_post_filter(stems[1], tmp_path))
    assert plain.post_filter is None and 'post_filter' not in plain.config
    assert plain.metadata['derived_from'] == filtered.metadata['model_id']
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, filtered.state_dict()[name]), name
    x = torch.rand(1, 3, 40, 70)
    compressed = filtered.compress(x, quality=2)
    assert plain.compress(x, quality=2).y_bytes == compressed.y_bytes
    with torch.no_grad():
        g_s_only = plain.decompress(compressed)
    assert (filtered.decompress(compressed) - g_s_only).abs().max() > 1e-3


def test_a_model_without_a_filter_is_refused(tmp_path):
    stems = untrained_models(tmp_path, TINY_CONFIG)
    with pytest.raises(SystemExit, match='no post filter'):
        without_post_filter(stems[1], tmp_path)
