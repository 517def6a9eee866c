"""NodeStats: counters, latency percentiles, windowed throughput."""
import pytest

from xmodal_compress_ros.ros.node_stats import NodeStats


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_counts_return_running_totals_and_filter_by_prefix():
    stats = NodeStats()
    assert stats.count('drop.replaced') == 1
    assert stats.count('drop.replaced', 2) == 3
    stats.count('drop.bad_image')
    stats.count('frames_in')
    assert stats.counts('drop.') == {'bad_image': 1, 'replaced': 3}
    assert stats.get('frames_in') == 1 and stats.get('missing') == 0


def test_latency_percentiles_over_a_rolling_window():
    stats = NodeStats(latency_samples=100)
    assert stats.latency_ms('encode') is None
    for ms in range(1, 201):
        stats.record_latency('encode', ms / 1000.0)
    p50, p99 = stats.latency_ms('encode')
    assert p50 == pytest.approx(150.5)
    assert p99 == pytest.approx(199.01)


def test_latency_values_name_the_diagnostics_keys_of_streams_with_samples():
    stats = NodeStats(latency_samples=10)
    stats.record_latency('decode', 0.02)
    values = stats.latency_values('decode', 'lidar_decode')
    assert values == {'decode_latency_p50_ms': pytest.approx(20.0),
                      'decode_latency_p99_ms': pytest.approx(20.0)}


def test_kbps_over_the_window():
    clock = FakeClock()
    stats = NodeStats(window_s=2.0, clock=clock)
    clock.now += 10.0
    for _ in range(4):
        stats.record_bytes('image', 1000)
        clock.now += 0.5
    assert stats.kbps('image') == pytest.approx(16.0)   # 4000 bytes in 2 s
    clock.now += 5.0
    assert stats.kbps('image') == 0.0
    assert stats.kbps('lidar') == 0.0
