"""Sensor data sources: KITTI layouts, rosbag2 files and the synthetic driving-scene generator."""
