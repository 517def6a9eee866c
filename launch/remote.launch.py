"""Remote side: decoder_node (xmodal packets in, Image and PointCloud2 out) with the LARGE_DATA transport.

    ros2 launch xmodal_compress_ros remote.launch.py image_topic:=/camera/image_decoded

Parameters not given here come from ``params_file`` (default: the package's config/decoder.yaml);
see docs/nodes.md.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = 'xmodal_compress_ros'
# glibc keeps image-sized buffers in the heap instead of mapping and unmapping them per message.
MALLOC_THRESHOLD = str(64 * 1024 * 1024)


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, 'config')
    models = os.path.join(share, 'models')
    arguments = [
        DeclareLaunchArgument('packet_topic', default_value='/camera/image_raw/xmodal',
                              description='Input packets (the encoder output).'),
        DeclareLaunchArgument('image_topic', default_value='/camera/image_decoded',
                              description='Decoded camera images (sensor_msgs/Image).'),
        DeclareLaunchArgument('lidar_topic', default_value='/lidar/points_decoded',
                              description='Decoded LiDAR scans (sensor_msgs/PointCloud2).'),
        DeclareLaunchArgument('model', default_value=os.path.join(models, 'xmodal-lidar'),
                              description='Stem of the LiDAR-conditioned model.'),
        DeclareLaunchArgument('fallback_model', default_value=os.path.join(models, 'xmodal-hyperprior'),
                              description='Stem of the image-only twin model.'),
        DeclareLaunchArgument('backend', default_value='torch',
                              description='Inference backend: torch, onnxruntime or tensorrt.'),
        DeclareLaunchArgument('device', default_value='cpu', description='Inference device: cpu or cuda.'),
        DeclareLaunchArgument('output_encoding', default_value='rgb8',
                              description='Encoding of the decoded images: rgb8 or bgr8.'),
        DeclareLaunchArgument('params_file', default_value=os.path.join(config, 'decoder.yaml'),
                              description='ros__parameters file with the remaining decoder parameters.'),
        DeclareLaunchArgument('fastdds_profile', default_value=os.path.join(config, 'fastdds_large_data.xml'),
                              description='Fast DDS XML profile selecting the LARGE_DATA transport.'),
    ]
    environment = [
        SetEnvironmentVariable('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', LaunchConfiguration('fastdds_profile')),
        SetEnvironmentVariable('MALLOC_MMAP_THRESHOLD_', MALLOC_THRESHOLD),
        SetEnvironmentVariable('MALLOC_TRIM_THRESHOLD_', MALLOC_THRESHOLD),
    ]
    overrides = {
        'packet_topic': ParameterValue(LaunchConfiguration('packet_topic'), value_type=str),
        'image_topic': ParameterValue(LaunchConfiguration('image_topic'), value_type=str),
        'lidar_topic': ParameterValue(LaunchConfiguration('lidar_topic'), value_type=str),
        'models': [LaunchConfiguration('model'), LaunchConfiguration('fallback_model')],
        'backend': ParameterValue(LaunchConfiguration('backend'), value_type=str),
        'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
        'output_encoding': ParameterValue(LaunchConfiguration('output_encoding'), value_type=str),
    }
    decoder = Node(package=PACKAGE, executable='decoder_node', name='xmodal_decoder', output='screen',
                   parameters=[LaunchConfiguration('params_file'), overrides])
    return LaunchDescription(arguments + environment + [decoder])
