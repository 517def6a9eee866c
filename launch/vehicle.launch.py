"""Vehicle side: encoder_node (camera + LiDAR in, xmodal packets out).

    ros2 launch xmodal_compress_ros vehicle.launch.py image_topic:=/front/image_raw quality:=4

Topics are relative to ``namespace``; packets go to ``<image_topic>/xmodal`` and ``<lidar_topic>/xmodal``.
Parameters not given here come from ``params_file`` (default: the package's config/encoder.yaml);
see docs/nodes.md and docs/ros_install.md.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from xmodal_compress_ros.ros.launch_support import node_arguments, transport_environment, typed_overrides

PACKAGE = 'xmodal_compress_ros'


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument('image_topic', default_value='camera/image_raw',
                              description='Camera input (sensor_msgs/Image).'),
        DeclareLaunchArgument('lidar_topic', default_value='lidar/points',
                              description='LiDAR input (sensor_msgs/PointCloud2).'),
        DeclareLaunchArgument('camera_info_topic', default_value='camera/camera_info',
                              description='CameraInfo input: the intrinsics when calibration_file is empty.'),
        DeclareLaunchArgument('calibration_file', default_value='',
                              description='Calibration (project YAML, KITTI .txt or KITTI raw folder); '
                                          'empty: CameraInfo, and the extrinsic from TF or T_cam_lidar in '
                                          'params_file.'),
        DeclareLaunchArgument('tier', default_value='auto',
                              description='Models of the key frames: auto (fast on the CPU), fast or quality '
                                          '(docs/tiers.md).'),
        DeclareLaunchArgument('quality', default_value='5',
                              description='Quality level (changeable at run time).'),
        DeclareLaunchArgument('target_kbps', default_value='0.0',
                              description='Link budget for images + LiDAR in kbit/s; 0 disables rate '
                                          'control.'),
        DeclareLaunchArgument('lazy', default_value='true',
                              description='Code only while the packets have a subscriber; false to record '
                                          'them on the vehicle.'),
    ] + node_arguments('encoder.yaml')
    overrides = typed_overrides({
        'image_topic': str, 'lidar_topic': str, 'camera_info_topic': str, 'calibration_file': str,
        'tier': str, 'model': str, 'fallback_model': str, 'fast_model': str, 'backend': str, 'device': str,
        'quality': int,
        'target_kbps': float, 'lazy': bool,
    })
    encoder = Node(package=PACKAGE, executable='encoder_node', name='xmodal_encoder', output='screen',
                   namespace=LaunchConfiguration('namespace'),
                   parameters=[LaunchConfiguration('params_file'), overrides])
    return LaunchDescription(arguments + transport_environment() + [encoder])
