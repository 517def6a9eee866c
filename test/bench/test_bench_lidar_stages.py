"""bench/bench_lidar_stages.py: every stage it names is a function the codec calls, the stages add
up to the call, and the codec's functions are put back afterwards."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from bench_lidar_stages import DECODE_STAGES, ENCODE_STAGES, stage_times  # noqa: E402
from xmodal_compress_ros.codec import lidar_codec  # noqa: E402


def test_every_stage_runs_and_the_stages_add_up_to_the_call():
    points, _ = lidar_codec._synthetic_scan(lasers=32, firings=900)
    points[:, :3] += np.random.default_rng(0).normal(0, 0.02, (len(points), 3)).astype(np.float32)
    originals = [getattr(module, function) for _, module, function in ENCODE_STAGES + DECODE_STAGES]
    means = stage_times([('synthetic', points)], lidar_codec.LidarCodecConfig(), rounds=2)
    for call, stages in (('encode', ENCODE_STAGES), ('decode', DECODE_STAGES)):
        for name, _, _ in stages:
            assert means[f'{call}: {name}'] >= 0, name  # present: the codec called it
        assert means[f'{call}: total'] > 0
        assert means[f'{call}: rest'] >= -0.05 * means[f'{call}: total']  # nested stages not counted twice
    assert means['encode: entropy coding'] >= means['encode: entropy coding: rANS']
    assert [getattr(module, function) for _, module, function in ENCODE_STAGES + DECODE_STAGES] == originals
