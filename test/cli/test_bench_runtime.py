"""``xmodal bench-runtime``: a short run writes per-stage percentiles and names what it could not measure."""
import json

import pytest

from xmodal_compress_ros.cli import __main__ as cli
from xmodal_compress_ros.runtime.benchmark import STAGES, percentiles
from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models


@pytest.fixture(autouse=True)
def only_bench(monkeypatch):
    monkeypatch.setattr(cli, 'SUBCOMMANDS', {'bench-runtime': 'bench_runtime'})


def test_short_run_writes_json(capsys, tmp_path):
    lidar, twin = untrained_models(tmp_path, TINY_CONFIG)
    out = tmp_path / 'runtime.json'
    code = cli.main(['bench-runtime', '--backends', 'torch,tensorrt', '--precisions', 'fp32,fp16,bf16',
                     '--sizes', '128x64', '--frames', '2',
                     '--warmup', '1', '--threads', '1', '--model', lidar, '--fallback-model', twin,
                     '--out', str(out)])
    # The CPU is timed in fp32 and in bf16 (torch); fp16 and TensorRT need CUDA.
    assert code == 0 and json.loads(capsys.readouterr().out.splitlines()[-1])['rows'] == 2
    result = json.loads(out.read_text())
    assert [(r['backend'], r['precision']) for r in result['rows']] == [('torch', 'fp32'), ('torch', 'bf16')]
    row = result['rows'][0]
    assert (row['backend'], row['device'], row['width'], row['height']) == ('torch', 'cpu', 128, 64)
    assert row['frames'] == 2 and row['warmup'] == 1
    assert set(row['stages_ms']) == set(STAGES) and row['source'] == 'synthetic'
    assert row['stages_ms']['decode_image']['p50'] >= row['stages_ms']['decoder_network']['p50'] > 0
    assert result['device']['cpu_count'] >= 1 and result['models']['stems'] == [lidar, twin]
    if 'tensorrt' not in [r['backend'] for r in result['rows']]:
        assert any(u['backend'] == 'tensorrt' and u['reason'] for u in result['unmeasured'])


def test_frame_counts_per_size():
    from xmodal_compress_ros.cli.bench_runtime import _frame_counts
    from xmodal_compress_ros.errors import ParameterError

    assert _frame_counts('100', 2) == [100, 100] and _frame_counts('100,20', 2) == [100, 20]
    for bad in ('0', '1,2,3', 'x'):
        with pytest.raises(ParameterError, match='--frames'):
            _frame_counts(bad, 2)


def test_percentiles():
    stats = percentiles(list(range(1, 101)))
    assert stats == {'p50': 50.5, 'p95': 95.05, 'p99': 99.01, 'mean': 50.5}


def test_bf16_is_timed_by_default_only_where_it_pays(monkeypatch):
    from xmodal_compress_ros.cli import bench_runtime
    from xmodal_compress_ros.runtime import cpu_features

    for fast, expected in ((True, 'fp32,fp16,bf16'), (False, 'fp32,fp16'), (None, 'fp32,fp16')):
        monkeypatch.setattr(cpu_features, 'fast_bf16', lambda: fast)
        assert bench_runtime.default_precisions() == expected
