"""Remote side: decoder_node (xmodal packets in, Image and PointCloud2 out) with the LARGE_DATA transport.

    ros2 launch xmodal_compress_ros remote.launch.py image_topic:=/camera/image_decoded

Parameters not given here come from ``params_file`` (default: the package's config/decoder.yaml);
see docs/nodes.md.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from xmodal_compress_ros.ros.launch_support import node_arguments, transport_environment, typed_overrides

PACKAGE = 'xmodal_compress_ros'


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('packet_topic', default_value='/camera/image_raw/xmodal',
                              description='Input packets (the encoder output).'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_decoded',
                              description='Decoded camera images (sensor_msgs/Image).'),
        DeclareLaunchArgument('lidar_topic', default_value='/lidar/points_decoded',
                              description='Decoded LiDAR scans (sensor_msgs/PointCloud2).'),
        DeclareLaunchArgument('output_encoding', default_value='rgb8',
                              description='Encoding of the decoded images: rgb8 or bgr8.'),
    ] + node_arguments('decoder.yaml')
    overrides = typed_overrides({
        'packet_topic': str, 'image_topic': str, 'lidar_topic': str, 'backend': str, 'device': str,
        'output_encoding': str,
    })
    overrides['models'] = [LaunchConfiguration('model'), LaunchConfiguration('fallback_model')]
    decoder = Node(package=PACKAGE, executable='decoder_node', name='xmodal_decoder', output='screen',
                   parameters=[LaunchConfiguration('params_file'), overrides])
    return LaunchDescription(arguments + transport_environment() + [decoder])
