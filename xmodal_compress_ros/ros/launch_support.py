"""What the vehicle and remote launch files share: model and transport arguments, the environment.

Imported by ``launch/*.launch.py`` only, under a ROS install (``launch`` and ``launch_ros`` are not
on PyPI, so nothing else in the package imports them).
"""
from __future__ import annotations

import os
from typing import Dict, List

from launch.actions import DeclareLaunchArgument, GroupAction, SetEnvironmentVariable
from launch.conditions import LaunchConfigurationNotEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.parameter_descriptions import ParameterValue

from xmodal_compress_ros.runtime import allocator

PACKAGE = 'xmodal_compress_ros'


def share_folder(name: str) -> str:
    """A folder of the installed package's share directory (config, models, launch)."""
    from ament_index_python.packages import get_package_share_directory

    return os.path.join(get_package_share_directory(PACKAGE), name)


def node_arguments(params_file: str) -> List[DeclareLaunchArgument]:
    """The arguments both node launch files take: models, backend, device, parameter file, DDS profile."""
    models, config = share_folder('models'), share_folder('config')
    return [
        DeclareLaunchArgument('namespace', default_value='',
                              description='Namespace of the node and of its relative topic names.'),
        DeclareLaunchArgument('model', default_value=os.path.join(models, 'xmodal-lidar'),
                              description='Stem of the LiDAR-conditioned model.'),
        DeclareLaunchArgument('fallback_model', default_value=os.path.join(models, 'xmodal-hyperprior'),
                              description='Stem of the image-only twin model.'),
        DeclareLaunchArgument('fast_model', default_value=os.path.join(models, 'xmodal-hyperprior-fast'),
                              description="Stem of the fast tier's image-only model."),
        DeclareLaunchArgument('backend', default_value='torch',
                              description='Inference backend: torch, onnxruntime or tensorrt.'),
        DeclareLaunchArgument('device', default_value='cpu', description='Inference device: cpu or cuda.'),
        DeclareLaunchArgument('params_file', default_value=os.path.join(config, params_file),
                              description='ros__parameters file with the parameters not given as arguments.'),
        DeclareLaunchArgument('fastdds_profile', default_value='',
                              description='Fast DDS XML profile to use (selects rmw_fastrtps_cpp), e.g. '
                                          'config/fastdds_large_data.xml of this package\'s share '
                                          'folder (LARGE_DATA transport); empty: the middleware as the user '
                                          'set it.'),
    ]


def transport_environment() -> List[GroupAction]:
    """Opt-in Fast DDS settings: with ``fastdds_profile`` set, Fast DDS with that profile and heap-kept
    image buffers in every process of the launch (:mod:`runtime.allocator`); empty (the default), the
    user's middleware and its settings are left alone."""
    settings = [
        SetEnvironmentVariable('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE', LaunchConfiguration('fastdds_profile')),
        SetEnvironmentVariable('MALLOC_MMAP_THRESHOLD_', str(allocator.MMAP_THRESHOLD)),
        SetEnvironmentVariable('MALLOC_TRIM_THRESHOLD_', str(allocator.TRIM_THRESHOLD)),
        SetEnvironmentVariable('MALLOC_ARENA_MAX', str(allocator.ARENAS)),
    ]
    opted_in = LaunchConfigurationNotEquals('fastdds_profile', '')
    return [GroupAction(settings, condition=opted_in, scoped=False)]


def typed_overrides(types: Dict[str, type]) -> Dict[str, ParameterValue]:
    """Node parameters taken from the launch arguments of the same name, with their types."""
    return {name: ParameterValue(LaunchConfiguration(name), value_type=value_type)
            for name, value_type in types.items()}
