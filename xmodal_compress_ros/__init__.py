"""xmodal_compress_ros: LiDAR-conditioned learned image compression for ROS 2."""

__version__ = '0.1.0'
