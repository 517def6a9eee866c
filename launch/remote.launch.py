"""Remote side: decoder_node (xmodal packets in; Image, CameraInfo and PointCloud2 out).

    ros2 launch xmodal_compress_ros remote.launch.py decoded_image_topic:=camera/image_raw

Topics are relative to ``namespace``. Parameters not given here come from ``params_file`` (default:
the package's config/decoder.yaml); see docs/nodes.md and docs/ros_install.md.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from xmodal_compress_ros.ros.launch_support import node_arguments, transport_environment, typed_overrides

PACKAGE = 'xmodal_compress_ros'


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('image_packet_topic', default_value='camera/image_raw/xmodal',
                              description='Input image packets (the encoder output).'),
        DeclareLaunchArgument('lidar_packet_topic', default_value='lidar/points/xmodal',
                              description='Input LiDAR packets (the encoder output).'),
        # Not image_topic/lidar_topic: those name the encoder's inputs when both files are included together.
        DeclareLaunchArgument('decoded_image_topic', default_value='decoded/camera/image_raw',
                              description='Decoded camera images (sensor_msgs/Image); their CameraInfo goes '
                                          'to camera_info beside them.'),
        DeclareLaunchArgument('decoded_lidar_topic', default_value='decoded/lidar/points',
                              description='Decoded LiDAR scans (sensor_msgs/PointCloud2).'),
        DeclareLaunchArgument('output_encoding', default_value='rgb8',
                              description='Encoding of the decoded images: rgb8 or bgr8.'),
    ] + node_arguments('decoder.yaml')
    overrides = typed_overrides({
        'image_packet_topic': str, 'lidar_packet_topic': str, 'backend': str, 'device': str,
        'output_encoding': str,
    })
    overrides['image_topic'] = LaunchConfiguration('decoded_image_topic')
    overrides['lidar_topic'] = LaunchConfiguration('decoded_lidar_topic')
    # A string array from substitutions: one list of substitutions per element (launch_ros joins a
    # flat list of substitutions into one string).
    overrides['models'] = [[LaunchConfiguration('model')], [LaunchConfiguration('fallback_model')],
                           [LaunchConfiguration('fast_model')]]
    decoder = Node(package=PACKAGE, executable='decoder_node', name='xmodal_decoder', output='screen',
                   namespace=LaunchConfiguration('namespace'),
                   parameters=[LaunchConfiguration('params_file'), overrides])
    return LaunchDescription(arguments + transport_environment() + [decoder])
