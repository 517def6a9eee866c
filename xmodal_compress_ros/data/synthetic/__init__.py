"""Procedural driving scenes rendered into a camera image and a 64-beam LiDAR scan from one geometry.

Modules: ``scene`` (street layout as analytic primitives), ``raycast`` (vectorised ray casting),
``textures`` (procedural materials and sky), ``camera`` (shaded RGB image), ``lidar`` (HDL-64E-like
scan), ``sequence`` (vehicle motion and :class:`~xmodal_compress_ros.data.frames.SensorFrame` stream),
``kitti_layout`` (writes the KITTI raw folder layout).
"""
