"""Benchmarks: metrics, baseline codecs and the rosbag replay benchmark."""
