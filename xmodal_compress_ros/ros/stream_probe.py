"""A measuring subscriber: decoded images (with receive times), packet sizes, node diagnostics.

It runs in its own rclpy context and spins on a background thread, so a plain program (``xmodal
demo``, a test) can start node processes, wait for them and read what arrived.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from xmodal_compress_ros.ros import conversions
from xmodal_compress_ros.ros.node_main import events_executor, qos_profile, spin_until_shutdown


@dataclass(frozen=True)
class ReceivedImage:
    stamp_ns: int
    frame_id: str
    received: float  # time.time() when the callback ran
    width: int
    height: int
    encoding: str


@dataclass(frozen=True)
class ReceivedPacket:
    kind: str  # 'image' or 'lidar' (from CompressedImage.format)
    format: str
    stamp_ns: int
    frame_id: str
    nbytes: int


class StreamProbe:
    """Subscribes to ``image_topic`` (decoded Image), ``packet_topics`` and ``/diagnostics``.

    Args:
        image_topic: the decoder's output.
        packet_topics: the encoder's outputs (sizes are recorded; leave empty to skip).
        points_topic: the decoder's PointCloud2 output (headers recorded; empty to skip).
        info_topic: the decoder's CameraInfo output (headers and sizes recorded; empty to skip).
        on_image: called on the probe's thread with ``(ReceivedImage, rgb array)`` for each image.
    """

    def __init__(self, image_topic: str, packet_topics: Sequence[str] = (), points_topic: str = '',
                 on_image: Optional[Callable[[ReceivedImage, np.ndarray], None]] = None,
                 info_topic: str = '') -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        self.images: List[ReceivedImage] = []
        self.packets: List[ReceivedPacket] = []
        self.point_headers: List[tuple] = []
        self.camera_infos: List[tuple] = []  # (stamp ns, frame id, width, height)
        self.diagnostics: Dict[str, Dict[str, str]] = {}
        self._on_image = on_image
        self._lock = threading.Lock()
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node('xmodal_stream_probe', context=self._context)
        qos = qos_profile('reliable', 50)
        self.node.create_subscription(Image, image_topic, self._image, qos)
        for topic in packet_topics:
            self.node.create_subscription(CompressedImage, topic, self._packet, qos)
        if points_topic:
            self.node.create_subscription(PointCloud2, points_topic, self._points, qos)
        if info_topic:
            self.node.create_subscription(CameraInfo, info_topic, self._camera_info, qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._diagnostics, 50)
        executor = events_executor(self.node, self._context)
        self._thread = threading.Thread(target=spin_until_shutdown, args=(executor, self._context),
                                        name='xmodal-probe', daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop spinning and shut the probe's context down."""
        import rclpy

        self._context.try_shutdown()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self._context)

    # ------------------------------------------------------------------------- callbacks

    def _image(self, msg: Any) -> None:
        received = time.time()
        record = ReceivedImage(conversions.stamp_to_ns(msg.header.stamp), msg.header.frame_id, received,
                               msg.width, msg.height, msg.encoding)
        with self._lock:
            self.images.append(record)
        if self._on_image is not None:
            self._on_image(record, conversions.image_to_rgb(msg))

    def _packet(self, msg: Any) -> None:
        kind = msg.format.split('/', 1)[-1].split(';', 1)[0]
        with self._lock:
            self.packets.append(ReceivedPacket(kind, msg.format, conversions.stamp_to_ns(msg.header.stamp),
                                               msg.header.frame_id, len(msg.data)))

    def _points(self, msg: Any) -> None:
        with self._lock:
            self.point_headers.append((conversions.stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                                       msg.width * msg.height))

    def _camera_info(self, msg: Any) -> None:
        with self._lock:
            self.camera_infos.append((conversions.stamp_to_ns(msg.header.stamp), msg.header.frame_id,
                                      msg.width, msg.height))

    def _diagnostics(self, msg: Any) -> None:
        with self._lock:
            for status in msg.status:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    # --------------------------------------------------------------------------- queries

    def node_diagnostics(self, node_name: str) -> Dict[str, str]:
        """The latest diagnostic values of ``node_name`` (empty until its first report)."""
        with self._lock:
            return dict(self.diagnostics.get(f'xmodal_compress: {node_name}', {}))

    def graph_ready(self, subscribed: Dict[str, str], published: Dict[str, str]) -> bool:
        """True when every ``topic -> node name`` in ``subscribed``/``published`` appears in the graph."""
        node = self.node
        for topic, name in subscribed.items():
            if name not in {info.node_name for info in node.get_subscriptions_info_by_topic(topic)}:
                return False
        for topic, name in published.items():
            if name not in {info.node_name for info in node.get_publishers_info_by_topic(topic)}:
                return False
        return True

    def wait_for(self, predicate: Callable[[], bool], timeout: float,
                 alive: Callable[[], bool] = lambda: True, poll: float = 0.05) -> bool:
        """Poll ``predicate`` until true (True), ``timeout`` passes or ``alive()`` turns false (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            if not alive():
                return False
            time.sleep(poll)
        return predicate()
