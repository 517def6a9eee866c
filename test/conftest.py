"""Shared fixtures: where the real KITTI frames live, and skips when they are absent."""
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$XMODAL_SHARED_DATA``."""
    return Path(os.environ.get('XMODAL_SHARED_DATA', REPO_ROOT.parent / 'shared' / 'data'))


@pytest.fixture(scope='session')
def kitti_root() -> Path:
    root = shared_data_dir()
    if not (root / 'kitti_object').is_dir():
        pytest.skip(f'real KITTI frames not found at {root}')
    return root


@pytest.fixture(scope='module')
def one_torch_thread():
    """One torch thread for a module: on a loaded 2-core machine two spinning threads are 10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def custom_bag():
    """Writes bags with rosbags directly, for contents ``write_sensor_bag`` refuses to produce.

    ``custom_bag(path, image_encoding='rgb8', lidar_messages=1, lidar_topic=None, lidar_type=None)``:
    one 2x2 image and ``lidar_messages`` scans (or images, with ``lidar_type`` the Image type) on
    ``lidar_topic`` (default the project's LiDAR topic); returns ``path``.
    """
    import numpy as np
    from rosbags.rosbag2 import Writer

    from xmodal_compress_ros.data import rosbag_io as rb
    from xmodal_compress_ros.ros import conversions

    start = 1_700_000_000_000_000_000

    def write(path, image_encoding='rgb8', lidar_messages=1, lidar_topic=None, lidar_type=None):
        lidar_topic, lidar_type = lidar_topic or rb.LIDAR_TOPIC, lidar_type or rb.POINTCLOUD_TYPE
        store = rb.typestore()
        header = conversions.make_header(start, 'camera', store.types['std_msgs/msg/Header'])
        image = conversions.numpy_to_image(np.zeros((2, 2, 3), np.uint8), 'rgb8', header,
                                           store.types[rb.IMAGE_TYPE])
        image.encoding = image_encoding
        cloud = conversions.numpy_to_pointcloud2(np.zeros((3, 4), np.float32), header,
                                                 msg_type=store.types[rb.POINTCLOUD_TYPE])
        with Writer(path, version=9) as writer:
            image_conn = writer.add_connection(rb.IMAGE_TOPIC, rb.IMAGE_TYPE, typestore=store)
            writer.write(image_conn, start, store.serialize_cdr(image, rb.IMAGE_TYPE))
            lidar_conn = writer.add_connection(lidar_topic, lidar_type, typestore=store)
            msg = cloud if lidar_type == rb.POINTCLOUD_TYPE else image
            for _ in range(lidar_messages):
                writer.write(lidar_conn, start, store.serialize_cdr(msg, lidar_type))
        return path

    return write
