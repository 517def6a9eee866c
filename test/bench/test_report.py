"""Benchmark report: BD-rate against an analytic case, and the structure of a small jpeg+webp run."""
import json

import numpy as np
import pytest

from xmodal_compress_ros.bench import metrics
from xmodal_compress_ros.bench.baselines import baseline_codecs
from xmodal_compress_ros.bench.report import ms_ssim_db, write_report
from xmodal_compress_ros.bench.runner import run_benchmark
from xmodal_compress_ros.bench.sources import BenchData, crop_to_common_size
from xmodal_compress_ros.data.frames import SensorFrame
from xmodal_compress_ros.geometry.calibration import Calibration


def _log_rate(quality):
    # A smooth cubic log-rate(quality) curve: the 3rd-order Bjontegaard fit reproduces it exactly.
    q = np.asarray(quality, np.float64)
    return -6.0 + 0.3 * q - 0.004 * q ** 2 + 1e-5 * q ** 3


@pytest.mark.parametrize('factor', [0.8, 1.0, 1.37])
def test_bd_rate_of_a_rate_scaled_curve_is_exactly_the_factor(factor):
    q_anchor = np.array([28.0, 30.0, 32.0, 34.0, 36.0, 38.0])
    q_test = np.array([29.0, 31.5, 33.0, 35.5, 37.0])
    result = metrics.bd_rate(np.exp(_log_rate(q_anchor)), q_anchor,
                             factor * np.exp(_log_rate(q_test)), q_test)
    assert result.percent == pytest.approx(100.0 * (factor - 1.0), abs=1e-6)
    assert result.overlap == (29.0, 37.0)


def test_bd_quality_of_a_quality_shifted_curve_is_exactly_the_shift():
    rates = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
    quality = 30 + 3 * np.log(rates) + 0.2 * np.log(rates) ** 2
    shifted = 30 + 3 * np.log(rates * 1.1) + 0.2 * np.log(rates * 1.1) ** 2 + 0.75
    result = metrics.bd_quality(rates, quality, rates * 1.1, shifted)
    assert result.delta == pytest.approx(0.75, abs=1e-9)
    assert result.overlap == pytest.approx((0.11, 1.6))
    assert metrics.bd_quality([0.1, 0.2], [20, 22], [1, 2], [30, 32]).delta is None


def test_bd_rate_states_missing_overlap():
    result = metrics.bd_rate([0.1, 0.2, 0.4, 0.8], [20, 22, 24, 26], [1, 2, 4, 8], [30, 32, 34, 36])
    assert result.percent is None and result.overlap is None and 'overlap' in result.note


def test_ms_ssim_identity_ordering_and_small_images():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (176, 192, 3), dtype=np.uint8)
    noisy = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    noisier = np.clip(image + rng.normal(0, 30, image.shape), 0, 255).astype(np.uint8)
    assert metrics.ms_ssim(image, image) == pytest.approx(1.0)
    assert 1.0 > metrics.ms_ssim(image, noisy) > metrics.ms_ssim(image, noisier) > 0.0
    assert np.isnan(metrics.ms_ssim(image[:100], noisy[:100]))
    assert ms_ssim_db(0.99) == pytest.approx(20.0)


def _bench_data(count=2, height=176, width=200):
    """Smooth textured frames; the second is a few pixels larger, as KITTI object frames are."""
    P = np.array([[150.0, 0, width / 2, 0], [0, 150.0, height / 2, 0], [0, 0, 1, 0]])
    frames = []
    for i in range(count):
        h, w = height + 2 * i, width + 3 * i
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        rgb = np.stack([128 + 90 * np.sin(xx / (9 + i)), 128 + 90 * np.cos(yy / 7), (xx + yy) % 256], -1)
        rgb += np.random.default_rng(i).normal(0, 6, rgb.shape)
        calib = Calibration(width=w, height=h, K=P[:, :3], P=P, T_cam_lidar=np.eye(4))
        frames.append(SensorFrame(image=np.clip(rgb, 0, 255).astype(np.uint8),
                                  points=np.zeros((0, 4), np.float32), calib=calib, name=f'f{i}'))
    sizes = tuple((f.image.shape[1], f.image.shape[0]) for f in frames)
    return BenchData('handmade', 'test', tuple(crop_to_common_size(frames)), 10.0, sizes, False)


def test_common_crop_keeps_intrinsics():
    data = _bench_data()
    assert data.size == (200, 176)
    assert all(f.image.shape == (176, 200, 3) and f.calib.image_size == (200, 176) for f in data.frames)
    assert data.original_sizes == ((200, 176), (203, 178))


def test_report_structure_of_a_jpeg_webp_run(tmp_path):
    data = _bench_data()
    codecs = {name: baseline_codecs()[name] for name in ('jpeg', 'webp')}
    settings = {'jpeg': [10, 30, 60, 90], 'webp': [10, 30, 60, 90]}
    result = run_benchmark(codecs, data, settings, show_progress=False)
    assert len(result.records) == 2 * 4 * 2
    report = write_report(tmp_path, result, data, {'lidar': None})
    for name in ('report.json', 'report.md', 'rd_psnr.png', 'rd_ms_ssim.png', 'crops.png'):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / 'crops.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    loaded = json.loads((tmp_path / 'report.json').read_text())
    assert loaded['dataset']['frames'] == ['f0', 'f1'] and loaded['dataset']['size'] == [200, 176]
    assert {'cpu', 'cores', 'ffmpeg', 'torch'} <= set(loaded['machine'])
    curves = loaded['curves']
    assert len(curves) == 8
    for point in curves:
        keys = {'codec', 'setting', 'bpp', 'psnr_db', 'ms_ssim', 'kbit_s', 'encode_ms', 'decode_ms'}
        assert keys <= set(point)
        assert isinstance(point['setting'], (int, float)) and point['bpp'] > 0 and 0 < point['ms_ssim'] <= 1
    jpeg = sorted((p for p in curves if p['codec'] == 'jpeg'), key=lambda p: p['setting'])
    assert [p['bpp'] for p in jpeg] == sorted(p['bpp'] for p in jpeg)
    assert loaded['bd_rate_vs_jpeg']['jpeg'] == 0.0
    assert isinstance(loaded['bd_rate_vs_jpeg']['webp'], float)
    entry = next(e for e in loaded['bd_rate']['entries'] if e['codec'] == 'webp' and e['metric'] == 'psnr_db')
    assert entry['anchor'] == 'jpeg' and entry['overlap'][0] < entry['overlap'][1]
    assert isinstance(entry['delta_quality'], float) and entry['rate_overlap'][0] < entry['rate_overlap'][1]
    assert loaded['crop']['panels'][0]['codec'] == 'jpeg'
    assert report['curves'][0]['kbit_s'] == pytest.approx(report['curves'][0]['bytes'] * 8 * 10 / 1000)
    markdown = (tmp_path / 'report.md').read_text()
    assert '| webp |' in markdown and 'BD-rate' in markdown and 'rd_psnr.png' in markdown


class _Counting:
    """Wraps a codec and counts its runs."""

    def __init__(self, codec):
        self.codec, self.runs = codec, 0
        self.settings = codec.settings

    def unavailable_reason(self):
        return None

    def describe(self):
        return self.codec.describe()

    def run(self, frames, setting, fps):
        self.runs += 1
        return self.codec.run(frames, setting, fps)


def test_cache_reuses_measurements_of_the_same_frames(tmp_path):
    data = _bench_data()
    first = _Counting(baseline_codecs()['jpeg'])
    result = run_benchmark({'jpeg': first}, data, {'jpeg': [20, 80]}, False, cache_dir=tmp_path)
    again = _Counting(baseline_codecs()['jpeg'])
    cached = run_benchmark({'jpeg': again}, data, {'jpeg': [20, 80]}, False, cache_dir=tmp_path)
    assert first.runs == 2 and again.runs == 0
    assert cached.records == result.records
    assert np.array_equal(cached.crops[('jpeg', 20.0)], result.crops[('jpeg', 20.0)])
    other = _bench_data(height=180)
    run_benchmark({'jpeg': again}, other, {'jpeg': [20]}, False, cache_dir=tmp_path)
    assert again.runs == 1
