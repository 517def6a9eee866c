"""RateController: the highest quality whose predicted rate fits the budget."""
import pytest

from xmodal_compress_ros.ros.rate_control import RateController


def feed(controller, quality, nbytes, frames=20, fps=10.0, start=0.0):
    for i in range(frames):
        controller.observe_image(quality, nbytes, start + i / fps)
    return start + frames / fps


def test_starts_at_the_configured_quality():
    assert RateController(6).choose(100.0, start_quality=3) == 3
    assert RateController(4).choose(100.0, start_quality=9) == 3


def test_picks_highest_fitting_quality_with_measured_ratio():
    controller = RateController(6, alpha=1.0)
    t = feed(controller, 1, 1000)       # 8 kbit per frame at 10 fps: 80 kbit/s
    feed(controller, 3, 4000, start=t)  # 320 kbit/s, so the ratio per level is 2
    assert controller.predicted_kbps(1) == pytest.approx(80.0)
    assert controller.predicted_kbps(2) == pytest.approx(160.0)
    assert controller.predicted_kbps(5) == pytest.approx(1280.0)
    assert controller.choose(200.0, start_quality=3) == 2
    assert controller.choose(330.0, start_quality=3) == 3
    assert controller.choose(10.0, start_quality=3) == 0


def test_lidar_rate_is_taken_off_the_budget():
    controller = RateController(4, alpha=1.0, step_ratio=2.0)
    feed(controller, 2, 1000)  # 80 kbit/s at level 2, 160 at 3, 40 at 1
    assert controller.choose(170.0, start_quality=2) == 3
    for i in range(5):
        controller.observe_lidar(1250, i / 10.0)  # 100 kbit/s
    assert controller.lidar_kbps == pytest.approx(100.0)
    assert controller.choose(170.0, start_quality=2) == 1


def test_ema_follows_a_change_in_content():
    controller = RateController(2, alpha=0.5)
    t = feed(controller, 0, 1000, frames=5)
    feed(controller, 0, 3000, frames=10, start=t)
    assert controller.predicted_kbps(0) == pytest.approx(240.0, rel=0.01)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match='num_qualities'):
        RateController(0)
    with pytest.raises(ValueError, match='alpha'):
        RateController(3, alpha=0.0)
