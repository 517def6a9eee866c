"""Vehicle side: encoder_node (camera + LiDAR in, xmodal packets out) with the LARGE_DATA transport.

    ros2 launch xmodal_compress_ros vehicle.launch.py calibration_file:=/path/calib.yaml quality:=4

Parameters not given here come from ``params_file`` (default: the package's config/encoder.yaml);
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
        DeclareLaunchArgument('image_topic', default_value='/camera/image_raw',
                              description='Camera input (sensor_msgs/Image).'),
        DeclareLaunchArgument('lidar_topic', default_value='/lidar/points',
                              description='LiDAR input (sensor_msgs/PointCloud2).'),
        DeclareLaunchArgument('camera_info_topic', default_value='/camera/camera_info',
                              description='CameraInfo input, used with T_cam_lidar when calibration_file '
                                          'is empty.'),
        DeclareLaunchArgument('packet_topic', default_value='',
                              description='Output packet topic; empty: <image_topic>/xmodal.'),
        DeclareLaunchArgument('calibration_file', default_value='',
                              description='Calibration (project YAML, KITTI .txt or KITTI raw folder); '
                                          'empty: CameraInfo + T_cam_lidar from params_file.'),
        DeclareLaunchArgument('model', default_value=os.path.join(models, 'xmodal-lidar'),
                              description='Stem of the LiDAR-conditioned model.'),
        DeclareLaunchArgument('fallback_model', default_value=os.path.join(models, 'xmodal-hyperprior'),
                              description='Stem of the image-only twin model.'),
        DeclareLaunchArgument('backend', default_value='torch',
                              description='Inference backend: torch, onnxruntime or tensorrt.'),
        DeclareLaunchArgument('device', default_value='cpu', description='Inference device: cpu or cuda.'),
        DeclareLaunchArgument('quality', default_value='3',
                              description='Quality level (changeable at run time).'),
        DeclareLaunchArgument('target_kbps', default_value='0.0',
                              description='Link budget for images + LiDAR in kbit/s; 0 disables rate '
                                          'control.'),
        DeclareLaunchArgument('params_file', default_value=os.path.join(config, 'encoder.yaml'),
                              description='ros__parameters file with the remaining encoder parameters.'),
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
        'image_topic': ParameterValue(LaunchConfiguration('image_topic'), value_type=str),
        'lidar_topic': ParameterValue(LaunchConfiguration('lidar_topic'), value_type=str),
        'camera_info_topic': ParameterValue(LaunchConfiguration('camera_info_topic'), value_type=str),
        'packet_topic': ParameterValue(LaunchConfiguration('packet_topic'), value_type=str),
        'calibration_file': ParameterValue(LaunchConfiguration('calibration_file'), value_type=str),
        'model': ParameterValue(LaunchConfiguration('model'), value_type=str),
        'fallback_model': ParameterValue(LaunchConfiguration('fallback_model'), value_type=str),
        'backend': ParameterValue(LaunchConfiguration('backend'), value_type=str),
        'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
        'quality': ParameterValue(LaunchConfiguration('quality'), value_type=int),
        'target_kbps': ParameterValue(LaunchConfiguration('target_kbps'), value_type=float),
    }
    encoder = Node(package=PACKAGE, executable='encoder_node', name='xmodal_encoder', output='screen',
                   parameters=[LaunchConfiguration('params_file'), overrides])
    return LaunchDescription(arguments + environment + [encoder])
