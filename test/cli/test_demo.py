"""``xmodal demo`` on a tiny bag with tiny untrained models: real node processes over DDS."""
import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]
pytest.importorskip('rclpy')

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'ros'))
from conftest import tiny_frames  # noqa: E402  (test/ros/conftest.py: small synthetic frames)

from xmodal_compress_ros.cli.__main__ import main  # noqa: E402


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    from xmodal_compress_ros.runtime.samples import TINY_CONFIG, untrained_models, untrained_pframe_model

    folder = tmp_path_factory.mktemp('models')
    lidar, twin = untrained_models(folder, TINY_CONFIG)
    return lidar, twin, untrained_pframe_model(folder, twin)


def test_demo_prints_a_summary_and_a_json_line_last(tmp_path, models, capfd):
    # capfd, not capsys: rclpy's EventsExecutor enables faulthandler, which needs a real sys.stderr.
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    write_sensor_bag(tmp_path / 'bag', tiny_frames(8))
    out = tmp_path / 'out'
    code = main(['demo', '--bag', str(tmp_path / 'bag'), '--out', str(out), '--tier', 'quality',
                 '--model', models[0], '--fallback-model', models[1], '--rate', '0.4', '--quality', '2',
                 '--precision', 'bf16', '--pframe-model', models[2], '--keyframe-interval', '4'])
    lines = capfd.readouterr().out.strip().splitlines()
    assert code == 0, lines
    result = json.loads(lines[-1])
    assert {'frames_in', 'frames_out', 'kbps', 'psnr_db', 'latency_p50_ms', 'latency_p99_ms'} <= set(result)
    assert result['frames_in'] == 8 and result['frames_out'] == 8
    assert result['kbps'] == pytest.approx(result['image_kbps'] + result['lidar_kbps'], abs=0.01)
    assert result['image_kbps'] > 0 and result['lidar_kbps'] > 0 and result['image_hz'] == pytest.approx(10.0)
    assert 0 < result['latency_p50_ms'] <= result['latency_p99_ms'] < 10_000
    assert result['psnr_db'] > 0
    assert any(line.startswith('rate at the recorded rate') for line in lines)
    assert 'tier: quality (as requested)' in lines and result['tier'] == 'quality'
    assert (result['key_frames'], result['p_frames'], result['keyframe_interval']) == (2, 6, 4)
    assert any(line.startswith('stream: 2 key frames, 6 P frames') for line in lines)
    assert (out / 'demo_side_by_side.png').stat().st_size > 0
    assert {'encoder.log', 'decoder.log', 'player.log'} <= {p.name for p in (out / 'logs').iterdir()}
    # --precision reaches both nodes (their start lines name backend/device/precision).
    for log in ('encoder.log', 'decoder.log'):
        assert '(torch/cpu/bf16, ' in (out / 'logs' / log).read_text()


def test_demo_fast_tier_codes_image_only_with_scans_beside_the_images(tmp_path, models, capfd):
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    write_sensor_bag(tmp_path / 'bag', tiny_frames(6))
    out = tmp_path / 'out'
    # The twin stands in for the fast model: auto on the CPU takes it.
    code = main(['demo', '--bag', str(tmp_path / 'bag'), '--out', str(out), '--model', models[0],
                 '--fallback-model', models[1], '--fast-model', models[1], '--rate', '0.4',
                 '--quality', '2'])
    lines = capfd.readouterr().out.strip().splitlines()
    assert code == 0, lines
    result = json.loads(lines[-1])
    assert any(line.startswith('tier: fast (device cpu without a GPU') for line in lines), lines
    assert (result['tier'], result['frames_out'], result['image_only']) == ('fast', 6, 6)
    assert result['scans_sent'] == 6 and result['lidar_kbps'] > 0
    log = (out / 'logs' / 'encoder.log').read_text()
    assert 'tier fast' in log and 'scans coded beside the images' in log


def test_demo_fast_tier_codes_p_frames_with_the_fast_p_frame_model(tmp_path, models, capfd):
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    write_sensor_bag(tmp_path / 'bag', tiny_frames(6))
    out = tmp_path / 'out'
    # The quality tier's P-frame model is absent: the stream runs only if the fast tier takes its own.
    code = main(['demo', '--bag', str(tmp_path / 'bag'), '--out', str(out), '--model', models[0],
                 '--fallback-model', models[1], '--fast-model', models[1], '--rate', '0.4',
                 '--quality', '2', '--keyframe-interval', '3', '--pframe-model', str(tmp_path / 'absent'),
                 '--fast-pframe-model', models[2]])
    lines = capfd.readouterr().out.strip().splitlines()
    assert code == 0, lines
    result = json.loads(lines[-1])
    assert (result['tier'], result['frames_out']) == ('fast', 6), lines
    assert (result['key_frames'], result['p_frames'], result['keyframe_interval']) == (2, 4, 3)


def test_demo_names_a_missing_calibration(tmp_path, capsys):
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    write_sensor_bag(tmp_path / 'bag', tiny_frames(2), calibration_out=tmp_path / 'elsewhere.yaml')
    assert main(['demo', '--bag', str(tmp_path / 'bag'), '--out', str(tmp_path / 'out')]) == 2
    assert 'pass --calibration' in capsys.readouterr().err
