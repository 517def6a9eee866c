"""Both ends on one machine: encoder_node and decoder_node, and optionally ``ros2 bag play`` of a bag.

    ros2 launch xmodal_compress_ros pipeline.launch.py bag:=/path/to/bag calibration_file:=/path/calib.yaml

Includes vehicle.launch.py and remote.launch.py (every argument of theirs can be given here too).
"""
import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import LaunchConfigurationNotEquals
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from xmodal_compress_ros.ros.launch_support import share_folder

PACKAGE = 'xmodal_compress_ros'


def generate_launch_description():
    launch_dir = share_folder('launch')
    arguments = [
        DeclareLaunchArgument('bag', default_value='',
                              description='rosbag2 to play with "ros2 bag play" (empty: none, publish '
                                          'the sensor topics yourself).'),
        DeclareLaunchArgument('rate', default_value='1.0', description='Playback rate of the bag.'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of both nodes and of their relative topic names.'),
        DeclareLaunchArgument('image_topic', default_value='camera/image_raw',
                              description='Camera topic the encoder reads.'),
        DeclareLaunchArgument('lidar_topic', default_value='lidar/points',
                              description='LiDAR topic the encoder reads.'),
        DeclareLaunchArgument('calibration_file', default_value='',
                              description='Calibration for the encoder; empty: CameraInfo, and TF or '
                                          'T_cam_lidar.'),
        DeclareLaunchArgument('backend', default_value='torch',
                              description='Inference backend of both nodes: torch, onnxruntime or tensorrt.'),
        DeclareLaunchArgument('device', default_value='cpu', description='Inference device of both nodes.'),
        DeclareLaunchArgument('quality', default_value='5', description='Encoder quality level.'),
        DeclareLaunchArgument('fastdds_profile', default_value='',
                              description='Fast DDS XML profile of both nodes (empty: the middleware as '
                                          'configured by the user).'),
    ]
    shared = {'backend': LaunchConfiguration('backend'), 'device': LaunchConfiguration('device'),
              'namespace': LaunchConfiguration('namespace'),
              'fastdds_profile': LaunchConfiguration('fastdds_profile')}
    vehicle = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(launch_dir, 'vehicle.launch.py')),
        launch_arguments={**shared, 'image_topic': LaunchConfiguration('image_topic'),
                          'lidar_topic': LaunchConfiguration('lidar_topic'),
                          'calibration_file': LaunchConfiguration('calibration_file'),
                          'quality': LaunchConfiguration('quality')}.items())
    # The decoder reads the packets beside the encoder's inputs.
    remote = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(launch_dir, 'remote.launch.py')),
        launch_arguments={**shared, 'image_packet_topic': [LaunchConfiguration('image_topic'), '/xmodal'],
                          'lidar_packet_topic': [LaunchConfiguration('lidar_topic'), '/xmodal']}.items())
    play = ExecuteProcess(
        cmd=['ros2', 'bag', 'play', LaunchConfiguration('bag'), '--rate', LaunchConfiguration('rate')],
        output='screen', condition=LaunchConfigurationNotEquals('bag', ''))
    return LaunchDescription(arguments + [vehicle, remote, play])
