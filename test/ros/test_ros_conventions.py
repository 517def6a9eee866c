"""The nodes as ROS users meet them: lazy coding, qos_overrides, calibration from CameraInfo and TF (or
none), LiDAR intensities kept at their scale.

Processes talk over DDS on a private domain; the frame counts are small (the test machine is slow).
"""
import time

import numpy as np
import pytest

from conftest import tiny_calibration, tiny_frames

pytestmark = [pytest.mark.ros, pytest.mark.slow]
rclpy = pytest.importorskip('rclpy')

from xmodal_compress_ros.ros import conversions  # noqa: E402
from xmodal_compress_ros.ros.bag_player import DISCOVERY_SETTLE_S  # noqa: E402
from xmodal_compress_ros.ros.node_processes import start_node, stop_nodes  # noqa: E402
from xmodal_compress_ros.ros.stream_probe import StreamProbe  # noqa: E402
from xmodal_compress_ros.ros.stream_session import ENCODER_COMMAND, StreamSession  # noqa: E402
from xmodal_compress_ros.ros.transport import isolated_environment  # noqa: E402


def test_encoder_idles_without_subscribers_and_takes_qos_overrides(tmp_path, tiny_bag, node_codec,
                                                                   monkeypatch):
    """No decoder: every frame is counted idle, none coded; the image subscription was made reliable."""
    from rclpy.qos import ReliabilityPolicy

    env = isolated_environment()
    for key in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY'):
        monkeypatch.setenv(key, env[key])
    params = {'calibration_file': str(tiny_bag / 'calibration.yaml'), **node_codec.params,
              'diagnostics_period': 0.2,
              'qos_overrides': {'/camera/image_raw': {'subscription': {'reliability': 'reliable'}}}}
    encoder = start_node('encoder', ENCODER_COMMAND, tmp_path, env, params)
    probe = StreamProbe('/unused')  # diagnostics only: nothing subscribes to the packets
    try:
        def subscriptions(topic):
            return [info for info in probe.node.get_subscriptions_info_by_topic(topic)
                    if info.node_name == 'xmodal_encoder']

        assert probe.wait_for(lambda: subscriptions('/camera/image_raw') and subscriptions('/lidar/points'),
                              60, alive=encoder.alive), encoder.log_tail()
        assert subscriptions('/camera/image_raw')[0].qos_profile.reliability == ReliabilityPolicy.RELIABLE
        assert subscriptions('/lidar/points')[0].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
        time.sleep(DISCOVERY_SETTLE_S)
        player = start_node('player', ['-m', 'xmodal_compress_ros.ros.bag_player', str(tiny_bag)], tmp_path,
                            env)
        assert player.popen.wait(60) == 0, player.log_tail()
        assert probe.wait_for(lambda: probe.node_diagnostics('xmodal_encoder').get('frames_in') == '10', 10)
        diagnostics = probe.node_diagnostics('xmodal_encoder')
    finally:
        probe.close()
        stop_nodes([encoder])
    assert diagnostics['idle'] == '10'
    assert diagnostics['frames_out'] == '0' and diagnostics['scans_out'] == '0'
    assert 'coding while the packets have a subscriber' in encoder.log_tail(100)


def camera_info_session(tmp_path, codec, **encoder_params):
    """Nodes with the encoder in CameraInfo mode (no calibration file)."""
    encoder = {'camera_info_topic': 'camera/camera_info', 'quality': 2, 'lidar_timeout': 5.0, **codec.params,
               **encoder_params}
    return StreamSession(tmp_path / 'logs', encoder, dict(codec.decoder_params), start_timeout=60)


def stream_frames(session, frames):
    """Publish CameraInfo, then each frame (scan, image) waiting for its decoded image."""
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    node, probe = session.probe.node, session.probe
    image_pub = node.create_publisher(Image, '/camera/image_raw', 10)
    info_pub = node.create_publisher(CameraInfo, '/camera/camera_info', 10)
    cloud_pub = node.create_publisher(PointCloud2, '/lidar/points', 10)
    assert probe.wait_for(lambda: image_pub.get_subscription_count() and cloud_pub.get_subscription_count()
                          and info_pub.get_subscription_count(), 10)
    time.sleep(DISCOVERY_SETTLE_S)
    info_pub.publish(conversions.camera_info_from_calibration(
        tiny_calibration(), conversions.make_header(frames[0].image_stamp_ns, 'camera')))
    for frame in frames:
        cloud_pub.publish(conversions.numpy_to_pointcloud2(
            frame.points, conversions.make_header(frame.lidar_stamp_ns, 'lidar')))
        time.sleep(0.3)  # the scan is coded before the image needs it
        image_pub.publish(conversions.numpy_to_image(frame.image, 'rgb8',
                                                     conversions.make_header(frame.image_stamp_ns, 'camera')))
        assert probe.wait_for(lambda: frame.image_stamp_ns in {r.stamp_ns for r in probe.images}, 30)
    assert probe.wait_for(lambda: probe.node_diagnostics('xmodal_encoder').get('frames_out') ==
                          str(len(frames)), 5)
    return probe.node_diagnostics('xmodal_encoder')


def test_without_an_extrinsic_images_go_image_only_with_one_warning(tmp_path, node_codec):
    frames = list(tiny_frames(3, seed=5))
    with camera_info_session(tmp_path, node_codec) as s:
        diagnostics = stream_frames(s, frames)
        packets = list(s.probe.packets)
        encoder_log = (s.log_dir / 'encoder.log').read_text()
    assert diagnostics['image_only'] == '3' and diagnostics['extrinsic'].startswith('none')
    assert int(diagnostics['scans_dropped.no_extrinsic']) == 3
    assert {p.kind for p in packets} == {'image'}  # scans are not sent without an extrinsic
    assert encoder_log.count('(no_extrinsic)') == 1
    assert 'T_cam_lidar' in encoder_log and '/tf_static' in encoder_log


def quaternion_xyzw(R):
    """The unit quaternion of a rotation matrix (for a trace > -1, as here)."""
    w = np.sqrt(1.0 + np.trace(R)) / 2
    return ((R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w), w)


def test_camera_info_and_a_static_transform_replace_the_calibration_file(tmp_path, node_codec):
    """The extrinsic from /tf_static (camera <- lidar) with the intrinsics from CameraInfo."""
    tf2_msgs = pytest.importorskip('tf2_msgs.msg', reason='tf2_msgs is not on PyPI: needs a ROS install')
    from geometry_msgs.msg import TransformStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    T = tiny_calibration().T_cam_lidar
    transform = TransformStamped()
    transform.header.frame_id, transform.child_frame_id = 'camera', 'lidar'
    (transform.transform.rotation.x, transform.transform.rotation.y, transform.transform.rotation.z,
     transform.transform.rotation.w) = quaternion_xyzw(T[:3, :3])
    frames = list(tiny_frames(3, seed=6))
    with camera_info_session(tmp_path, node_codec) as s:
        qos = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
        s.probe.node.create_publisher(tf2_msgs.TFMessage, '/tf_static', qos).publish(
            tf2_msgs.TFMessage(transforms=[transform]))
        diagnostics = stream_frames(s, frames)
    assert diagnostics['extrinsic'] == 'TF lidar -> camera'
    assert diagnostics['image_only'] == '0' and diagnostics['scans_out'] == '3'


def test_intensities_0_to_255_survive_the_encoder_node(tmp_path, node_codec):
    """An 8-bit driver's intensities: the detected range is 255 and every integer comes back exactly."""
    from xmodal_compress_ros.ros.encoder_node import EncoderNode

    tiny_calibration().to_yaml(tmp_path / 'calibration.yaml')
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(isolated_environment()['ROS_DOMAIN_ID']))
    params = {'calibration_file': str(tmp_path / 'calibration.yaml'), **node_codec.params}
    overrides = [rclpy.parameter.Parameter(name, value=value) for name, value in params.items()]
    node = EncoderNode(context=context, parameter_overrides=overrides)
    try:
        points = next(tiny_frames(1)).points.copy()
        points[:, 3] = np.arange(len(points)) % 256
        intensity_max = node._intensity_range(points)
        packet, _ = node._encoder.encode_scan(points, 0, 'lidar', intensity_max)
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    decoded = node_codec.pipeline.Decoder(node_codec.decoder_config()).decode_lidar(packet).points
    assert intensity_max == 255.0
    assert np.array_equal(np.sort(decoded[:, 3]), np.sort(points[:, 3]))  # Draco may reorder points


def test_static_transform_tree_chains_transforms_to_the_camera():
    """The /tf_static fallback (no tf2_ros): lidar -> base_link -> camera gives T_cam_lidar."""
    from types import SimpleNamespace as NS

    from xmodal_compress_ros.ros.static_tf import StaticTransformTree

    def stamped(parent, child, T):
        x, y, z, w = quaternion_xyzw(T[:3, :3])
        return NS(header=NS(frame_id=parent), child_frame_id=child, transform=NS(
            translation=NS(x=T[0, 3], y=T[1, 3], z=T[2, 3]), rotation=NS(x=x, y=y, z=z, w=w)))

    T_cam_lidar = tiny_calibration().T_cam_lidar.copy()
    T_cam_lidar[:3, 3] = [0.1, -0.2, 0.3]
    T_base_lidar = np.eye(4)
    T_base_lidar[:3, 3] = [1.0, 0.0, 1.5]
    T_base_cam = T_base_lidar @ np.linalg.inv(T_cam_lidar)
    tree = StaticTransformTree()
    tree.add(stamped('base_link', 'lidar', T_base_lidar))
    assert tree.lookup('camera', 'lidar') is None  # not connected yet
    tree.add(stamped('/base_link', 'camera', T_base_cam))
    np.testing.assert_allclose(tree.lookup('camera', 'lidar'), T_cam_lidar, atol=1e-9)
    np.testing.assert_allclose(tree.lookup('lidar', 'camera'), np.linalg.inv(T_cam_lidar), atol=1e-9)
