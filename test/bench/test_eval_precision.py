"""bench/eval_precision.py: bf16 against fp32 on the CPU, through the product's own Encoder and Decoder."""
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from eval_precision import arm_name, ARMS, code_frame, summarise  # noqa: E402

from xmodal_compress_ros.codec.pipeline import Decoder, DecoderConfig  # noqa: E402
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, synthetic_frame, untrained_models  # noqa: E402


def test_precisions_parse_alike_and_only_the_reconstruction_moves(tmp_path):
    lidar, _ = untrained_models(tmp_path, TINY_CONFIG)
    args = SimpleNamespace(model=lidar, threads=1)
    decoders = {p: Decoder(DecoderConfig(models=(lidar,), precision=p, threads=1, warmup=False))
                for p in ('fp32', 'bf16')}
    frame = synthetic_frame(192, 128, seed=3)
    result = code_frame(args, frame, decoders, levels=2)
    assert result['symbol_mismatches'] == 0
    points = result['points']
    assert set(points) == {arm_name(a) for a in ARMS} and all(len(v) == 2 for v in points.values())
    # The same packets, decoded in fp32 and in bf16: equal bytes, nearly equal PSNR.
    assert [b for b, _ in points['fp32->bf16']] == [b for b, _ in points['fp32->fp32']]
    for (_, reference), (_, bf16) in zip(points['fp32->fp32'], points['fp32->bf16']):
        assert np.isfinite(reference) and abs(bf16 - reference) < 0.5


def test_summary_reports_each_arm_against_fp32():
    reference = [(1000 * 2 ** q, 30.0 + 2 * q) for q in range(4)]
    worse = [(b * 1.1, p) for b, p in reference]  # 10 % more bytes at every quality
    frame = {'points': {'fp32->fp32': reference, 'fp32->bf16': worse, 'bf16->bf16': reference}}
    arms = summarise([frame], [[100, 80]], levels=4)
    assert arms['fp32->bf16']['bd_rate_vs_fp32_percent'] == 10.0
    assert arms['bf16->bf16']['bd_rate_vs_fp32_percent'] == 0.0
    assert arms['fp32->bf16']['max_abs_psnr_change_db'] == 0.0
    assert 'bd_rate_vs_fp32_percent' not in arms['fp32->fp32']
