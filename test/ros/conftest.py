"""Fixtures of the node tests: a tiny sensor bag and the codec the node processes run."""
import sys
from pathlib import Path

import numpy as np
import pytest

# The tests import conftest's helpers (pytest runs with --import-mode=importlib).
sys.path.insert(0, str(Path(__file__).resolve().parent))
try:
    import composition_interfaces  # noqa: F401  (a ROS install has it)
except ImportError:
    # Not on PyPI: launch_ros.actions imports it for composable nodes, which the launch files do not use.
    sys.path.append(str(Path(__file__).resolve().parent / 'stubs'))

WIDTH, HEIGHT = 96, 64
PERIOD_NS = 100_000_000  # 10 Hz
START_NS = 1_700_000_000_000_000_000


def tiny_calibration(width=WIDTH, height=HEIGHT):
    from xmodal_compress_ros.geometry.calibration import Calibration

    K = np.array([[80.0, 0, width / 2], [0, 80.0, height / 2], [0, 0, 1]])
    # LiDAR x forward, y left, z up -> camera z forward, x right, y down.
    T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    return Calibration(width=width, height=height, K=K, P=np.hstack([K, np.zeros((3, 1))]), T_cam_lidar=T)


def tiny_frames(count, calib=None, seed=0, lidar_offset_ns=0):
    """SensorFrames with smooth random images and a few hundred points in front of the camera."""
    from xmodal_compress_ros.data.frames import SensorFrame

    calib = calib or tiny_calibration()
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:calib.height, 0:calib.width]
    for i in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        image = np.stack([127 + 100 * np.sin(xx / (7 + c) + yy / 11 + phase[c]) for c in range(3)], axis=2)
        points = np.column_stack([rng.uniform(2, 30, 500), rng.uniform(-10, 10, 500), rng.uniform(-2, 2, 500),
                                  rng.uniform(0, 1, 500)]).astype(np.float32)
        stamp = START_NS + i * PERIOD_NS
        yield SensorFrame(image=image.astype(np.uint8), points=points, calib=calib, image_stamp_ns=stamp,
                          lidar_stamp_ns=stamp + lidar_offset_ns, name=str(i))


@pytest.fixture(scope='session')
def tiny_bag(tmp_path_factory):
    """A 10-frame sensor bag (96x64 images, 10 Hz) with its calibration.yaml."""
    from xmodal_compress_ros.data.rosbag_io import write_sensor_bag

    path = tmp_path_factory.mktemp('bag') / 'tiny'
    write_sensor_bag(path, tiny_frames(10))
    return path


class NodeCodec:
    """The codec the node processes run: the committed models, else tiny untrained ones (same API)."""

    def __init__(self, stems):
        from xmodal_compress_ros.codec import pipeline

        self.pipeline = pipeline
        self.stems = stems
        # One torch thread per process: the 2-core test machine runs several of them at once.
        # Every image a key frame (the stream mode has its own test): the offline comparisons are intra.
        # tier quality: the LiDAR-conditioned model given, whether or not a fast model is installed.
        self.params = {'tier': 'quality', 'model': stems[0], 'fallback_model': stems[1], 'threads': 1,
                       'keyframe_interval': 1}
        self.decoder_params = {'models': list(stems), 'resolutions': [WIDTH, HEIGHT], 'threads': 1}

    def encoder_config(self, quality):
        return self.pipeline.EncoderConfig(model=self.stems[0], fallback_model=self.stems[1], quality=quality,
                                           threads=1)

    def decoder_config(self):
        return self.pipeline.DecoderConfig(models=tuple(self.stems), resolutions=((WIDTH, HEIGHT),),
                                           threads=1)


@pytest.fixture(scope='session')
def node_codec(tmp_path_factory):
    from xmodal_compress_ros.runtime.samples import TINY_CONFIG, committed_models, untrained_models

    return NodeCodec(committed_models() or untrained_models(tmp_path_factory.mktemp('models'), TINY_CONFIG))
