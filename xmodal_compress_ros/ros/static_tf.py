"""The LiDAR-to-camera extrinsic from TF: tf2_ros when importable, else ``/tf_static`` read directly.

A ROS install has tf2_ros, whose buffer answers the lookup (static and dynamic transforms, any
chain of frames). Without it (the PyPI wheels carry neither tf2_ros nor tf2_msgs) the node reads
``/tf_static`` itself when tf2_msgs is there, and chains the static transforms; with neither, TF is
unavailable and :attr:`StaticTransforms.unavailable` says so.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np

# /tf_static is latched: transient local, reliable, deep enough for every static broadcaster.
TF_STATIC_DEPTH = 100


def transform_matrix(translation: Any, rotation: Any) -> np.ndarray:
    """The 4x4 of a geometry_msgs/Transform-like ``translation`` (x, y, z) and ``rotation`` (x, y, z, w)."""
    x, y, z, w = (float(rotation.x), float(rotation.y), float(rotation.z), float(rotation.w))
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f'rotation quaternion ({x}, {y}, {z}, {w}) is not a rotation')
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    matrix = np.eye(4)
    matrix[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    matrix[:3, 3] = [float(translation.x), float(translation.y), float(translation.z)]
    return matrix


class StaticTransformTree:
    """Static transforms by child frame; answers ``T_target_source`` through their common root."""

    def __init__(self) -> None:
        self._parents: Dict[str, Tuple[str, np.ndarray]] = {}

    def add(self, transform: Any) -> None:
        """Add a geometry_msgs/TransformStamped-like transform (parent header.frame_id, child_frame_id)."""
        child, parent = transform.child_frame_id.lstrip('/'), transform.header.frame_id.lstrip('/')
        matrix = transform_matrix(transform.transform.translation, transform.transform.rotation)
        self._parents = {**self._parents, child: (parent, matrix)}

    def _to_root(self, frame: str) -> Tuple[str, np.ndarray]:
        """The root of ``frame`` and ``T_root_frame`` (a cycle stops at the first repeated frame)."""
        matrix, seen, parents = np.eye(4), {frame}, self._parents
        while frame in parents:
            parent, step = parents[frame]
            matrix = step @ matrix
            if parent in seen:
                break
            seen.add(parent)
            frame = parent
        return frame, matrix

    def lookup(self, target: str, source: str) -> Optional[np.ndarray]:
        """``T_target_source`` (maps points in ``source`` to ``target``), or None if not connected."""
        target_root, T_root_target = self._to_root(target.lstrip('/'))
        source_root, T_root_source = self._to_root(source.lstrip('/'))
        if target_root != source_root:
            return None
        return np.linalg.inv(T_root_target) @ T_root_source


class StaticTransforms:
    """Looks up transforms published on TF for ``node``."""

    def __init__(self, node: Any) -> None:
        self.unavailable = ''
        self._buffer: Any = None
        self._tree: Optional[StaticTransformTree] = None
        try:
            import tf2_ros
        except ImportError:
            tf2_ros = None
        if tf2_ros is not None:
            self._buffer = tf2_ros.Buffer()
            self._listener = tf2_ros.TransformListener(self._buffer, node, spin_thread=False)
            self._exceptions: Tuple[type, ...] = (tf2_ros.TransformException,)
            return
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.unavailable = 'neither tf2_ros nor tf2_msgs is installed, so TF cannot be read'
            return
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self._tree = StaticTransformTree()
        qos = QoSProfile(depth=TF_STATIC_DEPTH, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(TFMessage, '/tf_static', self._on_tf_static, qos)

    def _on_tf_static(self, msg: Any) -> None:
        for transform in msg.transforms:
            try:
                self._tree.add(transform)
            except ValueError:
                continue  # a broken transform cannot answer a lookup; the others still can

    def lookup(self, target: str, source: str) -> Optional[np.ndarray]:
        """``T_target_source`` as a 4x4, or None while TF does not connect the two frames."""
        if self._tree is not None:
            return self._tree.lookup(target, source)
        if self._buffer is None:
            return None
        from rclpy.time import Time

        try:
            stamped = self._buffer.lookup_transform(target, source, Time())
        except self._exceptions:
            return None
        return transform_matrix(stamped.transform.translation, stamped.transform.rotation)
