"""ament_python package that also installs with pip into a plain virtual environment.

ROS installs provide rclpy and the message packages through rosdep (package.xml); a plain
virtual environment gets them from the ROS 2 wheels on PyPI with the ``ros`` extra.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'xmodal_compress_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, PACKAGE + '.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*')),
        ('share/' + PACKAGE + '/models', glob('models/*')),
    ],
    include_package_data=True,
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.23',
        'pyyaml>=6',
        'safetensors>=0.4',
        'tqdm>=4.60',
        'torch>=2.1',
        'constriction>=0.4',
        'numba>=0.59',
        'DracoPy>=1.4',
        'rosbags>=0.10',
        'opencv-python-headless>=4.8',
    ],
    extras_require={
        # The ROS 2 Kilted wheels on PyPI: only for environments without a ROS install (scripts/setup_venv.sh
        # also makes .venv-jazzy with the Jazzy ones).
        'ros': [
            'ros-rclpy', 'ros-std-msgs', 'ros-sensor-msgs', 'ros-diagnostic-msgs',
            'ros-rmw-fastrtps-cpp',
        ],
        'onnx': ['onnx>=1.15', 'onnxruntime>=1.17'],
        # LiDAR scan registration for the P-frame pose (geometry/ego_motion.py): GICP, MIT, numpy only.
        'registration': ['small_gicp>=1.0'],
        # pureini (Cloudini) is only a reference in bench/bench_lidar_codec.py.
        'bench': ['matplotlib>=3.6', 'pytorch-msssim>=1.0', 'pureini>=0.10'],
        'test': ['pytest>=7', 'hypothesis>=6', 'flake8>=6'],
        # Coverage-guided fuzzing of the packet decoder (fuzz/fuzz_packets.py); without it, random mutations.
        'fuzz': ['atheris>=2.3'],
    },
    zip_safe=True,
    maintainer='xmodal_compress_ros developers',
    maintainer_email='dev@xmodal-compress.invalid',
    description='LiDAR-conditioned learned image compression for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'xmodal = xmodal_compress_ros.cli.__main__:main',
            'encoder_node = xmodal_compress_ros.ros.encoder_node:main',
            'decoder_node = xmodal_compress_ros.ros.decoder_node:main',
        ],
    },
)
